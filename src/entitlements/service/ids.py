"""Ids of stored rows: 128 random bits as 32 hex digits, like ``uuid4().hex``.

Drawn from the operating system in blocks, not one call per id: at ledger-write rates
the system call was a tenth of a warm consumption. A forked child drops the parent's
block, or two processes would hand out the same ids.
"""

from __future__ import annotations

import os

__all__ = ["new_id"]

_BLOCK = 256
_pool: list[str] = []


def new_id() -> str:
    try:
        return _pool.pop()  # atomic: threads never share an id
    except IndexError:
        drawn = os.urandom(16 * _BLOCK).hex()
        _pool.extend([drawn[i : i + 32] for i in range(0, len(drawn), 32)])
        return _pool.pop()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_pool.clear)
