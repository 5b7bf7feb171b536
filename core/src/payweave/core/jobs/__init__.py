"""Durable jobs: the clock, the queue (in the store), handlers and workers.

Import :mod:`payweave.core.jobs.worker` for :class:`Worker` / :class:`BackgroundWorker`.
"""
from .clock import SYSTEM_CLOCK, Clock, ManualClock, SystemClock
from .queue import ClaimedJob, JobKind, JobQueue, JobStatus, JobView

__all__ = [
    "SYSTEM_CLOCK",
    "ClaimedJob",
    "Clock",
    "JobKind",
    "JobQueue",
    "JobStatus",
    "JobView",
    "ManualClock",
    "SystemClock",
]
