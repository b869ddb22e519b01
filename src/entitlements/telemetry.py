"""Observability for use cases: structured logs always, OpenTelemetry when asked.

Every committed audit event is logged at INFO on the ``entitlements.audit`` logger with
its fields in ``extra`` (``entitlements_action``, ``entitlements_actor``...), so a JSON log
formatter picks them up. Nothing is logged on the warm check path.

With the ``otel`` extra, ``Entitlements(telemetry=OpenTelemetry())`` wraps each unit of
work in a span (``entitlements.unit_of_work``, with the actions it recorded as
attributes) and counts mutations (``entitlements.mutations``, by action) and failed units
of work (``entitlements.failures``, by error type) — seed 001 asks for tracing, metrics
and structured logs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from entitlements.domain.audit import AuditEvent
from entitlements.extras import require

__all__ = ["OpenTelemetry", "Telemetry", "log_event"]

audit_log = logging.getLogger("entitlements.audit")


def log_event(event: AuditEvent) -> None:
    if not audit_log.isEnabledFor(logging.INFO):
        return
    audit_log.info(
        "%s %s by %s",
        event.action,
        event.target,
        event.actor,
        extra={
            "entitlements_event_id": event.id,
            "entitlements_action": event.action,
            "entitlements_actor": event.actor,
            "entitlements_target": event.target,
            "entitlements_owner": None if event.owner is None else str(event.owner),
            "entitlements_tenant": None if event.owner is None else event.owner.tenant,
            "entitlements_reason": event.reason,
            "entitlements_at": event.at.isoformat(),
        },
    )


class Telemetry(Protocol):
    """Traces and counts units of work; `OpenTelemetry` is the shipped one."""

    @contextmanager
    def unit_of_work(self, tenant: str | None) -> Iterator[Any]:
        """Wrap one unit of work; yields a handle passed back to `committed`."""
        ...

    def committed(self, handle: Any, events: list[AuditEvent]) -> None:
        """Called once the unit of work committed, with the audit events it recorded."""
        ...


class OpenTelemetry:
    """Spans and metrics through the OpenTelemetry API (the host configures the SDK)."""

    def __init__(self, tracer: Any = None, meter: Any = None) -> None:
        require("opentelemetry", "otel", "OpenTelemetry")
        from opentelemetry import metrics, trace

        self._tracer = tracer or trace.get_tracer("entitlements")
        self._meter = meter or metrics.get_meter("entitlements")
        self._mutations = self._meter.create_counter(
            "entitlements.mutations", description="committed changes"
        )
        self._failures = self._meter.create_counter(
            "entitlements.failures", description="failed units of work"
        )

    @contextmanager
    def unit_of_work(self, tenant: str | None) -> Iterator[Any]:
        with self._tracer.start_as_current_span("entitlements.unit_of_work") as span:
            span.set_attribute("entitlements.tenant", tenant or "")
            try:
                yield span
            except Exception as exc:
                self._failures.add(1, {"error": type(exc).__name__})
                raise

    def committed(self, handle: Any, events: list[AuditEvent]) -> None:
        if events:
            handle.set_attribute("entitlements.actions", [e.action for e in events])
        for event in events:
            self._mutations.add(1, {"action": event.action})
