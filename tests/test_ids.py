"""Row ids: random, drawn in blocks, never the same in two processes."""

from __future__ import annotations

import os
import sys

import pytest

from entitlements.service.ids import new_id


def test_ids_are_32_hex_digits_and_do_not_repeat():
    drawn = [new_id() for _ in range(5_000)]
    assert len(set(drawn)) == len(drawn)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in drawn)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_hand_out_the_parents_next_ids():
    new_id()  # the parent holds a block it has not used up
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.close(read)
        os.write(write, "".join(new_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        theirs = pipe.read()
    os.waitpid(child, 0)
    ours = "".join(new_id() for _ in range(10))
    assert len(theirs) == len(ours) == 320
    assert {theirs[i : i + 32] for i in range(0, 320, 32)}.isdisjoint(
        {ours[i : i + 32] for i in range(0, 320, 32)}
    ), sys.platform
