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
    parsed: list[argparse.Namespace] = []
    try:
        return _run(words, parsed)
    except SystemExit as done:  # --help, --version
        return done.code if isinstance(done.code, int) else EXIT["ok"]
    except KeyboardInterrupt:
        return _fail("interrupted; nothing was changed by the unfinished step", "interrupted")
    except Exception as error:
        return _failed(error, parsed[0] if parsed else None)


def _run(words: list[str], parsed: list[argparse.Namespace]) -> int:
    """Parse and run; a group named without a command (``entitlements subs``) is a bad
    line: its help goes to stderr and the exit code is 2, so a script that forgot the
    command does not carry on as if it had run."""
    if not words:
        build(words)[0].print_help()
        return EXIT["ok"]
    args = parse(words)
    parsed.append(args)
    if args.handler is None:
        args.help_parser.print_help(sys.stderr)
        return EXIT["usage"]
    from entitlements.cli.commands import run

    return run(args)


_LIBRARY_CODES: tuple[tuple[type[EntitlementsError], str], ...] = (
    (NotFound, "not_found"),
    (Conflict, "conflict"),
    (StorageError, "storage"),
)


def _failed(error: Exception, args: argparse.Namespace | None) -> int:
    """The one line and the documented exit code for what went wrong."""
    if isinstance(error, Usage):
        return _fail(f"usage: {error}", "usage")
    if isinstance(error, EntitlementsError):
        return _refused(error, args)
    if isinstance(error, OSError):
        return _os_failure(error)
    if os.environ.get("ENTITLEMENTS_DEBUG"):
        raise error
    return _fail(
        f"internal error: {type(error).__name__}: {error} "
        "(a bug: please report it; ENTITLEMENTS_DEBUG=1 shows the traceback)",
        "internal",
    )


def _refused(error: EntitlementsError, args: argparse.Namespace | None) -> int:
    if isinstance(error, InvalidInput):
        return _fail(_naming_the_option(error, args), "usage")
    from entitlements.cli.database import NoSchema

    if isinstance(error, NoSchema):
        return _fail(str(error), "no_schema")
    kind = next((k for cls, k in _LIBRARY_CODES if isinstance(error, cls)), "refused")
    return _fail(str(error), kind)


def _os_failure(error: OSError) -> int:
    if isinstance(error, BrokenPipeError):
        return EXIT["ok"]
    where = f"{error.filename}: " if error.filename else ""
    return _fail(f"{where}{error.strerror or error}", "usage")


_FALLBACK_OPTIONS = {"plan_key": "--plan", "value": "--limit"}


def _naming_the_option(error: InvalidInput, args: argparse.Namespace | None) -> str:
    """``expires_at: must be after …`` becomes ``--expires-at: must be after …`` when the
    field came from an option of this command."""
    message = str(error)
    parser = getattr(args, "command_parser", None)
    if parser is None or not message.startswith(f"{error.field}: "):
        return message
    option = _option_for(error.field.split(".", 1)[0], set(parser._option_string_actions))
    if not option:
        return message
    return f"{option}: {message.removeprefix(f'{error.field}: ')}"


def _option_for(field: str, options: set[str]) -> str:
    """The option (or positional's name) a library field came from, or ``""``."""
    named = "--" + field.replace("_", "-")
    if named in options:
        return named
    fallback = _FALLBACK_OPTIONS.get(field)
    if fallback in options:
        return fallback
    return _POSITIONAL.get(field, "")


def _fail(message: str, kind: str) -> int:
    first = message.splitlines()[0] if message else kind
    sys.stderr.write(f"entitlements: {first}\n")
    return EXIT[kind]


if __name__ == "__main__":
    raise SystemExit(main())
