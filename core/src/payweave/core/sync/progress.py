"""Progress of a sync run, for the CLI's progress bars and the status page.

A run reports :class:`ProgressEvent`\\ s to an optional callback: a ``phase`` event when a phase
starts, a ``page`` event after every committed page (cumulative counters of that stream in this
run, and its rate), ``stream_done`` when a stream ends, ``pdf`` per stored PDF and ``status`` when
the connection's status changes. The same counters are persisted on the connection
(``progress``), so ``payweave status`` shows them from another process.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

EventKind = Literal["phase", "page", "stream_done", "pdf", "status"]


@dataclass(frozen=True)
class ProgressEvent:
    company_id: str
    kind: EventKind
    phase: str
    entity: str = ""
    pages: int = 0
    records: int = 0
    requests: int = 0
    elapsed: float = 0.0
    status: str = ""
    note: str = ""

    @property
    def rate(self) -> float:
        """Records per second in this stream so far."""
        return self.records / self.elapsed if self.elapsed > 0 else 0.0


ProgressCallback = Callable[[ProgressEvent], None]


@dataclass
class StreamCounter:
    """Counters of one stream in one run."""

    phase: str
    entity: str
    pages: int = 0
    records: int = 0
    requests: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    ignored: int = 0
    stale: int = 0
    issues: int = 0
    started: float = field(default_factory=time.monotonic)
    done: bool = False
    note: str = ""

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def as_json(self) -> dict[str, Any]:
        return {
            "pages": self.pages, "records": self.records, "requests": self.requests, "inserted": self.inserted,
            "updated": self.updated, "unchanged": self.unchanged, "ignored": self.ignored, "stale": self.stale,
            "issues": self.issues, "seconds": round(self.elapsed, 3), "done": self.done, "note": self.note,
        }


@dataclass
class SyncReport:
    """What one run did: counters per (phase, entity), PDFs stored, the outcome."""

    company_id: str
    streams: list[StreamCounter] = field(default_factory=list)
    pdfs: int = 0
    status: str = ""
    phase: str = ""
    events_dispatched: int = 0

    def counter(self, phase: str, entity: str) -> StreamCounter:
        for c in self.streams:
            if c.phase == phase and c.entity == entity:
                return c
        c = StreamCounter(phase, entity)
        self.streams.append(c)
        return c

    def records(self, phase: str | None = None, entity: str | None = None) -> int:
        return sum(c.records for c in self.streams if (phase is None or c.phase == phase)
                   and (entity is None or c.entity == entity))

    def as_json(self) -> dict[str, Any]:
        return {
            "company_id": self.company_id, "status": self.status, "phase": self.phase, "pdfs": self.pdfs,
            "events_dispatched": self.events_dispatched,
            "streams": [{"phase": c.phase, "entity": c.entity, **c.as_json()} for c in self.streams],
        }
