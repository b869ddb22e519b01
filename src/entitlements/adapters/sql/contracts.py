"""Contracts in SQL: the contract row, its signers (with the global token index), the
append-only event chain, personal data kept apart, and drawn signatures."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from entitlements.adapters.sql import tables as t
from entitlements.adapters.sql.plans import money
from entitlements.adapters.sql.repository import Repository, owner_of, same_named, storage_errors
from entitlements.domain.billing_cycle import BillingCycle
from entitlements.domain.contracts.contract import (
    AWAITING_SIGNATURE,
    CLOSED,
    Contract,
    ContractStatus,
    PersonalData,
    Signer,
    Terms,
)
from entitlements.domain.contracts.events import ContractEvent, EventType
from entitlements.domain.owner import Owner
from entitlements.errors import Conflict, ContractNotFound, NotFound, StaleWrite

__all__ = ["SqlContracts"]

_OPEN = sorted(s.value for s in ContractStatus if s not in CLOSED)
_BY_EXPIRY = (t.contracts.c.expires_at, t.contracts.c.id)


def _signable(now: datetime) -> list[sa.ColumnElement[bool]]:
    """Out for signature, its signing window still open at ``now``."""
    c = t.contracts.c
    return [c.status.in_(sorted(s.value for s in AWAITING_SIGNATURE)), c.expires_at > now]


def _contract_row(contract: Contract, tenant: str) -> dict[str, Any]:
    terms = contract.terms
    return {
        "id": contract.id,
        "tenant": tenant,
        "owner_kind": contract.owner.kind,
        "owner_id": contract.owner.id,
        "title": contract.title,
        "body": contract.body,
        "plan_key": terms.plan_key,
        "term": terms.term,
        "amount": terms.amount,
        "currency": terms.currency,
        "plan_version": terms.plan_version,
        "seats": terms.seats,
        "cycle_unit": None if terms.cycle is None else terms.cycle.unit.value,
        "cycle_every": None if terms.cycle is None else terms.cycle.every,
        "sequential": contract.sequential,
        "status": contract.status.value,
        "created_at": contract.created_at,
        "expires_at": contract.expires_at,
        "body_hash": contract.body_hash,
        "terms_hash": contract.terms_hash,
        "content_hash": contract.content_hash,
        "revision": contract.revision,
        "next_due_at": contract.created_at if contract.status in AWAITING_SIGNATURE else None,
    }


def _signer_rows(contract: Contract) -> list[dict[str, Any]]:
    return [
        {
            "contract_id": contract.id,
            "id": s.id,
            "position": i,
            "name": s.name,
            "email": s.email,
            "role": s.role,
            "signing_order": s.order,
            "status": s.status.value,
            "token_hash": s.token_hash,
            "token_expires_at": s.token_expires_at,
        }
        for i, s in enumerate(contract.signers)
    ]


def _contract_from(row: RowMapping, signers: Sequence[RowMapping]) -> Contract:
    amount = row["amount"]
    return Contract(
        owner=owner_of(row),
        terms=Terms(
            row["plan_key"],
            row["term"],
            None if amount is None else money(amount),
            row["currency"],
            row["plan_version"],
            row["seats"],
            None
            if row["cycle_unit"] is None
            else BillingCycle(row["cycle_unit"], row["cycle_every"]),
        ),
        signers=tuple(
            Signer(
                s["id"],
                s["name"],
                s["email"],
                s["role"],
                s["signing_order"],
                s["status"],
                s["token_hash"],
                s["token_expires_at"],
            )
            for s in sorted(signers, key=lambda s: s["position"])
        ),
        sequential=bool(row["sequential"]),
        **same_named(
            row,
            "id",
            "title",
            "body",
            "created_at",
            "expires_at",
            "status",
            "body_hash",
            "terms_hash",
            "content_hash",
            "revision",
        ),
    )


def _event_from(row: RowMapping) -> ContractEvent:
    return ContractEvent(
        type=EventType(row["type"]),
        **same_named(
            row,
            "contract_id",
            "seq",
            "at",
            "actor",
            "signer_id",
            "ip",
            "user_agent",
            "data",
            "content_hash",
            "prev_hash",
            "hash",
        ),
    )


class SqlContracts(Repository):
    def _load(self, rows: Sequence[RowMapping]) -> list[Contract]:
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        signers = self._rows(
            sa.select(t.contract_signers).where(t.contract_signers.c.contract_id.in_(ids))
        )
        by_contract: dict[str, list[RowMapping]] = {}
        for s in signers:
            by_contract.setdefault(s["contract_id"], []).append(s)
        return [_contract_from(r, by_contract.get(r["id"], [])) for r in rows]

    @storage_errors
    def add(self, contract: Contract) -> Contract:
        self._scope(contract.owner)
        stored = attrs.evolve(contract, revision=1)
        if not self._insert_new(t.contracts.insert().values(**_contract_row(stored, self._t))):
            raise Conflict(f"contract id {contract.id} is already used")
        self._conn.execute(t.contract_signers.insert(), _signer_rows(stored))
        return stored

    @storage_errors
    def get(self, contract_id: str) -> Contract:
        row = self._by_id(t.contracts, contract_id)
        if row is None:
            raise ContractNotFound(contract_id)
        return self._load([row])[0]

    @storage_errors
    def update(self, contract: Contract) -> Contract:
        self._scope(contract.owner)
        stored = attrs.evolve(contract, revision=contract.revision + 1)
        row = _contract_row(stored, self._t)
        result = self._conn.execute(
            t.contracts.update()
            .where(
                t.contracts.c.id == contract.id,
                t.contracts.c.tenant == self._t,
                t.contracts.c.revision == contract.revision,
            )
            .values(status=row["status"], revision=row["revision"], next_due_at=row["next_due_at"])
        )
        if result.rowcount != 1:
            self.get(contract.id)
            raise StaleWrite("contract", contract.id, contract.revision)
        for signer in _signer_rows(stored):
            self._conn.execute(
                t.contract_signers.update()
                .where(
                    t.contract_signers.c.contract_id == contract.id,
                    t.contract_signers.c.id == signer["id"],
                )
                .values(
                    status=signer["status"],
                    token_hash=signer["token_hash"],
                    token_expires_at=signer["token_expires_at"],
                )
            )
        return stored

    @storage_errors
    def for_owner(self, owner: Owner) -> Sequence[Contract]:
        self._scope(owner)
        c = t.contracts.c
        rows = self._rows(
            sa.select(t.contracts)
            .where(c.tenant == self._t, c.owner_kind == owner.kind, c.owner_id == owner.id)
            .order_by(c.created_at, c.id)
        )
        return self._load(rows)

    @storage_errors
    def page_for_owner(
        self, owner: Owner, after: tuple[datetime, str] | None, limit: int
    ) -> Sequence[Contract]:
        self._scope(owner)
        c = t.contracts.c
        past = (
            []
            if after is None
            else [
                sa.or_(c.created_at > after[0], sa.and_(c.created_at == after[0], c.id > after[1]))
            ]
        )
        rows = self._rows(
            sa.select(t.contracts)
            .where(c.tenant == self._t, c.owner_kind == owner.kind, c.owner_id == owner.id, *past)
            .order_by(c.created_at, c.id)
            .limit(limit)
        )
        return self._load(rows)

    @storage_errors
    def locate(self, token_hash: str) -> tuple[str | None, str, str] | None:
        rows = self._rows(
            sa.select(
                t.contracts.c.tenant, t.contract_signers.c.contract_id, t.contract_signers.c.id
            )
            .select_from(
                t.contract_signers.join(
                    t.contracts, t.contracts.c.id == t.contract_signers.c.contract_id
                )
            )
            .where(t.contract_signers.c.token_hash == token_hash)
        )
        if not rows:
            return None
        return (rows[0]["tenant"] or None, rows[0]["contract_id"], rows[0]["id"])

    @storage_errors
    def append_event(self, event: ContractEvent) -> None:
        self.get(event.contract_id)
        count = self._conn.execute(
            sa.select(sa.func.count())
            .select_from(t.contract_events)
            .where(t.contract_events.c.contract_id == event.contract_id)
        ).scalar_one()
        if event.seq != count:
            raise Conflict(
                f"event {event.seq} of contract {event.contract_id} is not the next one ({count})"
            )
        written = self._insert_new(
            t.contract_events.insert().values(
                contract_id=event.contract_id,
                seq=event.seq,
                type=event.type.value,
                at=event.at,
                actor=event.actor,
                signer_id=event.signer_id,
                ip=event.ip,
                user_agent=event.user_agent,
                data=dict(event.data),
                content_hash=event.content_hash,
                prev_hash=event.prev_hash,
                hash=event.hash,
            )
        )
        if not written:
            raise Conflict(
                f"event {event.seq} of contract {event.contract_id} was written concurrently"
            )

    @storage_errors
    def events(self, contract_id: str) -> Sequence[ContractEvent]:
        self.get(contract_id)
        rows = self._rows(
            sa.select(t.contract_events)
            .where(t.contract_events.c.contract_id == contract_id)
            .order_by(t.contract_events.c.seq)
        )
        return [_event_from(r) for r in rows]

    @storage_errors
    def last_event(self, contract_id: str) -> ContractEvent | None:
        self.get(contract_id)
        rows = self._rows(
            sa.select(t.contract_events)
            .where(t.contract_events.c.contract_id == contract_id)
            .order_by(t.contract_events.c.seq.desc())
            .limit(1)
        )
        return _event_from(rows[0]) if rows else None

    @storage_errors
    def put_personal_data(self, data: PersonalData) -> None:
        self._conn.execute(
            t.personal_data.insert().values(
                commitment=data.commitment, tenant=self._t, value=data.value, salt=data.salt
            )
        )

    @storage_errors
    def personal_data(self, commitments: Iterable[str]) -> Mapping[str, PersonalData]:
        wanted = list(commitments)
        if not wanted:
            return {}
        rows = self._rows(
            sa.select(t.personal_data).where(
                t.personal_data.c.commitment.in_(wanted), t.personal_data.c.tenant == self._t
            )
        )
        return {r["commitment"]: PersonalData(r["commitment"], r["value"], r["salt"]) for r in rows}

    @storage_errors
    def erase_personal_data(self, commitments: Iterable[str]) -> None:
        wanted = list(commitments)
        if wanted:
            self._conn.execute(
                t.personal_data.update()
                .where(
                    t.personal_data.c.commitment.in_(wanted), t.personal_data.c.tenant == self._t
                )
                .values(value=None, salt=None)
            )

    @storage_errors
    def put_attachment(self, contract_id: str, digest: str, content_type: str, data: bytes) -> None:
        self.get(contract_id)
        a = t.contract_attachments.c
        if self._rows(sa.select(a.digest).where(a.contract_id == contract_id, a.digest == digest)):
            return
        self._conn.execute(
            t.contract_attachments.insert().values(
                contract_id=contract_id, digest=digest, content_type=content_type, data=bytes(data)
            )
        )

    @storage_errors
    def attachment(self, contract_id: str, digest: str) -> tuple[str, bytes]:
        self.get(contract_id)
        a = t.contract_attachments.c
        rows = self._rows(
            sa.select(t.contract_attachments).where(
                a.contract_id == contract_id, a.digest == digest
            )
        )
        if not rows:
            raise NotFound(f"contract {contract_id} has no attachment {digest}")
        return rows[0]["content_type"], bytes(rows[0]["data"])

    def _contracts(
        self,
        where: Sequence[sa.ColumnElement[bool]],
        order_by: Sequence[sa.ColumnElement[Any]],
        limit: int,
    ) -> list[Contract]:
        return self._load(self._batch(t.contracts, where, order_by, limit))

    @storage_errors
    def expired(self, now: datetime, limit: int = 500) -> Sequence[Contract]:
        c = t.contracts.c
        # open statuses named (not "not closed"): each an index range of expiry
        return self._contracts([c.status.in_(_OPEN), c.expires_at <= now], _BY_EXPIRY, limit)

    @storage_errors
    def awaiting(self, now: datetime, limit: int = 500) -> Sequence[Contract]:
        return self._contracts(_signable(now), _BY_EXPIRY, limit)

    @storage_errors
    def due(self, now: datetime, limit: int = 500) -> Sequence[Contract]:
        c = t.contracts.c
        return self._contracts(
            [c.next_due_at <= now, *_signable(now)], [c.next_due_at, c.id], limit
        )

    @storage_errors
    def schedule(self, contract_id: str, revision: int, at: datetime | None) -> bool:
        c = t.contracts.c
        result = self._conn.execute(
            t.contracts.update()
            .where(c.id == contract_id, c.tenant == self._t, c.revision == revision)
            .values(next_due_at=at)
        )
        return result.rowcount == 1
