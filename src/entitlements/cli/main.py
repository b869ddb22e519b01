"""``entitlements``: run billing by hand (seed 000's admin console) from a terminal.

This module only parses the line and turns every failure into one line on stderr with a
documented exit code (`EXIT`); the commands themselves (`entitlements.cli.commands`) and
everything they need are imported once the line has parsed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from entitlements.cli.parser import EXIT, Usage, build, parse
from entitlements.errors import (
    Conflict,
    EntitlementsError,
    InvalidInput,
    NotFound,
    StorageError,
)

__all__ = ["EXIT", "main"]

_POSITIONAL = {"plan_key": "PLAN", "owner": "OWNER", "key": "KEY"}


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    args: argparse.Namespace | None = None
    try:
        if not words:
            build(words)[0].print_help()
            return EXIT["ok"]
        args = parse(words)
        if args.handler is None:
            args.help_parser.print_help()
            return EXIT["ok"]
        from entitlements.cli.commands import run

        return run(args)
    except SystemExit as done:  # --help, --version
        return done.code if isinstance(done.code, int) else EXIT["ok"]
    except Usage as error:
        return _fail(f"usage: {error}", "usage")
    except InvalidInput as error:
        return _fail(_naming_the_option(error, args), "usage")
    except NotFound as error:
        return _fail(str(error), "not_found")
    except Conflict as error:
        return _fail(str(error), "conflict")
    except StorageError as error:
        from entitlements.cli.database import NoSchema

        return _fail(str(error), "no_schema" if isinstance(error, NoSchema) else "storage")
    except EntitlementsError as error:
        return _fail(str(error), "refused")
    except OSError as error:
        if isinstance(error, BrokenPipeError):
            return EXIT["ok"]
        where = f"{error.filename}: " if error.filename else ""
        return _fail(f"{where}{error.strerror or error}", "usage")
    except KeyboardInterrupt:
        return _fail("interrupted; nothing was changed by the unfinished step", "interrupted")
    except Exception as error:
        if os.environ.get("ENTITLEMENTS_DEBUG"):
            raise
        return _fail(
            f"internal error: {type(error).__name__}: {error} "
            "(a bug: please report it; ENTITLEMENTS_DEBUG=1 shows the traceback)",
            "internal",
        )


def _naming_the_option(error: InvalidInput, args: argparse.Namespace | None) -> str:
    """``expires_at: must be after …`` becomes ``--expires-at: must be after …`` when the
    field came from an option of this command."""
    message = str(error)
    parser = getattr(args, "command_parser", None)
    if parser is None or not message.startswith(f"{error.field}: "):
        return message
    field = error.field.split(".", 1)[0]
    option = "--" + field.replace("_", "-")
    options = parser._option_string_actions
    if option not in options and field == "plan_key" and "--plan" in options:
        option = "--plan"
    elif option not in options and field == "value" and "--limit" in options:
        option = "--limit"
    elif option not in options:
        option = _POSITIONAL.get(field, "")
    if not option:
        return message
    return f"{option}: {message.removeprefix(f'{error.field}: ')}"


def _fail(message: str, kind: str) -> int:
    first = message.splitlines()[0] if message else kind
    sys.stderr.write(f"entitlements: {first}\n")
    return EXIT[kind]


if __name__ == "__main__":
    raise SystemExit(main())
