"""The examples are documentation: they must run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_quickstart_runs_the_whole_lifecycle(tmp_path):
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "on a 90-day trial of Business [trialing" in out
    assert "suspended: read-only [suspended" in out
    assert "back on the fallback plan [canceled, plan free v1]" in out
    assert "system:sweep" in out
    assert "stored in sqlite:///entitlements-quickstart.db" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entitlements-quickstart.db"]


def test_the_integrator_property_test_passes(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(EXAMPLES / "test_integrator_property.py"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
