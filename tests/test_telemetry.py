"""Structured logs on every mutation (never on the warm path) and OpenTelemetry."""

from __future__ import annotations

import logging

import pytest

from catalog import build
from entitlements import Owner, SubscriptionExists

ACME = Owner("organization", "acme", tenant="t1")


def test_every_committed_mutation_is_logged_with_structured_fields(caplog):
    ents, _ = build()
    caplog.set_level(logging.INFO, logger="entitlements.audit")
    ents.subscriptions.start_trial(ACME, "growth", actor="staff:ann", reason="fair lead")
    (record,) = caplog.records
    assert record.entitlements_action == "subscription.start_trial"
    assert record.entitlements_actor == "staff:ann"
    assert record.entitlements_owner == "t1/organization:acme"
    assert record.entitlements_tenant == "t1"
    assert record.entitlements_reason == "fair lead"
    caplog.clear()
    with pytest.raises(SubscriptionExists):
        ents.subscriptions.start_trial(ACME, "growth", actor="staff:ann")
    assert caplog.records == []
    ents.allows(ACME, "export")
    ents.limit(ACME, "projects")
    assert caplog.records == []


def test_opentelemetry_spans_and_counters():
    pytest.importorskip("opentelemetry.sdk", reason="the otel extra and its SDK are not installed")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from entitlements.telemetry import OpenTelemetry

    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    telemetry = OpenTelemetry(tracer_provider.get_tracer("test"), meter_provider.get_meter("test"))

    ents, _ = build(telemetry=telemetry)
    spans.clear()
    ents.subscriptions.start_trial(ACME, "growth", actor="staff:ann")
    with pytest.raises(SubscriptionExists):
        ents.subscriptions.start_trial(ACME, "growth", actor="staff:ann")

    finished = spans.get_finished_spans()
    assert [s.name for s in finished] == ["entitlements.unit_of_work"] * 2
    assert finished[0].attributes["entitlements.actions"] == ("subscription.start_trial",)
    assert finished[0].attributes["entitlements.tenant"] == "t1"
    metrics = {
        m.name: m
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    mutations = {
        p.attributes["action"]: p.value for p in metrics["entitlements.mutations"].data.data_points
    }
    assert mutations["subscription.start_trial"] == 1
    failures = {
        p.attributes["error"]: p.value for p in metrics["entitlements.failures"].data.data_points
    }
    assert failures == {"SubscriptionExists": 1}
