"""The shared store contract on every store: memory, SQLite, PostgreSQL, MariaDB."""

from __future__ import annotations

import pytest

from conftest import STORE_KINDS
from entitlements.testing.contract import StoreContract


class TestStoreContract(StoreContract):
    @pytest.fixture(params=[*STORE_KINDS, "pgbouncer"])
    def store(self, request, make_store):
        return make_store(request.param)
