"""The docs' tables are generated from the code's tables; these tests keep them equal."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from entitlements import InvalidInput, SubscriptionStatus
from entitlements.domain.plan import PLAN_STATUS_TRANSITIONS
from entitlements.domain.status_words import STATUS_WORDS, canonical_status
from entitlements.domain.subscription import transition_table_markdown

DOC = (Path(__file__).parent.parent / "docs" / "statuses.md").read_text()


def section(name: str) -> str:
    match = re.search(rf"<!-- {name}:start -->\n(.*?)<!-- {name}:end -->", DOC, re.S)
    assert match, f"docs/statuses.md lost its {name} section"
    return match.group(1)


def test_transition_table_in_the_docs_is_the_code_table():
    assert section("transitions") == transition_table_markdown()


def test_status_word_table_in_the_docs_is_the_code_table():
    rows = ["| word | canonical | used by |", "|---|---|---|"]
    rows += [f"| `{w}` | `{s.value}` | {seeds} |" for w, (s, seeds) in STATUS_WORDS.items()]
    assert section("status-words") == "\n".join(rows) + "\n"


def test_every_plan_status_transition_is_documented():
    for source, targets in PLAN_STATUS_TRANSITIONS.items():
        documented = ", ".join(f"`{t.value}`" for t in sorted(targets))
        assert f"| `{source.value}` | {documented} |" in DOC


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("OnHold", SubscriptionStatus.PAST_DUE),
        ("On Hold", SubscriptionStatus.PAST_DUE),
        ("Cancelled", SubscriptionStatus.CANCELED),
        ("past-due", SubscriptionStatus.PAST_DUE),
        ("Pending", SubscriptionStatus.PENDING),
        ("suspended", SubscriptionStatus.SUSPENDED),
    ],
)
def test_seed_words_map_to_canonical_statuses(word, status):
    assert canonical_status(word) is status


def test_unknown_words_are_refused():
    with pytest.raises(InvalidInput, match="unknown status word"):
        canonical_status("paused")
