"""``/_sandbox/...``: act as a BC user and control the sandbox (no auth; loopback only).

JSON in, JSON out; amounts may be JSON numbers or decimal strings. Errors use BC's error body.

    GET    /_sandbox/health | /_sandbox/info | /_sandbox/stats        DELETE /_sandbox/stats
    POST   /_sandbox/apps {clientId?, clientSecret?}          register an Entra app
    POST   /_sandbox/tokens/revoke
    POST   /_sandbox/clock {set?: iso datetime, advance?: seconds, freeze?: bool}
    POST   /_sandbox/faults {kind: status|drop|delay, count, status, retryAfter, delay, method, path}
    DELETE /_sandbox/faults
    PUT    /_sandbox/throttle {requestsPerWindow, windowSeconds, maxConcurrent, maxQueued, queueTimeoutSeconds}
    PUT    /_sandbox/settings {latencySeconds, tokenLifetimeSeconds, webhookDelaySeconds,
                               webhookCollectionThreshold, webhookRetrySeconds, staleEtagStatus}
    POST   /_sandbox/webhooks/flush                           deliver pending notifications now
    GET    /_sandbox/webhooks                                 subscriptions, pending count, deliveries
    POST   /_sandbox/seed {seed, customers, items, invoicesPerYear, years, orders, creditMemos, ...}
    POST   /_sandbox/companies {name, lcy?}
    POST   /_sandbox/companies/{c}/customers {name, email?, currencyCode?, paymentMethodCode?}
    POST   /_sandbox/companies/{c}/documents {documentType, customerNumber|customerId, lines[], ...,
                                              release?, post?}
    GET    /_sandbox/companies/{c}/documents/{id}
    PATCH  /_sandbox/companies/{c}/documents/{id} {dueDate?, paymentMethodCode?, externalDocumentNumber?,
                                                   lines?: [{lineId, quantity?, unitPrice?, ...}],
                                                   addLines?: [...], deleteLines?: [lineId]}
    POST   /_sandbox/companies/{c}/documents/{id}/{release|reopen|post|delete|cancel|requestApproval}
    POST   /_sandbox/companies/{c}/documents/{id}/partialCancel {lines: [{lineId, quantity}]}
    POST   /_sandbox/companies/{c}/invoices/{id}/payments {amount, documentNumber?}
    POST   /_sandbox/companies/{c}/invoices/{id}/credits {amount}
    GET    /_sandbox/companies/{c}/customerLedgerEntries
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import bcjson
from .errors import BCApiError, bad_request
from .model import Company, SalesDoc, fmt_ms
from .state import CAPTION_KIND, KIND_CAPTION, Fault, LineSpec, SandboxState


def _json(data: Any, status: int = 200) -> Response:
    return Response(bcjson.dumps(data), status_code=status, media_type="application/json")


def _dec(value: Any, name: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise bad_request(f"'{name}' must be a number.")
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation:
            pass
    raise bad_request(f"'{name}' must be a number.")


def _date(value: Any, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise bad_request(f"'{name}' must be a date (YYYY-MM-DD).") from None


def doc_summary(state: SandboxState, company: Company, doc: SalesDoc) -> dict[str, Any]:
    from . import documents
    from .resources import companion_status, remaining_amount, standard_status

    precision = documents.doc_precision(doc, company.precision)
    return {
        "id": doc.id,
        "documentType": KIND_CAPTION[doc.kind],
        "number": doc.number,
        "status": companion_status(doc),
        "standardStatus": standard_status(doc),
        "customerId": doc.customer.id,
        "customerNumber": doc.customer.number,
        "currencyCode": doc.currency or company.lcy,
        "paymentMethodCode": doc.payment_method_code,
        "dueDate": doc.due_date.isoformat() if doc.due_date else None,
        "totalAmountExcludingTax": doc.total_excl,
        "totalAmountIncludingTax": doc.total_incl,
        "remainingAmount": remaining_amount(doc),
        "orderId": doc.order_id,
        "appliesToInvoiceId": doc.applies_to_id,
        "lastModifiedDateTime": fmt_ms(doc.lm),
        "lines": [
            {"id": ln.id, "lineNumber": ln.seq, "type": ln.type, "number": ln.number, "description": ln.description,
             "quantity": ln.quantity, "unitPrice": ln.unit_price,
             "amountIncludingTax": documents.line_amounts(ln, doc.prices_include_tax, precision).incl}
            for ln in doc.lines
        ],
    }


def _line_specs(items: Any) -> list[LineSpec]:
    if not isinstance(items, list):
        raise bad_request("'lines' must be an array.")
    specs = []
    for raw in items:
        if not isinstance(raw, dict):
            raise bad_request("A line must be an object.")
        spec = LineSpec(type=raw.get("type", "Item"), number=raw.get("number", ""))
        if "quantity" in raw:
            spec.quantity = _dec(raw["quantity"], "quantity")
        if raw.get("unitPrice") is not None:
            spec.unit_price = _dec(raw["unitPrice"], "unitPrice")
        if "discountPercent" in raw:
            spec.discount_percent = _dec(raw["discountPercent"], "discountPercent")
        if raw.get("taxPercent") is not None:
            spec.tax_percent = _dec(raw["taxPercent"], "taxPercent")
        if "description" in raw:
            spec.description = raw["description"]
        specs.append(spec)
    return specs


def admin_routes(state: SandboxState) -> list[Route]:
    def handler(fn: Callable[[Request, dict[str, Any]], Any]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            raw = await request.body()
            try:
                body = bcjson.loads(raw) if raw.strip() else {}
                if not isinstance(body, dict):
                    raise bad_request("The body must be a JSON object.")
                result = await anyio.to_thread.run_sync(lambda: fn(request, body))
            except BCApiError as exc:
                return Response(exc.body(), status_code=exc.status, media_type="application/json")
            except ValueError as exc:
                return Response(BCApiError(400, "BadRequest", str(exc)).body(), status_code=400,
                                media_type="application/json")
            if isinstance(result, Response):
                return result
            if result is None:
                return Response(status_code=204)
            return _json(result)

        return endpoint

    def company_of(request: Request) -> Company:
        return state.company(request.path_params["company"])

    def doc_of(request: Request) -> tuple[Company, SalesDoc]:
        company = company_of(request)
        doc = state.find_document(company, request.path_params["doc"])
        if doc is None:
            raise BCApiError(404, "Internal_RecordNotFound", f"The document {request.path_params['doc']} does not exist.")
        return company, doc

    def health(request: Request, body: dict[str, Any]) -> Any:
        return {"status": "ok"}

    def info(request: Request, body: dict[str, Any]) -> Any:
        return {
            "tenantId": state.tenant_id,
            "environment": state.environment,
            "now": state.clock.now().isoformat(),
            "companies": [{"id": c.id, "name": c.name, "lcy": c.lcy} for c in state.companies.values()],
        }

    def stats(request: Request, body: dict[str, Any]) -> Any:
        if request.method == "DELETE":
            state.stats.reset()
            return None
        return state.stats.snapshot()

    def apps(request: Request, body: dict[str, Any]) -> Any:
        cid, secret = state.register_app(body.get("clientId"), body.get("clientSecret"))
        return {"clientId": cid, "clientSecret": secret, "tenantId": state.tenant_id}

    def revoke(request: Request, body: dict[str, Any]) -> Any:
        state.revoke_tokens()
        return None

    def clock(request: Request, body: dict[str, Any]) -> Any:
        if "set" in body:
            state.clock.set(datetime.fromisoformat(str(body["set"]).replace("Z", "+00:00")))
        if "advance" in body:
            state.clock.advance(float(_dec(body["advance"], "advance")))
        if body.get("freeze") is True:
            state.clock.freeze()
        if body.get("freeze") is False:
            state.clock.unfreeze()
        return {"now": state.clock.now().isoformat(), "frozen": state.clock.frozen}

    def faults(request: Request, body: dict[str, Any]) -> Any:
        if request.method == "DELETE":
            state.faults.clear()
            return None
        fault = Fault(
            kind=body.get("kind", "status"), count=int(body.get("count", 1)), status=int(body.get("status", 503)),
            retry_after=int(body["retryAfter"]) if body.get("retryAfter") is not None else None,
            delay=float(_dec(body.get("delay", 0), "delay")), method=body.get("method"), path=body.get("path"),
        )
        state.faults.inject(fault)
        return _json({"pending": state.faults.pending}, 201)

    def throttle(request: Request, body: dict[str, Any]) -> Any:
        cfg = state.throttle
        mapping = {"requestsPerWindow": ("requests_per_window", int), "windowSeconds": ("window_seconds", float),
                   "maxConcurrent": ("max_concurrent", int), "maxQueued": ("max_queued", int),
                   "queueTimeoutSeconds": ("queue_timeout_seconds", float)}
        for key, value in body.items():
            if key not in mapping:
                raise bad_request(f"Unknown throttle setting '{key}'.")
            attr, conv = mapping[key]
            setattr(cfg, attr, conv(value))
        return {k: getattr(cfg, a) for k, (a, _) in mapping.items()}

    def settings(request: Request, body: dict[str, Any]) -> Any:
        mapping = {"latencySeconds": ("latency_seconds", float), "tokenLifetimeSeconds": ("token_lifetime_seconds", int),
                   "webhookDelaySeconds": ("webhook_delay_seconds", float),
                   "webhookCollectionThreshold": ("webhook_collection_threshold", int),
                   "webhookRetrySeconds": ("webhook_retry_seconds", float),
                   "staleEtagStatus": ("stale_etag_status", int)}
        for key, value in body.items():
            if key not in mapping:
                raise bad_request(f"Unknown setting '{key}'.")
            attr, conv = mapping[key]
            setattr(state, attr, conv(value))
        return {k: getattr(state, a) for k, (a, _) in mapping.items()}

    def flush(request: Request, body: dict[str, Any]) -> Any:
        deliveries = state.webhooks.flush(force=True)
        return {"deliveries": [{"url": d.url, "status": d.status, "outcome": d.outcome,
                                "subscriptionIds": d.subscription_ids, "items": len(d.items)} for d in deliveries]}

    def webhooks_info(request: Request, body: dict[str, Any]) -> Any:
        return {"subscriptions": [s.to_json() for s in state.webhooks.subscriptions.values()],
                "pending": state.webhooks.pending_count(),
                "deliveries": [{"url": d.url, "status": d.status, "outcome": d.outcome, "items": len(d.items)}
                               for d in state.webhooks.deliveries]}

    def seed_endpoint(request: Request, body: dict[str, Any]) -> Any:
        from .seed import seed

        allowed = {"seed", "companies", "customers", "items", "invoicesPerYear", "years", "orders", "creditMemos",
                   "linesPerInvoice", "returnOrders", "draftInvoices", "paymentMethodCode"}
        unknown = set(body) - allowed
        if unknown:
            raise bad_request(f"Unknown seed options: {sorted(unknown)}")
        result = seed(
            state, seed=int(body.get("seed", 1)), companies=int(body.get("companies", 1)),
            customers=int(body.get("customers", 20)), items=int(body.get("items", 30)),
            invoices_per_year=int(body.get("invoicesPerYear", 100)), years=int(body.get("years", 1)),
            orders=int(body.get("orders", 5)), credit_memos=int(body.get("creditMemos", 3)),
            lines_per_invoice=int(body.get("linesPerInvoice", 5)), return_orders=int(body.get("returnOrders", 1)),
            draft_invoices=int(body.get("draftInvoices", 2)),
            payment_method_code=body.get("paymentMethodCode", "PAYWEAVE"),
        )
        return result.as_json()

    def add_company(request: Request, body: dict[str, Any]) -> Any:
        company = state.add_company(body.get("name", "CRONUS"), lcy=body.get("lcy", "USD"), id=body.get("id"))
        return _json({"id": company.id, "name": company.name}, 201)

    def add_customer(request: Request, body: dict[str, Any]) -> Any:
        company = company_of(request)
        if not body.get("name"):
            raise bad_request("'name' is required.")
        cust = state.add_customer(company, body["name"], number=body.get("number"), email=body.get("email", ""),
                                  currency=body.get("currencyCode", ""),
                                  payment_method_code=body.get("paymentMethodCode", ""))
        return _json({"id": cust.id, "number": cust.number, "displayName": cust.name}, 201)

    def create_doc(request: Request, body: dict[str, Any]) -> Any:
        company = company_of(request)
        kind = CAPTION_KIND.get(body.get("documentType", ""))
        if kind is None:
            raise bad_request(f"'documentType' must be one of {sorted(CAPTION_KIND)}.")
        cust = state.find_customer(company, id=body.get("customerId"), number=body.get("customerNumber"))
        if cust is None:
            raise bad_request("Unknown customer (give customerId or customerNumber).")
        applies_to = None
        if body.get("appliesToInvoiceId"):
            applies_to = state.find_posted_invoice(company, id=body["appliesToInvoiceId"])
            if applies_to is None:
                raise bad_request("appliesToInvoiceId is not a posted invoice.")
        with state.lock:
            doc = state.create_document(
                company, kind, cust, _line_specs(body.get("lines", [])),
                document_date=_date(body["documentDate"], "documentDate") if body.get("documentDate") else None,
                due_date=_date(body["dueDate"], "dueDate") if body.get("dueDate") else None,
                currency=body.get("currencyCode"), payment_method_code=body.get("paymentMethodCode"),
                prices_include_tax=bool(body.get("pricesIncludeTax", False)),
                invoice_discount=_dec(body.get("invoiceDiscountAmount", 0), "invoiceDiscountAmount"),
                payment_discount_percent=_dec(body.get("paymentDiscountPercent", 0), "paymentDiscountPercent"),
                prepayment_percent=_dec(body.get("prepaymentPercent", 0), "prepaymentPercent"),
                combine_shipments=bool(body.get("combineShipments", False)),
                external_number=body.get("externalDocumentNumber", ""), applies_to=applies_to,
                release=bool(body.get("release", False)),
            )
            result = doc
            if body.get("post"):
                result = state.post_document(company, doc)
            return _json(doc_summary(state, company, result), 201)

    def get_doc(request: Request, body: dict[str, Any]) -> Any:
        company, doc = doc_of(request)
        if request.method == "GET":
            return doc_summary(state, company, doc)
        with state.lock:
            header: dict[str, Any] = {}
            if "dueDate" in body:
                header["due_date"] = _date(body["dueDate"], "dueDate")
            if "paymentMethodCode" in body:
                header["payment_method_code"] = body["paymentMethodCode"]
            if "externalDocumentNumber" in body:
                header["external_number"] = body["externalDocumentNumber"]
            if "invoiceDiscountAmount" in body:
                header["invoice_discount"] = _dec(body["invoiceDiscountAmount"], "invoiceDiscountAmount")
            if "paymentDiscountPercent" in body:
                header["payment_discount_percent"] = _dec(body["paymentDiscountPercent"], "paymentDiscountPercent")
            if "prepaymentPercent" in body:
                header["prepayment_percent"] = _dec(body["prepaymentPercent"], "prepaymentPercent")
            if "combineShipments" in body:
                header["combine_shipments"] = bool(body["combineShipments"])
            if header:
                state.update_document(company, doc, **header)
            by_id = {ln.id: ln for ln in doc.lines}
            for change in body.get("lines", []):
                line = by_id.get(str(change.get("lineId", "")).lower())
                if line is None:
                    raise bad_request(f"Unknown line {change.get('lineId')}.")
                kw: dict[str, Any] = {}
                if "quantity" in change:
                    kw["quantity"] = _dec(change["quantity"], "quantity")
                if "unitPrice" in change:
                    kw["unit_price"] = _dec(change["unitPrice"], "unitPrice")
                if "discountPercent" in change:
                    kw["discount_percent"] = _dec(change["discountPercent"], "discountPercent")
                if "description" in change:
                    kw["description"] = change["description"]
                state.update_line(company, doc, line, **kw)
            for spec in _line_specs(body.get("addLines", [])):
                state.add_line(company, doc, spec)
            for line_id in body.get("deleteLines", []):
                line = by_id.get(str(line_id).lower())
                if line is None:
                    raise bad_request(f"Unknown line {line_id}.")
                state.delete_line(company, doc, line)
            return doc_summary(state, company, doc)

    def doc_action(request: Request, body: dict[str, Any]) -> Any:
        company, doc = doc_of(request)
        action = request.path_params["action"]
        with state.lock:
            if action == "release":
                state.release(company, doc)
            elif action == "reopen":
                state.reopen(company, doc)
            elif action == "requestApproval":
                state.set_pending_approval(company, doc)
            elif action == "post":
                posted = state.post_document(company, doc)
                return doc_summary(state, company, posted)
            elif action == "delete":
                state.delete_document(company, doc)
                return None
            elif action == "cancel":
                credit = state.cancel_invoice(company, doc)
                return doc_summary(state, company, credit)
            elif action == "partialCancel":
                lines = body.get("lines", [])
                quantities = {str(x["lineId"]): _dec(x["quantity"], "quantity") for x in lines}
                state.partial_cancel(company, doc, quantities)
            else:
                raise bad_request(f"Unknown action '{action}'.")
            return doc_summary(state, company, doc)

    def invoice_payment(request: Request, body: dict[str, Any]) -> Any:
        company, doc = doc_of(request)
        entry = state.user_payment(company, doc, _dec(body.get("amount"), "amount"),
                                   document_number=body.get("documentNumber"))
        return _json(entry.as_json(), 201)

    def invoice_credit(request: Request, body: dict[str, Any]) -> Any:
        company, doc = doc_of(request)
        credit = state.user_credit(company, doc, _dec(body.get("amount"), "amount"))
        return _json(doc_summary(state, company, credit), 201)

    def ledger(request: Request, body: dict[str, Any]) -> Any:
        company = company_of(request)
        with state.lock:
            return {"value": [e.as_json() for e in company.cust_ledger]}

    h = handler
    return [
        Route("/_sandbox/health", h(health), methods=["GET"]),
        Route("/_sandbox/info", h(info), methods=["GET"]),
        Route("/_sandbox/stats", h(stats), methods=["GET", "DELETE"]),
        Route("/_sandbox/apps", h(apps), methods=["POST"]),
        Route("/_sandbox/tokens/revoke", h(revoke), methods=["POST"]),
        Route("/_sandbox/clock", h(clock), methods=["POST"]),
        Route("/_sandbox/faults", h(faults), methods=["POST", "DELETE"]),
        Route("/_sandbox/throttle", h(throttle), methods=["PUT"]),
        Route("/_sandbox/settings", h(settings), methods=["PUT"]),
        Route("/_sandbox/webhooks/flush", h(flush), methods=["POST"]),
        Route("/_sandbox/webhooks", h(webhooks_info), methods=["GET"]),
        Route("/_sandbox/seed", h(seed_endpoint), methods=["POST"]),
        Route("/_sandbox/companies", h(add_company), methods=["POST"]),
        Route("/_sandbox/companies/{company}/customers", h(add_customer), methods=["POST"]),
        Route("/_sandbox/companies/{company}/documents", h(create_doc), methods=["POST"]),
        Route("/_sandbox/companies/{company}/documents/{doc}", h(get_doc), methods=["GET", "PATCH"]),
        Route("/_sandbox/companies/{company}/documents/{doc}/{action}", h(doc_action), methods=["POST"]),
        Route("/_sandbox/companies/{company}/invoices/{doc}/payments", h(invoice_payment), methods=["POST"]),
        Route("/_sandbox/companies/{company}/invoices/{doc}/credits", h(invoice_credit), methods=["POST"]),
        Route("/_sandbox/companies/{company}/customerLedgerEntries", h(ledger), methods=["GET"]),
    ]
