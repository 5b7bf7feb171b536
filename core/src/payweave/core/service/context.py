"""What the routers share: settings, the store, the plugin manager, the engine and the services
built on it (PSP events, payment links, mandates). ``create_app(settings, context=...)`` exposes
it as ``app.state.context``; :func:`build_context` makes one from settings (``payweave serve``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from sqlalchemy import text

from payweave.core.engine import PaymentEngine
from payweave.core.engine.links import PaymentLinks
from payweave.core.engine.mandates import Mandates
from payweave.core.engine.psp_events import PspEvents
from payweave.core.engine.psp_inbox import PspInbox
from payweave.core.jobs.clock import Clock
from payweave.core.metrics import set_backlog_source
from payweave.core.plugins import PluginManager
from payweave.core.settings import PayweaveSettings
from payweave.core.store import Store
from payweave.core.store import service_models as _service_models  # noqa: F401  (registers the tables)


class _ReadyStore:
    """The store as readiness sees it: everything delegates to :class:`Store`, plus ``ping``."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def ping(self) -> None:
        """One round trip to the database (raises when it is unreachable)."""
        with self._store.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@dataclass
class ServiceContext:
    settings: PayweaveSettings
    engine: PaymentEngine
    events: PspEvents = field(init=False)
    inbox: PspInbox = field(init=False)
    """Webhook events: recorded in groups by the HTTP route, applied after the answer."""
    links: PaymentLinks = field(init=False)
    mandates: Mandates = field(init=False)
    store: Any = field(init=False)
    """The store with ``ping()`` for ``/ready`` (``engine.store`` is the store itself)."""

    def __post_init__(self) -> None:
        self.events = PspEvents(self.engine)
        self.inbox = PspInbox(self.events)
        self.links = PaymentLinks(self.engine, self.events, public_base_url=self.settings.service.public_base_url)
        self.mandates = Mandates(self.engine, self.events)
        store = self.engine.store
        self.store = store if hasattr(store, "ping") else _ReadyStore(store)

    @property
    def plugins(self) -> PluginManager:
        return self.engine.plugins

    def install_metrics(self) -> None:
        """Report the job backlog at each scrape of /metrics."""
        set_backlog_source(lambda: self.engine.jobs.counts())

    def close(self) -> None:
        set_backlog_source(None)
        self.inbox.close()
        self.engine.store.dispose()


def build_context(
    settings: PayweaveSettings | None = None,
    *,
    store: Store | None = None,
    plugins: PluginManager | None = None,
    clock: Clock | None = None,
) -> ServiceContext:
    """Open the store (migrating it), load the plugins and build the engine from settings."""
    settings = settings or PayweaveSettings()
    if plugins is None:
        plugins = PluginManager(settings)
        plugins.load_entrypoints()
    store = store or Store(settings.database_url)
    engine = PaymentEngine(store, plugins, clock=clock, settings=settings)
    context = ServiceContext(settings=settings, engine=engine)
    context.install_metrics()
    return context


def context_of(app: Any) -> ServiceContext:
    """The context of the service ``app`` (``app.state.context``)."""
    context = app.state.context
    if context is None:
        from payweave.hooks.errors import ConfigurationError

        raise ConfigurationError("The service was started without a store and engine.")
    return context


def get_context(request: Request) -> ServiceContext:
    return context_of(request.app)


__all__ = ["ServiceContext", "build_context", "context_of", "get_context"]
