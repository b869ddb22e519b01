"""Lists that grow with the data are read a page at a time: a bounded number of items and
an opaque cursor naming where the next page starts.

Pages are keyset pages: the cursor carries the sort key of the last item handed out, and
the next page asks for items after that key, so a page deep in a long list costs what the
first one does (no OFFSET that reads and skips everything before it) and an item written
between two reads neither repeats nor goes missing.

`Page` is a sequence of its items, so code that iterated, indexed or compared the lists
these reads used to return keeps working on the first page.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar, overload

from entitlements.errors import InvalidInput

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "Page",
    "check_limit",
    "cursor_instant",
    "decode_cursor",
    "encode_cursor",
    "instant_cursor",
    "page_of",
]

T = TypeVar("T")

DEFAULT_LIMIT = 100
"""Items in a page when the caller names no limit: a page is bounded even then."""
MAX_LIMIT = 1000
"""The largest page a caller may ask for: one read never grows with the data."""

_MAX_CURSOR = 2000


class Page(Sequence[T], Generic[T]):
    """Some items of a list and the cursor of the page after them (``None``: this page is
    the last). A page equals another page with the same items and cursor, and a plain
    list or tuple with the same items; ``+`` joins it to a list as a list."""

    __slots__ = ("items", "next")

    items: tuple[T, ...]
    """The page's items, in the list's order."""
    next: str | None
    """The cursor of the page after this one (``None``: this page is the last)."""

    def __init__(self, items: Sequence[T] = (), next: str | None = None) -> None:
        object.__setattr__(self, "items", tuple(items))
        object.__setattr__(self, "next", next)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a Page is immutable")

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[T]: ...

    def __getitem__(self, index: int | slice) -> T | Sequence[T]:
        return self.items[index]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Page):
            return self.items == other.items and self.next == other.next
        if isinstance(other, list | tuple):
            return self.items == tuple(other)
        return NotImplemented

    def __add__(self, other: object) -> list[Any]:
        """A page joined to another page or a list is a list, as the lists were."""
        if isinstance(other, Page | list | tuple):
            return [*self.items, *other]
        return NotImplemented

    def __radd__(self, other: object) -> list[Any]:
        if isinstance(other, list | tuple):
            return [*other, *self.items]
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.items, self.next))

    def __repr__(self) -> str:
        return f"Page({list(self.items)!r}, next={self.next!r})"


def check_limit(limit: object) -> int:
    """A page size a caller asked for: a whole number from 1 to `MAX_LIMIT`."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput("limit", f"must be a whole number from 1 to {MAX_LIMIT}", limit)
    return limit


def encode_cursor(kind: str, key: Sequence[str | int]) -> str:
    """The opaque cursor of the page after the item whose sort key is ``key`` in the list
    named ``kind`` (the name keeps one list's cursor out of another)."""
    document = json.dumps([kind, *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(document).decode().rstrip("=")


def decode_cursor(cursor: object, kind: str, *shape: type) -> tuple[Any, ...] | None:
    """The sort key a cursor of list ``kind`` carries (``None`` for no cursor: the first
    page); a cursor this list did not hand out is refused."""
    if cursor is None:
        return None
    refused = InvalidInput("cursor", "is not a cursor this list handed out", cursor)
    if not isinstance(cursor, str) or not cursor or len(cursor) > _MAX_CURSOR:
        raise refused
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        document = json.loads(raw)
    except (binascii.Error, ValueError):
        raise refused from None
    if not isinstance(document, list) or not document or document[0] != kind:
        raise refused
    key = tuple(document[1:])
    if len(key) != len(shape) or not all(
        isinstance(v, t) and not isinstance(v, bool) for v, t in zip(key, shape, strict=True)
    ):
        raise refused
    return key


def cursor_instant(text: str) -> datetime:
    """An instant a cursor carries (written with ``isoformat``)."""
    try:
        found = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput("cursor", "is not a cursor this list handed out", text) from None
    if found.tzinfo is None:
        raise InvalidInput("cursor", "is not a cursor this list handed out", text)
    return found


def instant_cursor(cursor: object, kind: str, *rest: type) -> tuple[Any, ...] | None:
    """The sort key a cursor of a list ordered by an instant first carries: the instant,
    then the rest of the key as ``rest`` says (``None`` for no cursor: the first page)."""
    after = decode_cursor(cursor, kind, str, *rest)
    return None if after is None else (cursor_instant(after[0]), *after[1:])


def page_of(found: Sequence[tuple[Sequence[str | int], T]], limit: int, kind: str) -> Page[T]:
    """The page of ``limit`` items out of ``found``, pairs of a sort key and an item read
    with one more than ``limit``: a row past the page says there is a next one, whose
    cursor carries the key of the page's last item."""
    items = [item for _, item in found[:limit]]
    if len(found) <= limit or not items:
        return Page(items)
    return Page(items, encode_cursor(kind, found[limit - 1][0]))
