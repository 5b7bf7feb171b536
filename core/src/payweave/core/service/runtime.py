"""Running the service: the app with its context, the webhook applier, the in-process job worker
and the service's own maintenance (replaying payment-link creations and mandate charges whose outcome is unknown,
re-evaluating deferred PSP events), for ``payweave serve``.

``app_factory`` builds everything from ``PAYWEAVE_*`` settings in each uvicorn worker process
(``payweave serve --workers N``); ``PAYWEAVE_SERVE_JOB_WORKER=1`` starts the in-process job worker
there too.
"""
from __future__ import annotations

import asyncio
import atexit
import os
import threading
from typing import Any

from fastapi import FastAPI

from payweave.core.heap import freeze_started_heap
from payweave.core.logging import get_logger
from payweave.core.settings import PayweaveSettings
from payweave.hooks.errors import PayweaveError
from payweave.hooks.money import currency_exponent

from .app import create_app
from .context import ServiceContext, build_context

JOB_WORKER_ENV = "PAYWEAVE_SERVE_JOB_WORKER"


class Maintenance:
    """A daemon thread: every ``interval`` seconds, replay PSP calls left without outcome (also
    those of another service process that died mid-call: the document lock keeps a call that is
    still running elsewhere from being replayed), replay unanswered link creations and mandate
    charges, and re-evaluate deferred PSP events."""

    def __init__(self, context: ServiceContext, interval: float = 30.0) -> None:
        self.context = context
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.log = get_logger(component="maintenance")

    def run_once(self) -> dict[str, int]:
        done = {"operations": 0, "links": 0, "mandate_charges": 0, "deferred_events": 0}
        for name, call in (("operations", self.context.engine.recover),
                           ("links", self.context.links.recover), ("mandate_charges", self.context.mandates.recover),
                           ("deferred_events", self.context.events.reapply_deferred)):
            try:
                done[name] = call()
            except PayweaveError as exc:
                self.log.warning("maintenance.failed", task=name, code=exc.code)
            except Exception as exc:  # the loop must survive a database hiccup
                self.log.error("maintenance.crashed", task=name, error_type=type(exc).__name__)
        return done

    def start(self) -> Maintenance:
        def loop() -> None:
            while not self._stop.wait(self.interval):
                self.run_once()

        self._thread = threading.Thread(target=loop, name="payweave-maintenance", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


def warm_up(app: FastAPI) -> None:
    """Route one request through the app's router before serving: FastAPI prepares each route
    (validators, serializers) on the first request that passes it, a few hundred milliseconds
    that would otherwise fall on the first PSP webhook after a start; and load the ISO 4217
    currency table, which the first amount would otherwise load. In a thread of its own,
    with its own event loop (uvicorn's may be running already)."""
    scope = {"type": "http", "method": "GET", "path": "/.payweave-warm-up", "raw_path": b"/.payweave-warm-up",
             "root_path": "", "query_string": b"", "headers": [], "scheme": "http", "http_version": "1.1",
             "client": ("127.0.0.1", 0), "server": ("127.0.0.1", 0)}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    def run() -> None:
        try:
            currency_exponent("EUR")  # loads the ISO 4217 table (about 50 ms) before a webhook's amount needs it
            asyncio.run(app.router(scope, receive, send))  # the router only: no middleware, no metrics
        except Exception as exc:  # an optimization only: never stops the service
            get_logger(component="runtime").warning("warm_up.failed", error_type=type(exc).__name__)

    thread = threading.Thread(target=run, name="payweave-warm-up", daemon=True)
    thread.start()
    thread.join(30)


class Runtime:
    """The context plus what runs beside the HTTP server in this process."""

    def __init__(self, context: ServiceContext, *, job_worker: bool) -> None:
        self.context = context
        self.app: FastAPI = create_app(context.settings, context=context)
        self.job_worker = job_worker
        self._stoppers: list[Any] = []

    def start(self) -> Runtime:
        warm_up(self.app)
        # what exists now lives as long as the process: out of the collector's full passes
        # (payweave.core.heap), before the threads below start making garbage of their own
        freeze_started_heap()
        self.context.inbox.start()  # applies webhook events a previous run recorded and never applied
        self._stoppers.append(Maintenance(self.context).start())
        if self.job_worker:
            from payweave.core.jobs.worker import BackgroundWorker

            self._stoppers.append(BackgroundWorker(self.context.engine).start())
        return self

    def stop(self) -> None:
        for thing in reversed(self._stoppers):
            thing.stop()
        self._stoppers.clear()
        self.context.close()


def app_factory() -> FastAPI:
    """One uvicorn worker process: build the context from settings and start what runs beside it."""
    runtime = Runtime(build_context(PayweaveSettings()), job_worker=os.environ.get(JOB_WORKER_ENV) == "1").start()
    atexit.register(runtime.stop)
    return runtime.app


__all__ = ["JOB_WORKER_ENV", "Maintenance", "Runtime", "app_factory", "warm_up"]
