"""What importing the library costs: ``import entitlements`` (and the command line's
``--help``) must not load SQLAlchemy's ORM, the contract, billing or claims machinery, or
cryptography until they are used."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = (
    "sqlalchemy",
    "cryptography",
    "alembic",
    "entitlements.adapters.sql",
    "entitlements.service.contracts",
    "entitlements.service.billing",
    "entitlements.service.claims",
    "entitlements.service.provider_outbox",
    "entitlements.domain.contracts.certificate",
    "entitlements.domain.contracts.checkpoint",
    "entitlements.domain.contracts.verify",
)


def loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    return set(json.loads(result.stdout.splitlines()[-1]))


def heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if m.startswith(HEAVY)}


def test_import_entitlements_loads_only_the_errors():
    modules = loaded_after("import entitlements")
    assert {m for m in modules if m.startswith("entitlements")} == {
        "entitlements",
        "entitlements.errors",
    }
    assert heavy(modules) == set()


def test_checks_over_memory_load_no_sql_contracts_billing_claims_or_cryptography():
    modules = loaded_after(
        "from entitlements import Entitlements, MemoryStore, Owner, Plan\n"
        "ents = Entitlements(MemoryStore())\n"
        "ents.plans.define(Plan('pro', 'Pro', status='active'), actor='staff')\n"
        "ents.subscriptions.start_trial(Owner('organization', 'acme'), 'pro', actor='staff')\n"
        "assert not ents.allows(Owner('organization', 'acme'), 'sso')"
    )
    assert heavy(modules) == set()


def test_the_machinery_loads_when_it_is_used():
    modules = loaded_after(
        "from entitlements import Entitlements, MemoryStore\nEntitlements(MemoryStore()).contracts"
    )
    assert {"entitlements.service.contracts", "cryptography"} <= modules
    billing = loaded_after(
        "from entitlements import Entitlements, MemoryStore\nEntitlements(MemoryStore()).billing"
    )
    assert "entitlements.service.billing" in billing


def test_the_command_lines_help_loads_no_sqlalchemy_nor_the_services():
    modules = loaded_after(
        "from entitlements.cli.main import main\n"
        "import contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['--help']) == 0\n"
        "    assert main(['contracts', 'convert', '--help']) == 0"
    )
    assert heavy(modules) == set()
    assert "entitlements.service.entitlements" not in modules
    assert "entitlements.cli.commands" not in modules


def test_every_public_name_resolves_and_is_listed():
    import entitlements

    for name in entitlements.__all__:
        assert getattr(entitlements, name) is not None, name
    assert set(entitlements.__all__) <= set(dir(entitlements))
