"""Prometheus metrics (prometheus-client): the one home for what payweave measures.

Served by the HTTP service at ``/metrics``. Labels are low-cardinality on purpose: plugin and
hook names, operation names, outcomes, HTTP routes (templates, never raw paths).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

REGISTRY = CollectorRegistry(auto_describe=True)

OPERATIONS = Counter(
    "payweave_operations_total",
    "Payment operations by kind and outcome.",
    ["operation", "outcome"],
    registry=REGISTRY,
)
PLUGIN_CALLS = Histogram(
    "payweave_plugin_call_seconds",
    "Latency of hook calls into plugins (PSP and ERP), by outcome.",
    ["plugin", "hook", "outcome"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
HTTP_REQUESTS = Counter(
    "payweave_http_requests_total",
    "HTTP requests answered by the service.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
WEBHOOK_EVENTS = Counter(
    "payweave_webhook_events_total",
    "Incoming webhook events by plugin and result (stored, duplicate, rejected).",
    ["plugin", "result"],
    registry=REGISTRY,
)
SYNC_RECORDS = Counter(
    "payweave_sync_records_total",
    "Records read from the ERP by entity.",
    ["entity"],
    registry=REGISTRY,
)
UP = Gauge("payweave_up", "1 while the service runs.", registry=REGISTRY)

_backlog_source: Callable[[], dict[str, int]] | None = None

#: the child of each (metric, label values) used so far (see :func:`labelled`)
_children: dict[tuple[Any, tuple[Any, ...]], Any] = {}


def labelled(metric: Any, *values: Any) -> Any:
    """``metric.labels(*values)``, looked up once per label values: prometheus-client validates
    the values and takes a lock on every ``labels`` call, a few microseconds that every webhook,
    plugin call and request would pay again (labels are low-cardinality, so this stays small)."""
    key = (metric, values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)
    return child


class _BacklogCollector:
    """Job backlog by state, read from the store at scrape time."""

    def collect(self):  # type: ignore[no-untyped-def]
        family = GaugeMetricFamily("payweave_job_backlog", "Jobs in the queue by state.", labels=["state"])
        if _backlog_source is not None:
            try:
                for state, count in sorted(_backlog_source().items()):
                    family.add_metric([state], count)
            except Exception:  # a scrape must never fail because the store is briefly unavailable
                pass
        yield family


REGISTRY.register(_BacklogCollector())


def set_backlog_source(source: Callable[[], dict[str, int]] | None) -> None:
    global _backlog_source
    _backlog_source = source


def render() -> bytes:
    return generate_latest(REGISTRY)
