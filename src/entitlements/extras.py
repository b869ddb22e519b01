"""Optional dependencies, imported with the ``pip install`` line to type when missing.

The core needs no more than SQLAlchemy and a few small libraries; claims tokens, Redis
hints, the web pages, OpenTelemetry and OpenFeature each need an extra. A bare
``No module named 'jwt'`` says neither which extra nor what to type, so every such
import goes through `require`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from entitlements.errors import MissingExtra

__all__ = ["DRIVER_EXTRAS", "require"]

DRIVER_EXTRAS = {"psycopg": "postgres", "psycopg2": "postgres", "pymysql": "mysql"}
"""The extra that installs each database driver the SQL store is tested with."""


def require(module: str, extra: str, what: str) -> ModuleType:
    """``module``, imported; `MissingExtra` naming ``extra`` (and what needed it) if the
    module or one it imports is not installed."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        missing = (error.name or module).split(".")[0]
        raise MissingExtra(what, extra, missing) from error
