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
def test_code_samples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs_sample_{page.stem}"}
    for number, code in enumerate(samples(page), start=1):
        try:
            exec(compile(code, f"{page.name}[sample {number}]", "exec"), namespace)
        except ImportError as exc:
            pytest.skip(f"{page.name} sample {number} needs an optional extra: {exc}")


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
