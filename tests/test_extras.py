"""A missing optional dependency fails with the ``pip install`` line to type, and a
database URL SQLAlchemy cannot open says what to write instead."""

from __future__ import annotations

import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from entitlements import EntitlementsError, InvalidInput
from entitlements.adapters.sql import SqlStore
from entitlements.errors import MissingExtra


def _without(module: str, code: str) -> subprocess.CompletedProcess[str]:
    """``code`` run in a fresh interpreter where ``module`` cannot be imported."""
    script = f"import sys\nsys.modules[{module!r}] = None\n{code}"
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)


@pytest.mark.parametrize(
    ("module", "code", "extra"),
    [
        ("starlette", "import entitlements.web", "web"),
        ("jinja2", "from entitlements.web import create_app", "web"),
        ("openfeature", "import entitlements.openfeature", "openfeature"),
        ("a2wsgi", "from entitlements.web import as_wsgi; as_wsgi(None)", "web"),
    ],
)
def test_importing_without_the_extra_names_the_line_to_type(module, code, extra):
    result = _without(module, code)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("entitlements.errors.MissingExtra: ")
    assert last.endswith(f"pip install 'entitlements[{extra}]'")
    assert f"no module named {module!r}" in last


def test_claims_tokens_without_jwt(monkeypatch):
    from entitlements import Entitlements, MemoryStore, Owner
    from entitlements.service.claims import verify_claims_token

    monkeypatch.setitem(sys.modules, "jwt", None)
    key = Ed25519PrivateKey.generate()
    ents = Entitlements(MemoryStore())
    with pytest.raises(MissingExtra) as raised:
        ents.claims_token(Owner("organization", "acme"), key)
    assert str(raised.value) == (
        "claims tokens needs the 'jwt' extra (no module named 'jwt'): "
        "pip install 'entitlements[jwt]'"
    )
    assert isinstance(raised.value, ImportError)
    assert isinstance(raised.value, EntitlementsError)
    assert raised.value.extra == "jwt"
    with pytest.raises(MissingExtra, match=r"pip install 'entitlements\[jwt\]'"):
        verify_claims_token("x.y.z", key.public_key())


def test_opentelemetry_without_its_extra(monkeypatch):
    from entitlements.telemetry import OpenTelemetry

    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(MissingExtra, match=r"pip install 'entitlements\[otel\]'$"):
        OpenTelemetry()


def test_a_postgres_url_says_what_to_write():
    with pytest.raises(InvalidInput) as raised:
        SqlStore.from_url("postgres://app@db.internal/app")
    assert str(raised.value).endswith(
        "SQLAlchemy calls the dialect postgresql: write postgresql+psycopg://app@db.internal/app"
    )


@pytest.mark.parametrize(
    ("url", "driver", "extra"),
    [
        ("postgresql+psycopg://app@db.internal/app", "psycopg", "postgres"),
        ("mysql+pymysql://app@db.internal/app", "pymysql", "mysql"),
    ],
)
def test_a_missing_driver_names_the_extra(monkeypatch, url, driver, extra):
    monkeypatch.setitem(sys.modules, driver, None)
    with pytest.raises(InvalidInput) as raised:
        SqlStore.from_url(url)
    assert str(raised.value).endswith(f"; pip install 'entitlements[{extra}]'")
