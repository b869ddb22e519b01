"""Every Python code sample in the docs and the README runs (one namespace per page)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def samples(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "page", [p for p in PAGES if samples(p)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_code_samples_run_twice_in_a_row(page, tmp_path, monkeypatch):
    """A reader runs a page's samples, then runs them again: from a fresh folder, and
    again from the same folder (what the first run left there must not make the second
    fail, e.g. with `PlanExists`)."""
    monkeypatch.chdir(tmp_path)
    for run in ("first", "second"):
        namespace: dict[str, object] = {"__name__": f"docs_sample_{page.stem}"}
        try:
            for number, code in enumerate(samples(page), start=1):
                where = f"{page.name}[sample {number}, {run} run]"
                try:
                    exec(compile(code, where, "exec"), namespace)
                except ImportError as exc:
                    pytest.skip(f"{page.name} sample {number} needs an optional extra: {exc}")
        finally:
            _close_all(namespace)


def _close_all(namespace: dict[str, object]) -> None:
    """Stop the change-feed followers the samples started (as a script ending would)."""
    from entitlements import Entitlements

    for value in namespace.values():
        if isinstance(value, Entitlements):
            value.close()


def test_the_readmes_taste_runs_as_written(tmp_path, monkeypatch):
    """The first code a newcomer copies: every line of it works, seats included."""
    monkeypatch.chdir(tmp_path)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    taste = BLOCK.findall(readme.split("## A taste", 1)[1])[0]
    namespace: dict[str, object] = {"__name__": "readme_taste"}
    exec(compile(taste, "README.md[taste]", "exec"), namespace)
    ents, acme = namespace["ents"], namespace["acme"]
    assert ents.allows(acme, "sso") is True  # type: ignore[attr-defined]
    assert ents.limit(acme, "seats") == 5  # type: ignore[attr-defined]
    assert [s.member for s in ents.seats.list(acme)] == ["user:ada"]  # type: ignore[attr-defined]
    assert list(tmp_path.iterdir()) == []


def test_there_are_samples_to_run():
    assert sum(len(samples(p)) for p in PAGES) >= 5


FIRST_SCRIPT_CALLS = (
    "subscriptions.start_trial(",
    "contracts.issue(",
    "typed_name=",
    "drawing=",
    "contracts.convert(",
    "overrides.set_feature(",
    "enabled=",
    "usage.consume(",
    "LimitExceeded",
    "audit.for_owner(",
)


def test_the_first_script_walks_the_whole_newcomer_path():
    """A newcomer writes the first script from the docs alone: every call it needs is in
    a sample that runs (above), on the page the home page sends them to."""
    code = "\n".join(samples(ROOT / "docs" / "first-script.md"))
    assert [call for call in FIRST_SCRIPT_CALLS if call not in code] == []


def test_install_instructions_install_this_project():
    """Until the project is published, ``pip install entitlements`` installs someone
    else's package; every install line installs from the checkout."""
    wrong = re.compile(r"pip install\s+['\"]?entitlements\b")
    offenders = [str(p.relative_to(ROOT)) for p in PAGES if wrong.search(p.read_text("utf-8"))]
    assert offenders == []
