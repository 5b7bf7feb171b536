"""The Stripe-shaped sandbox as a Starlette ASGI app.

``/v1/...`` speaks Stripe's v1 API (form-encoded requests, JSON responses, Stripe error
objects, idempotency). ``/_sandbox/...`` is the sandbox's own control surface (no API key:
bind it to loopback only): clock, faults, webhook flush, payout runs, the hosted checkout
and 3DS pages, and the journal of money movements.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import html
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from payweave.hooks.money import from_minor_units

from ..formcodec import FormDecodeError, decode
from .base import Ctx, Ids
from .clock import SandboxClock
from .errors import StripeError, invalid
from .faults import Fault, FaultInjector
from .idempotency import MAX_KEY_LENGTH, IdempotencyStore
from .ledger import Ledger
from .params import Params
from .settings import SandboxSettings
from .webhooks import WebhookDispatcher

log = logging.getLogger(__name__)

#: (method, path template, Ledger method)
API_ROUTES: list[tuple[str, str, str]] = [
    ("POST", "/v1/payment_intents", "create_payment_intent"),
    ("GET", "/v1/payment_intents", "list_payment_intents"),
    ("GET", "/v1/payment_intents/{id}", "retrieve_payment_intent"),
    ("POST", "/v1/payment_intents/{id}", "update_payment_intent"),
    ("POST", "/v1/payment_intents/{id}/confirm", "confirm_payment_intent"),
    ("POST", "/v1/payment_intents/{id}/capture", "capture_payment_intent"),
    ("POST", "/v1/payment_intents/{id}/cancel", "cancel_payment_intent"),
    ("POST", "/v1/payment_intents/{id}/increment_authorization", "increment_authorization"),
    ("GET", "/v1/charges", "list_charges"),
    ("GET", "/v1/charges/{id}", "retrieve_charge"),
    ("POST", "/v1/refunds", "create_refund"),
    ("GET", "/v1/refunds", "list_refunds"),
    ("GET", "/v1/refunds/{id}", "retrieve_refund"),
    ("POST", "/v1/refunds/{id}", "update_refund"),
    ("POST", "/v1/customers", "create_customer"),
    ("GET", "/v1/customers", "list_customers"),
    ("GET", "/v1/customers/search", "search_customers"),
    ("GET", "/v1/customers/{id}", "retrieve_customer"),
    ("POST", "/v1/customers/{id}", "update_customer"),
    ("DELETE", "/v1/customers/{id}", "delete_customer"),
    ("GET", "/v1/customers/{id}/payment_methods", "list_payment_methods"),
    ("GET", "/v1/payment_methods", "list_payment_methods"),
    ("GET", "/v1/payment_methods/{id}", "retrieve_payment_method"),
    ("POST", "/v1/payment_methods/{id}", "update_payment_method"),
    ("POST", "/v1/payment_methods/{id}/attach", "attach_payment_method_api"),
    ("POST", "/v1/payment_methods/{id}/detach", "detach_payment_method"),
    ("POST", "/v1/setup_intents", "create_setup_intent"),
    ("GET", "/v1/setup_intents", "list_setup_intents"),
    ("GET", "/v1/setup_intents/{id}", "retrieve_setup_intent"),
    ("POST", "/v1/setup_intents/{id}/confirm", "confirm_setup_intent"),
    ("POST", "/v1/setup_intents/{id}/cancel", "cancel_setup_intent"),
    ("GET", "/v1/mandates/{id}", "retrieve_mandate"),
    ("POST", "/v1/checkout/sessions", "create_checkout_session"),
    ("GET", "/v1/checkout/sessions", "list_checkout_sessions"),
    ("GET", "/v1/checkout/sessions/{id}", "retrieve_checkout_session"),
    ("POST", "/v1/checkout/sessions/{id}/expire", "expire_checkout_session"),
    ("GET", "/v1/checkout/sessions/{id}/line_items", "list_checkout_line_items"),
    ("GET", "/v1/balance", "retrieve_balance"),
    ("GET", "/v1/balance_transactions", "list_balance_transactions"),
    ("GET", "/v1/balance_transactions/{id}", "retrieve_balance_transaction"),
    ("GET", "/v1/payouts", "list_payouts"),
    ("GET", "/v1/payouts/{id}", "retrieve_payout"),
    ("GET", "/v1/events", "list_events"),
    ("GET", "/v1/events/{id}", "retrieve_event"),
    ("POST", "/v1/webhook_endpoints", "create_webhook_endpoint"),
    ("GET", "/v1/webhook_endpoints", "list_webhook_endpoints"),
    ("GET", "/v1/webhook_endpoints/{id}", "retrieve_webhook_endpoint"),
    ("POST", "/v1/webhook_endpoints/{id}", "update_webhook_endpoint"),
    ("DELETE", "/v1/webhook_endpoints/{id}", "delete_webhook_endpoint"),
]

_COMPILED = [
    (method, re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$"), name)
    for method, template, name in API_ROUTES
]


def _json(body: Any) -> bytes:
    return json.dumps(body, indent=2).encode()


class Sandbox:
    """One sandbox account: ledger, clock, idempotency, faults and webhook delivery."""

    def __init__(self, settings: SandboxSettings | None = None):
        self.settings = settings or SandboxSettings()
        self._build()

    def _build(self) -> None:
        self.clock = SandboxClock(self.settings.start_time, frozen=self.settings.frozen_clock)
        self.ids = Ids(self.settings.id_seed)
        self.ledger = Ledger(self.settings, self.clock, self.ids)
        self.idempotency = IdempotencyStore(self.clock, self.settings.idempotency_key_ttl_seconds)
        self.faults = FaultInjector()
        self.webhooks = WebhookDispatcher(self.settings, self.ledger.webhook_delivered)
        self.ledger.event_sink = lambda event, endpoints: self.webhooks.enqueue(
            event, [(ep["id"], ep["url"], self.ledger.endpoint_secret(ep["id"])) for ep in endpoints]
        )

    def close(self) -> None:
        self.webhooks.stop()

    def reset(self) -> None:
        """Forget everything (objects, events, keys, faults, clock, pending webhooks): a fresh
        account with the same settings. For test suites that share one server."""
        with self.ledger.lock:
            self.webhooks.stop()
            self._build()

    # ---------------------------------------------------------------- auth
    def authenticate(self, request: Request) -> str:
        header = request.headers.get("authorization", "")
        key = ""
        if header[:7].lower() == "bearer ":
            key = header[7:].strip()
        elif header[:6].lower() == "basic ":
            try:
                key = base64.b64decode(header[6:].strip(), validate=True).decode().split(":", 1)[0]
            except (binascii.Error, UnicodeDecodeError):
                key = ""
        challenge = {"WWW-Authenticate": 'Basic realm="Stripe"'}
        if not key:
            raise StripeError(
                401, "invalid_request_error",
                "You did not provide an API key. You need to provide your API key in the Authorization header, "
                "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
                stored=False, headers=challenge,
            )  # fmt: skip
        allowed = key in self.settings.api_keys if self.settings.api_keys is not None else key.startswith("sk_test_")
        if not allowed:
            shown = key[:8] + "*" * max(len(key) - 12, 0) + key[-4:] if len(key) > 12 else "****"
            raise StripeError(
                401, "invalid_request_error", f"Invalid API Key provided: {shown}", code="api_key_invalid",
                stored=False, headers=challenge,
            )  # fmt: skip
        return key

    # ---------------------------------------------------------------- execution
    def execute(
        self, api_key: str, method: str, path: str, handler: str, path_params: dict[str, str], tree: dict[str, Any],
        ctx: Ctx, fault: Fault | None,
    ) -> tuple[int, bytes, dict[str, str]]:  # fmt: skip
        """Run one API call under idempotency rules; returns (status, body, extra headers)."""
        key = ctx.idempotency_key
        record = None
        if key is not None:
            if len(key) > MAX_KEY_LENGTH:
                error = invalid(f"Idempotency-Key must be at most {MAX_KEY_LENGTH} characters long.")
                return error.status, _json(error.body()), {}
            fingerprint = json.dumps([method, path, tree], sort_keys=True)
            state, record = self.idempotency.begin(api_key, key, fingerprint, ctx.request_id or "")
            if state == "in_flight":
                error = StripeError(
                    409, "invalid_request_error",
                    "There is currently another in-progress request using this Idempotency-Key. Try again later.",
                    code="idempotency_key_in_use",
                )  # fmt: skip
                return 409, _json(error.body()), {"Stripe-Should-Retry": "true"}
            if state == "mismatch":
                error = StripeError(
                    400, "idempotency_error",
                    f"Keys for idempotent requests can only be used with the same parameters they were first used "
                    f"with. Try using a key other than '{key}' if you meant to execute a different request.",
                )  # fmt: skip
                return 400, _json(error.body()), {"Stripe-Should-Retry": "false"}
            if state == "replay":
                return record.status, record.body, {
                    **record.headers,
                    "Idempotent-Replayed": "true",
                    "Original-Request": record.request_id,
                }
        headers: dict[str, str] = {}
        try:
            if fault is not None and fault.mode == "slow":
                time.sleep(fault.delay_seconds)
            with self.ledger.lock:
                self.ledger.tick()
                result = getattr(self.ledger, handler)(Params(tree), ctx, **path_params)
            status, body = 200, _json(result)
        except StripeError as exc:
            if not exc.stored:
                if record is not None:
                    self.idempotency.abandon(api_key, key or "", record)
                return exc.status, _json(exc.body()), exc.headers
            status, body, headers = exc.status, _json(exc.body()), exc.headers
        except Exception:  # a sandbox bug: answer like Stripe's api_error, and keep it for replays
            log.exception("sandbox error in %s %s", method, path)
            error = StripeError(500, "api_error", "An unexpected error occurred in the sandbox.")
            status, body = 500, _json(error.body())
        if record is not None:
            self.idempotency.complete(record, status, body, headers)
        return status, body, headers

    def tick(self) -> None:
        with self.ledger.lock:
            self.ledger.tick()


def _route(method: str, path: str) -> tuple[str, dict[str, str]] | None:
    for route_method, pattern, name in _COMPILED:
        match = pattern.match(path)
        if match and route_method == method:
            return name, match.groupdict()
    return None


def _error_response(error: StripeError, request_id: str) -> Response:
    return Response(
        _json(error.body()),
        status_code=error.status,
        media_type="application/json",
        headers={"Request-Id": request_id, **error.headers},
    )


async def _hold(request: Request, seconds: float) -> bool:
    """Wait up to ``seconds``; False as soon as the client has disconnected."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        if await request.is_disconnected():
            return False
        await asyncio.sleep(0.02)
    return True


async def _admin_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/x-www-form-urlencoded"):
        return decode(raw)
    try:
        body = json.loads(raw)
    except ValueError:
        raise invalid("The sandbox control endpoints take a JSON object.") from None
    if not isinstance(body, dict):
        raise invalid("The sandbox control endpoints take a JSON object.")
    return body


def create_app(settings: SandboxSettings | None = None, *, sandbox: Sandbox | None = None) -> Starlette:
    """Build the sandbox ASGI app (``app.state.sandbox`` is the :class:`Sandbox`)."""
    box = sandbox or Sandbox(settings)

    async def api(request: Request) -> Response:
        request_id = box.ids.new("req", 14)
        method, path = request.method, request.url.path
        try:
            api_key = box.authenticate(request)
            matched = _route(method, path)
            if matched is None:
                raise StripeError(
                    404, "invalid_request_error",
                    f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help "
                    "at https://support.stripe.com/.", stored=False,
                )  # fmt: skip
            handler, path_params = matched
            if method == "POST":
                if request.headers.get("content-type", "").startswith("application/json"):
                    raise invalid(
                        "Invalid request: request parameters should be url-encoded in the body of the request "
                        "(application/x-www-form-urlencoded), not JSON."
                    )
                tree = decode(await request.body())
            else:
                tree = decode(request.url.query)
        except FormDecodeError as exc:
            return _error_response(invalid(str(exc), param=exc.param), request_id)
        except StripeError as exc:
            return _error_response(exc, request_id)
        fault = box.faults.take(method, path)
        if fault is not None and fault.mode == "error":
            return _error_response(fault.error(), request_id)
        ctx = Ctx(
            request_id=request_id,
            idempotency_key=request.headers.get("idempotency-key") if method == "POST" else None,
            base_url=str(request.base_url).rstrip("/"),
        )
        status, body, headers = await run_in_threadpool(
            box.execute, api_key, method, path, handler, path_params, tree, ctx, fault
        )
        if fault is not None and fault.mode in ("delay", "drop"):
            seconds = fault.delay_seconds if fault.mode == "delay" else box.settings.max_fault_hold_seconds
            await _hold(request, seconds)
        return Response(
            body,
            status_code=status,
            media_type="application/json",
            headers={"Request-Id": request_id, "Stripe-Version": box.settings.api_version, **headers},
        )

    # ---------------------------------------------------------------- control surface
    def admin(fn: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                return await fn(request)
            except FormDecodeError as exc:
                return _error_response(invalid(str(exc), param=exc.param), "req_sandbox")
            except StripeError as exc:
                return _error_response(exc, "req_sandbox")

        return endpoint

    def admin_ctx(request: Request) -> Ctx:
        return Ctx(request_id=box.ids.new("req", 14), base_url=str(request.base_url).rstrip("/"))

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "now": box.clock.now()})

    async def reset(request: Request) -> Response:
        await run_in_threadpool(box.reset)
        return JSONResponse({"ok": True, "now": box.clock.now()})

    async def clock(request: Request) -> Response:
        if request.method == "POST":
            body = await _admin_body(request)
            try:
                if "freeze" in body:
                    box.clock.freeze(bool(body["freeze"]))
                if "set" in body:
                    box.clock.set(int(body["set"]))
                if "advance_seconds" in body:
                    box.clock.advance(float(body["advance_seconds"]))
            except (TypeError, ValueError) as exc:
                raise invalid(str(exc)) from None
            await run_in_threadpool(box.tick)
        return JSONResponse({"now": box.clock.now(), "frozen": box.clock.frozen})

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            fault = box.faults.add(await _admin_body(request))
            return JSONResponse({"id": fault.id, "mode": fault.mode, "count": fault.count, "path": fault.path})
        if request.method == "DELETE":
            box.faults.clear()
        return JSONResponse({"data": box.faults.list()})

    async def flush(request: Request) -> Response:
        body = await _admin_body(request)
        stats = await run_in_threadpool(box.webhooks.flush, int(body.get("rounds", 1)))
        return JSONResponse(stats)

    async def deliveries(request: Request) -> Response:
        data = box.webhooks.deliveries()
        event = request.query_params.get("event")
        if event:
            data = [d for d in data if d["event"] == event]
        return JSONResponse({"data": data, "stats": box.webhooks.stats()})

    async def run_payouts(request: Request) -> Response:
        body = await _admin_body(request)
        ctx = admin_ctx(request)

        def run() -> list[dict[str, Any]]:
            with box.ledger.lock:
                box.ledger.tick()
                return box.ledger.run_payouts(
                    ctx,
                    currency=body.get("currency"),
                    outcome=str(body.get("outcome", "paid")),
                    failure_code=str(body.get("failure_code", "account_closed")),
                )

        return JSONResponse({"payouts": await run_in_threadpool(run)})

    async def journal(request: Request) -> Response:
        filters = dict(request.query_params)
        with box.ledger.lock:
            entries = [dict(e) for e in box.ledger.journal]
        entries = [e for e in entries if all(str(e.get(k)) == v for k, v in filters.items())]
        return JSONResponse({"data": entries})

    def _locked(fn: Any, *args: Any) -> Any:
        with box.ledger.lock:
            box.ledger.tick()
            return fn(*args)

    async def checkout_page(request: Request) -> Response:
        session_id = request.path_params["id"]
        session = await run_in_threadpool(_locked, box.ledger.checkout_session, session_id)
        if session["mode"] == "payment":
            amount = f"{from_minor_units(session['amount_total'], session['currency'])} {session['currency'].upper()}"
        else:
            amount = "Save your card for later payments"
        sid = html.escape(session_id)
        error = html.escape(request.query_params.get("error", ""))
        options = "".join(
            f'<option value="{name}">{name}</option>'
            for name in ("pm_card_visa", "pm_card_mastercard", "pm_card_chargeDeclined",
                         "pm_card_chargeDeclinedInsufficientFunds", "pm_card_authenticationRequired")  # fmt: skip
        )
        page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Sandbox checkout</title></head>
<body><h1>Stripe-shaped sandbox checkout</h1><p id="status">Status: {html.escape(session["status"])}</p>
<p id="amount">{html.escape(amount)}</p>{f'<p id="error" style="color:red">{error}</p>' if error else ""}
<form method="post" action="/_sandbox/checkout/{sid}/complete"><input type="hidden" name="redirect" value="true">
<label>Card <select name="payment_method">{options}</select></label> <button id="pay" type="submit">Pay</button></form>
<form method="post" action="/_sandbox/checkout/{sid}/cancel"><input type="hidden" name="redirect" value="true">
<button id="cancel" type="submit">Cancel and go back</button></form></body></html>"""
        return HTMLResponse(page)

    async def checkout_complete(request: Request) -> Response:
        session_id = request.path_params["id"]
        body = await _admin_body(request)
        ctx = admin_ctx(request)
        status, result = await run_in_threadpool(
            _locked, box.ledger.complete_checkout_session, session_id,
            str(body.get("payment_method") or "pm_card_visa"), str(body.get("authentication") or "succeed"), ctx,
        )  # fmt: skip
        if str(body.get("redirect", "")).lower() == "true":
            if status == 200 and result["redirect_url"]:
                return RedirectResponse(result["redirect_url"], status_code=303)
            message = (result.get("error") or {}).get("message", "Payment failed")
            return RedirectResponse(f"/_sandbox/checkout/{session_id}?error={quote(message)}", status_code=303)
        return JSONResponse(result, status_code=status)

    async def checkout_cancel(request: Request) -> Response:
        session_id = request.path_params["id"]
        body = await _admin_body(request)
        result = await run_in_threadpool(_locked, box.ledger.cancel_checkout_session, session_id)
        if str(body.get("redirect", "")).lower() == "true" and result["redirect_url"]:
            return RedirectResponse(result["redirect_url"], status_code=303)
        return JSONResponse(result)

    async def authenticate_page(request: Request) -> Response:
        object_id = html.escape(request.path_params["id"])
        page = f"""<!doctype html><html><head><meta charset="utf-8"><title>3D Secure</title></head><body>
<h1>3D Secure test page</h1><p>{object_id}</p>
<form method="post"><input type="hidden" name="redirect" value="true"><button name="outcome" value="succeed" id="succeed">
Complete authentication</button> <button name="outcome" value="fail" id="fail">Fail authentication</button></form></body></html>"""
        return HTMLResponse(page)

    async def authenticate(request: Request) -> Response:
        object_id = request.path_params["id"]
        body = await _admin_body(request)
        ctx = admin_ctx(request)
        outcome = str(body.get("outcome", "succeed"))
        intent = await run_in_threadpool(_locked, box.ledger.authenticate, object_id, outcome, ctx)
        if str(body.get("redirect", "")).lower() == "true":
            return_url = box.ledger.internal[object_id].get("return_url")
            if return_url:
                separator = "&" if "?" in return_url else "?"
                key = "setup_intent" if object_id.startswith("seti_") else "payment_intent"
                return RedirectResponse(f"{return_url}{separator}{key}={object_id}", status_code=303)
        return JSONResponse(intent)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            box.close()

    routes = [
        Route("/v1/{path:path}", api, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/health", health, methods=["GET"]),
        Route("/_sandbox/reset", admin(reset), methods=["POST"]),
        Route("/_sandbox/clock", admin(clock), methods=["GET", "POST"]),
        Route("/_sandbox/faults", admin(faults), methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/webhooks/flush", admin(flush), methods=["POST"]),
        Route("/_sandbox/webhooks/deliveries", admin(deliveries), methods=["GET"]),
        Route("/_sandbox/payouts/run", admin(run_payouts), methods=["POST"]),
        Route("/_sandbox/journal", admin(journal), methods=["GET"]),
        Route("/_sandbox/checkout/{id}", admin(checkout_page), methods=["GET"]),
        Route("/_sandbox/checkout/{id}/complete", admin(checkout_complete), methods=["POST"]),
        Route("/_sandbox/checkout/{id}/cancel", admin(checkout_cancel), methods=["POST"]),
        Route("/_sandbox/authenticate/{id}", admin(authenticate_page), methods=["GET"]),
        Route("/_sandbox/authenticate/{id}", admin(authenticate), methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.sandbox = box
    return app
