"""Applied provider events and links to provider subscriptions, in SQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from entitlements.adapters.sql import tables as t
from entitlements.adapters.sql.repository import (
    Repository,
    owner_of,
    owners_among,
    same_named,
    storage_errors,
)
from entitlements.domain.billing import ProviderLink
from entitlements.domain.owner import Owner
from entitlements.domain.provider_commands import CommandStatus, ProviderCommand
from entitlements.errors import Conflict, NotFound

__all__ = ["SqlProvider"]


def _link_from(row: RowMapping) -> ProviderLink:
    return ProviderLink(
        row["external_id"],
        owner_of(row),
        row["last_applied_at"],
        row["checkout_id"],
        row["plan_key"],
        row["manager"],
        row["subscription_id"],
    )


def _command_row(command: ProviderCommand) -> dict[str, Any]:
    return {
        "owner_kind": command.owner.kind,
        "owner_id": command.owner.id,
        "subscription_id": command.subscription_id,
        "kind": command.kind.value,
        "payload": dict(command.payload),
        "idempotency_key": command.idempotency_key,
        "status": command.status.value,
        "attempts": command.attempts,
        "created_at": command.created_at,
        "next_attempt_at": command.next_attempt_at,
        "sent_at": command.sent_at,
        "last_error": command.last_error,
        "result": None if command.result is None else dict(command.result),
    }


def _command_from(row: RowMapping) -> ProviderCommand:
    return ProviderCommand(
        owner=owner_of(row),
        **same_named(
            row,
            "id",
            "kind",
            "payload",
            "idempotency_key",
            "created_at",
            "subscription_id",
            "status",
            "attempts",
            "next_attempt_at",
            "sent_at",
            "last_error",
            "result",
        ),
    )


class SqlProvider(Repository):
    @storage_errors
    def seen(self, event_id: str) -> bool:
        e = t.provider_events.c
        return bool(
            self._rows(sa.select(e.event_id).where(e.tenant == self._t, e.event_id == event_id))
        )

    @storage_errors
    def mark_seen(self, event_id: str, at: datetime) -> None:
        # False: a concurrent delivery of the same event got there first
        self._insert_new(
            t.provider_events.insert().values(tenant=self._t, event_id=event_id, seen_at=at)
        )

    @storage_errors
    def link(self, external_id: str) -> ProviderLink | None:
        c = t.provider_links.c
        rows = self._rows(
            sa.select(t.provider_links).where(c.tenant == self._t, c.external_id == external_id)
        )
        return _link_from(rows[0]) if rows else None

    @storage_errors
    def link_for_checkout(self, checkout_id: str) -> ProviderLink | None:
        c = t.provider_links.c
        rows = self._rows(
            sa.select(t.provider_links)
            .where(c.tenant == self._t, c.checkout_id == checkout_id)
            .order_by(c.external_id)
        )
        return _link_from(rows[0]) if rows else None

    @storage_errors
    def put_link(self, link: ProviderLink) -> None:
        self._scope(link.owner)
        c = t.provider_links.c
        values = {
            "owner_kind": link.owner.kind,
            "owner_id": link.owner.id,
            "last_applied_at": link.last_applied_at,
            "checkout_id": link.checkout_id,
            "plan_key": link.plan_key,
            "manager": link.manager,
            "subscription_id": link.subscription_id,
        }
        updated = self._conn.execute(
            t.provider_links.update()
            .where(c.tenant == self._t, c.external_id == link.external_id)
            .values(**values)
        )
        if updated.rowcount == 0:
            self._conn.execute(
                t.provider_links.insert().values(
                    tenant=self._t, external_id=link.external_id, **values
                )
            )

    @storage_errors
    def add_command(self, command: ProviderCommand) -> None:
        self._scope(command.owner)
        statement = t.provider_commands.insert().values(
            tenant=self._t, id=command.id, **_command_row(command)
        )
        if not self._insert_new(statement):
            raise Conflict(f"a provider command with key {command.idempotency_key} exists")

    @storage_errors
    def command(self, command_id: str) -> ProviderCommand:
        row = self._by_id(t.provider_commands, command_id)
        if row is None:
            raise NotFound(f"provider command {command_id} does not exist")
        return _command_from(row)

    @storage_errors
    def update_command(
        self, command: ProviderCommand, *, expected: ProviderCommand | None = None
    ) -> bool:
        c = t.provider_commands.c
        conditions = [c.tenant == self._t, c.id == command.id]
        if expected is not None:
            conditions += [c.status == expected.status.value, c.attempts == expected.attempts]
        result = self._conn.execute(
            t.provider_commands.update().where(*conditions).values(**_command_row(command))
        )
        if result.rowcount == 1:
            return True
        self.command(command.id)  # NotFound if it is gone
        return False

    @storage_errors
    def due_commands(self, now: datetime, limit: int = 500) -> Sequence[ProviderCommand]:
        c = t.provider_commands.c
        rows = self._batch(
            t.provider_commands,
            [c.status == CommandStatus.PENDING.value, c.next_attempt_at <= now],
            [c.next_attempt_at, c.created_at, c.id],
            limit,
        )
        return [_command_from(r) for r in rows]

    @storage_errors
    def open_commands(self, owner: Owner) -> Sequence[ProviderCommand]:
        c = t.provider_commands.c
        rows = self._rows(
            sa.select(t.provider_commands)
            .where(
                *self._owned(t.provider_commands, owner),
                c.status != CommandStatus.SENT.value,
            )
            .order_by(c.created_at, c.id)
        )
        return [_command_from(r) for r in rows]

    @storage_errors
    def owners_with_open_commands(self, owners: Sequence[Owner]) -> set[Owner]:
        if not owners:
            return set()
        c = t.provider_commands.c
        scoped = {(o.kind, o.id): o for o in (self._scope(o) for o in owners)}
        found: set[Owner] = set()
        for owned in owners_among(t.provider_commands, self._t, scoped.values()):
            open_ = sa.select(c.owner_kind, c.owner_id).where(
                owned, c.status != CommandStatus.SENT.value
            )
            found.update(scoped[(kind, id_)] for kind, id_ in self._conn.execute(open_.distinct()))
        return found
