"""How many rows a connection's statements read, as each engine counts them: a cost
that grows with the data shows up as rows read, where a timing would be noise.

PostgreSQL's ``pg_stat_xact_user_tables`` (tuples read by scans and fetched through
indexes in the open transaction), MariaDB's session ``Handler_read_*`` counters,
SQLite's virtual machine steps (a progress handler).
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa


class _Steps:
    """SQLite's progress handler, called every ``every`` virtual-machine instructions."""

    every = 100

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        return 0


def reader(host: sa.Connection) -> Callable[[], int]:
    """A function returning how many rows ``host``'s statements have read so far (on
    PostgreSQL, in its open transaction)."""
    dialect = host.dialect.name
    if dialect == "postgresql":
        query = sa.text(
            "SELECT coalesce(sum(seq_tup_read + coalesce(idx_tup_fetch, 0)), 0) "
            "FROM pg_stat_xact_user_tables"
        )
        return lambda: int(host.execute(query).scalar_one())
    if dialect in ("mysql", "mariadb"):
        status = sa.text("SHOW SESSION STATUS LIKE 'Handler_read%'")
        return lambda: sum(int(value) for _, value in host.execute(status))
    steps = _Steps()
    host.connection.driver_connection.set_progress_handler(steps, steps.every)  # type: ignore[union-attr]
    return lambda: steps.calls * steps.every
