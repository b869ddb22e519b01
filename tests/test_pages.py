"""`Page` reads like the list it replaced; its cursors are refused by any other list."""

from __future__ import annotations

import pytest

from entitlements import InvalidInput, Page
from entitlements.domain.page import decode_cursor, encode_cursor, page_of


def test_a_page_reads_compares_and_joins_like_a_list():
    page = Page([1, 2, 3], "next")
    assert (len(page), page[0], page[-1], list(page[1:]), list(reversed(page))) == (
        3,
        1,
        3,
        [2, 3],
        [3, 2, 1],
    )
    assert page == [1, 2, 3]
    assert [1, 2, 3] == page  # noqa: SIM300 - the list's side of the comparison
    assert page == (1, 2, 3)
    assert page != Page([1, 2, 3])
    assert page != [1, 2]
    assert page + [4] == [1, 2, 3, 4]  # noqa: RUF005 - what a host's code does
    assert [0] + page == [0, 1, 2, 3]  # noqa: RUF005
    with pytest.raises(AttributeError):
        page.next = None  # type: ignore[misc]


def test_a_cursor_carries_its_key_for_its_own_list_only():
    cursor = encode_cursor("audit-owner", (41,))
    assert decode_cursor(cursor, "audit-owner", int) == (41,)
    assert decode_cursor(None, "audit-owner", int) is None
    for other in (("contracts", int), ("audit-owner", str), ("audit-owner", int, int)):
        with pytest.raises(InvalidInput):
            decode_cursor(cursor, other[0], *other[1:])


def test_a_page_has_a_next_only_when_a_row_follows_it():
    rows = [((n,), f"item {n}") for n in range(3)]
    assert page_of(rows, 3, "l") == Page(["item 0", "item 1", "item 2"])
    assert decode_cursor(page_of(rows, 2, "l").next, "l", int) == (1,)
