"""Build the FastAPI application.

Routers register themselves through :data:`ROUTERS` (module path -> attribute ``router``);
each router module owns one surface (BC-facing /v1 API, webhooks, redirects, dashboard).
"""
from __future__ import annotations

import importlib
from typing import Any

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel

from payweave.core.metrics import UP, render
from payweave.core.settings import PayweaveSettings
from payweave.core.version import __version__

from . import problems
from .middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from .webhooks import WebhookLane

#: Router modules, each exposing ``router`` (an APIRouter). Add yours here. The PSP webhooks come
#: first: the busiest route (every event of every payment) is matched before the others' routes
#: are tried (no path of one router is a path of another, so the order changes nothing else).
ROUTERS: list[str] = [
    "payweave.core.service.webhooks",
    "payweave.core.sync.routes",
    "payweave.core.service.api",
    "payweave.core.service.redirects",
    "payweave.core.service.dashboard.routes",
]


class Health(BaseModel):
    status: str
    version: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


def create_app(settings: PayweaveSettings | None = None, *, context: Any = None) -> FastAPI:
    """Create the service. ``context`` (store, plugin manager, engine) is built from ``settings``
    when not given, and exposed as ``app.state.context`` to the routers."""
    settings = settings or PayweaveSettings()
    app = FastAPI(
        title="payweave",
        version=__version__,
        description="Payment integration between Business Central and payment service providers.",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        redirect_slashes=False,  # "/v1/transactions/%2F" is a 404 problem, not a redirect to the list
    )
    app.state.settings = settings
    app.state.context = context
    problems.install(app)

    @app.get("/health", response_model=Health, tags=["operations"], summary="Liveness")
    def health() -> Health:
        return Health(status="ok", version=__version__)

    @app.get("/ready", response_model=Readiness, tags=["operations"], summary="Readiness (store reachable)",
             responses={503: {"model": problems.Problem}})
    def ready() -> Any:
        checks: dict[str, str] = {}
        ctx = app.state.context
        store = getattr(ctx, "store", None)
        if store is None:
            checks["store"] = "not configured"
        else:
            try:
                store.ping()
                checks["store"] = "ok"
            except Exception as exc:  # readiness reports, it never raises
                checks["store"] = f"unavailable: {type(exc).__name__}"
        ok = all(v == "ok" for v in checks.values())
        body = Readiness(status="ok" if ok else "unavailable", checks=checks)
        if not ok:
            return Response(body.model_dump_json(), status_code=503, media_type="application/json")
        return body

    @app.get("/metrics", response_class=PlainTextResponse, tags=["operations"], summary="Prometheus metrics")
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(render().decode(), media_type="text/plain; version=0.0.4")

    for module_name in ROUTERS:
        module = importlib.import_module(module_name)
        app.include_router(module.router)

    UP.set(1)
    # the last added runs first: request id and logging, then the body limit, then the webhooks' express lane
    app.add_middleware(WebhookLane)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.service.max_body_bytes)
    app.add_middleware(RequestContextMiddleware)
    return app
