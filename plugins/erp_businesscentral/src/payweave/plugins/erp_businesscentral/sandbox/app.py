"""The BC sandbox as a Starlette ASGI app: the API v2.0 and companion API routes, the Entra ID
token endpoint, throttling, fault injection, and the ``/_sandbox`` admin endpoints.

    state = SandboxState(); company = state.add_company("CRONUS")
    app = create_app(state)

URLs (reference §1): ``/v2.0/{tenant?}/{environment}/api/v2.0/companies({id})/{set}...``,
``/v2.0/.../api/v2.0/subscriptions``, ``/v2.0/.../api/payweave/payments/v1.0/...`` and
``POST /{tenant}/oauth2/v2.0/token``.
"""
from __future__ import annotations

import asyncio
import base64
import functools
import math
import re
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from .. import bcjson
from ..conventions import (
    SANDBOX_RETRY_AFTER_ON_CONCURRENCY_429,
    SANDBOX_RETRY_AFTER_ON_WINDOW_429,
    SUPPORTS_COUNT,
    THROTTLED_ERROR_CODE,
)
from . import odata
from .errors import (
    MISSING_ETAG,
    BCApiError,
    bad_request,
    entity_changed,
    invalid_credentials,
    method_not_allowed,
    not_found_route,
    resource_not_found,
)
from .resources import COMPANIES, Ctx, EntitySet, FlatCustomerPaymentsSet, sets_for
from .state import COMPANION_API, STANDARD_API, SandboxState
from .webhooks import handshake

JSON_TYPE = "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8"
BC_SCOPE = "https://api.businesscentral.dynamics.com/.default"
_SEGMENT_RE = re.compile(r"^(?P<name>[A-Za-z_$][A-Za-z0-9_.$]*)(?:\((?P<key>[^()]*)\))?$")
FAULT_CODES = {429: THROTTLED_ERROR_CODE, 500: "Internal_ServerError", 502: "BadGateway", 503: "ServiceUnavailable",
               504: "GatewayTimeout", 408: "RequestTimeout"}


@dataclass
class Segment:
    name: str
    key: str | None


#: rows serialized per part of a streamed collection response
STREAM_ROWS = 500


@dataclass
class Collection:
    """A collection answer serialized lazily: BC writes a list as it reads it (the content type
    says ``odata.streaming=true``), so a large page goes out in parts instead of being built
    whole first. The records were chosen under the state lock; each part is serialized under it."""

    head: dict[str, Any]
    records: list[Any]
    render: Any  # record -> JSON-able row (Decimals as markers)
    tail: dict[str, Any]
    lock: Any

    def payload(self) -> dict[str, Any]:
        with self.lock:
            return {**self.head, "value": [self.render(r) for r in self.records], **self.tail}

    def parts(self) -> Iterator[bytes]:
        head = bcjson.dumps_prepared(self.head)
        yield (head[:-1] + ("," if self.head else "") + '"value":[').encode()
        for i in range(0, len(self.records), STREAM_ROWS):
            with self.lock:
                rows = [self.render(r) for r in self.records[i:i + STREAM_ROWS]]
            yield (("," if i else "") + bcjson.dumps_prepared(rows)[1:-1]).encode()
        tail = bcjson.dumps_prepared(self.tail)
        yield ("]" + ("," + tail[1:] if self.tail else "}")).encode()


@dataclass
class Result:
    status: int
    payload: Any = None  # JSON-able (Decimals already markers) or None
    raw: bytes | None = None
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    collection: Collection | None = None


# ---------------------------------------------------------------------- throttling

class _Slot:
    __slots__ = ("running", "waiters", "window")

    def __init__(self) -> None:
        self.running = 0
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.window: deque[float] = deque()


class Throttler:
    """Per-user limits: a sliding request window and a concurrency cap with a bounded queue."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.slots: dict[str, _Slot] = {}

    async def acquire(self, client: str) -> None:
        cfg = self.state.throttle
        slot = self.slots.setdefault(client, _Slot())
        now = self.state.clock.time()
        window = slot.window
        while window and window[0] <= now - cfg.window_seconds:
            window.popleft()
        if len(window) >= cfg.requests_per_window:
            retry = max(1, math.ceil(window[0] + cfg.window_seconds - now))
            headers = {"Retry-After": str(retry)} if SANDBOX_RETRY_AFTER_ON_WINDOW_429 else {}
            raise BCApiError(429, THROTTLED_ERROR_CODE,
                             f"The rate limit of {cfg.requests_per_window} requests per {cfg.window_seconds:g} seconds "
                             "was exceeded. Retry later.", headers)
        if slot.running < cfg.max_concurrent:
            window.append(now)
            slot.running += 1
            return
        if len(slot.waiters) >= cfg.max_queued:
            headers = {"Retry-After": "1"} if SANDBOX_RETRY_AFTER_ON_CONCURRENCY_429 else {}
            raise BCApiError(429, THROTTLED_ERROR_CODE,
                             f"Too many concurrent requests (limit {cfg.max_concurrent} running, "
                             f"{cfg.max_queued} queued). Retry later.", headers)
        window.append(now)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        slot.waiters.append(fut)
        try:
            done, _ = await asyncio.wait({fut}, timeout=cfg.queue_timeout_seconds)
        except asyncio.CancelledError:  # the caller went away while queued
            if fut.done() and not fut.cancelled():
                self.release(client)
            else:
                slot.waiters.remove(fut)
                fut.cancel()
            raise
        if not done:
            slot.waiters.remove(fut)
            fut.cancel()
            raise BCApiError(503, "ServiceUnavailable", "The request was queued for too long. Retry later.",
                             {"Retry-After": "5"})

    def release(self, client: str) -> None:
        slot = self.slots[client]
        while slot.waiters:
            fut = slot.waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # hand the running slot over
                return
        slot.running -= 1

    def running(self, client: str) -> int:
        slot = self.slots.get(client)
        return slot.running if slot else 0


# ---------------------------------------------------------------------- responses

def _json_response(result: Result, *, stream: bool = False) -> Response:
    if result.collection is not None:
        headers = {"OData-Version": "4.0", "Content-Type": JSON_TYPE, **result.headers}
        if stream:
            return StreamingResponse(result.collection.parts(), status_code=result.status, headers=headers)
        result = Result(result.status, result.collection.payload(), headers=result.headers)
    if result.raw is not None:
        return Response(result.raw, status_code=result.status, media_type=result.content_type, headers=result.headers)
    if result.payload is None:
        return Response(b"", status_code=result.status, headers={"OData-Version": "4.0", **result.headers})
    body = bcjson.dumps_prepared(result.payload).encode()
    return Response(body, status_code=result.status, headers={"OData-Version": "4.0", "Content-Type": JSON_TYPE,
                                                               **result.headers})


def error_response(exc: BCApiError) -> Response:
    return Response(exc.body(str(uuid.uuid4())), status_code=exc.status,
                    headers={"Content-Type": JSON_TYPE, "OData-Version": "4.0", **exc.headers})


class DroppedResponse(Response):
    """Sends the status line and headers of ``inner`` with its Content-Length, then ends the
    connection without the body: the client sees a broken response after BC committed."""

    def __init__(self, inner: Response) -> None:
        self.inner = inner
        self.status_code = inner.status_code
        self.background = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = list(self.inner.raw_headers)
        if not any(k == b"content-length" for k, _ in headers) or self.inner.body == b"":
            headers = [(k, v) for k, v in headers if k != b"content-length"] + [(b"content-length", b"64")]
        await send({"type": "http.response.start", "status": self.inner.status_code, "headers": headers})
        # returning without the body makes uvicorn close the connection mid-response


# ---------------------------------------------------------------------- request parsing

def parse_odata_path(parts: list[str]) -> list[Segment]:
    segs = []
    for part in parts:
        if part == "":
            continue
        m = _SEGMENT_RE.match(part)
        if not m:
            raise resource_not_found(part)
        key = m.group("key")
        if key is not None:
            key = key.strip()
            if key.startswith("'") and key.endswith("'") and len(key) >= 2:
                key = key[1:-1]
        segs.append(Segment(m.group("name"), key))
    return segs


def split_api_path(rest: str) -> tuple[str | None, str, str, list[str]]:
    """``{tenant?}/{env}/api/...`` -> (tenant, environment, api, odata path parts)."""
    parts = rest.split("/")
    try:
        i = parts.index("api")
    except ValueError:
        raise not_found_route(rest) from None
    head = parts[:i]
    if len(head) == 2:
        tenant, env = head
    elif len(head) == 1:
        tenant, env = None, head[0]
    else:
        raise not_found_route(rest)
    tail = parts[i + 1:]
    if tail[:1] == ["v2.0"]:
        return tenant, env, STANDARD_API, tail[1:]
    if tail[:3] == ["payweave", "payments", "v1.0"]:
        return tenant, env, COMPANION_API, tail[3:]
    raise not_found_route(rest)


def _query_options(items: list[tuple[str, str]]) -> dict[str, str]:
    opts: dict[str, str] = {}
    for k, v in items:
        if k.startswith("$"):
            if k not in ("$filter", "$top", "$skip", "$skiptoken", "$expand", "$select", "$orderby", "$count",
                         "$schemaversion", "$format"):
                raise bad_request(f"The query parameter '{k}' is not supported.")
            opts[k] = v
        elif k == "company":
            opts[k] = v
    return opts


def _int_option(opts: dict[str, str], name: str) -> int | None:
    if name not in opts:
        return None
    try:
        value = int(opts[name])
    except ValueError:
        raise bad_request(f"Invalid value '{opts[name]}' for {name}.") from None
    if value < 0:
        raise bad_request(f"{name} must not be negative.")
    return value


def _eq_value(node: Any, field_name: str) -> str | None:
    if isinstance(node, odata.Cmp) and node.field == field_name and node.op == "eq" and node.lit.kind == "guid":
        return node.lit.value
    if isinstance(node, odata.BoolOp) and node.op == "and":
        return _eq_value(node.left, field_name) or _eq_value(node.right, field_name)
    return None


# ---------------------------------------------------------------------- dispatch (sync, under the state lock)

@dataclass
class ApiRequest:
    api: str
    base: str
    url_path: str
    items: list[tuple[str, str]]
    method: str
    segs: list[Segment]
    headers: dict[str, str]
    body: bytes


def _parse_body(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        data = bcjson.loads(body)
    except ValueError:
        raise bad_request("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise bad_request("The request body must be a JSON object.")
    return data


def _check_if_match(state: SandboxState, es: EntitySet, rec: Any, headers: dict[str, str]) -> None:
    value = headers.get("if-match")
    if not value:
        raise MISSING_ETAG
    value = value.strip()
    if value == "*":
        return
    if value != es.etag(rec):
        raise entity_changed(state.stale_etag_status)


def dispatch(state: SandboxState, req: ApiRequest) -> Result:
    with state.lock:
        return _dispatch(state, req)


def _dispatch(state: SandboxState, req: ApiRequest) -> Result:
    opts = _query_options(req.items)
    sets = sets_for(req.api)
    segs = req.segs
    base = req.base
    if not segs:
        raise not_found_route(req.url_path)
    first = segs[0]
    if first.name == "companies":
        if first.key is None:
            if len(segs) > 1:
                raise resource_not_found(segs[1].name)
            return _list(state, req, COMPANIES, Ctx(state, req.api, base, None, None, "companies"), opts)
        company = state.companies.get(first.key.lower())
        if company is None:
            raise BCApiError(404, "Internal_CompanyNotFound", f"Cannot find the company with the id '{first.key}'.")
        rest = segs[1:]
    elif first.name in sets and "company" in opts:
        company = state.companies.get(opts["company"].lower())
        if company is None:
            raise BCApiError(404, "Internal_CompanyNotFound", f"Cannot find the company with the id '{opts['company']}'.")
        rest = segs
    elif first.name in sets:
        raise BCApiError(400, "BadRequest_RequiredParamNotProvided",
                         "A company must be specified: companies({id})/... or ?company={id}.")
    else:
        raise not_found_route(req.url_path)
    ctx = Ctx(state, req.api, base, company, None, f"companies({company.id})")
    if not rest:
        if req.method != "GET":
            raise method_not_allowed(req.method)
        row = COMPANIES.serialize(ctx, company)
        return Result(200, {"@odata.context": f"{base}/$metadata#companies/$entity", **row}, headers={"ETag": row["@odata.etag"]})
    es: EntitySet | None = None
    rec: Any = None
    for i, seg in enumerate(rest):
        last = i == len(rest) - 1
        if seg.name.startswith("Microsoft.NAV."):
            action = seg.name[len("Microsoft.NAV."):]
            if es is None or rec is None or not last:
                raise resource_not_found(seg.name)
            fn = es.actions.get(action)
            if fn is None:
                raise BCApiError(400, "BadRequest_MethodNotImplemented",
                                 f"The action '{seg.name}' is not implemented for '{es.name}'.")
            if req.method != "POST":
                raise method_not_allowed(req.method)
            fn(ctx, rec)
            return Result(204)
        if seg.name == "content" and es is not None and es.media and rec is not None and last:
            if req.method != "GET":
                raise method_not_allowed(req.method)
            content, ctype = es.media_content(ctx, rec)
            return Result(200, raw=content, content_type=ctype)
        if es is None:
            es = sets.get(seg.name)
            if es is None:
                raise not_found_route(req.url_path)
            ctx = Ctx(state, req.api, base, company, None, f"companies({company.id})/{seg.name}")
        else:
            if rec is None or seg.name not in es.navs:
                raise resource_not_found(seg.name)
            nav = es.navs[seg.name]
            ctx = nav.child_ctx(ctx, rec)
            es = nav.target
        rec = None
        if seg.key is not None:
            if not odata.is_guid(seg.key):
                raise BCApiError(400, "BadRequest", f"The key value '{seg.key}' is not a valid GUID.")
            rec = es.find(ctx, seg.key.lower())
            if rec is None:
                raise resource_not_found(seg.name)
    assert es is not None
    if rec is None:  # collection
        if req.method == "GET":
            return _list(state, req, es, ctx, opts)
        if req.method == "POST":
            if "create" not in es.ops:
                raise method_not_allowed("POST")
            created = es.create(ctx, _parse_body(req.body))
            row = es.serialize(ctx, created)
            return Result(201, {"@odata.context": f"{base}/$metadata#{ctx.path}/$entity", **row},
                          headers={"ETag": row["@odata.etag"], "Location": f"{base}/{ctx.path}({created.id})"})
        raise method_not_allowed(req.method)
    if req.method == "GET":
        select, expand = _select_expand(es, ctx, opts)
        row = es.serialize(ctx, rec, select, expand)
        return Result(200, {"@odata.context": f"{base}/$metadata#{ctx.path}/$entity", **row},
                      headers={"ETag": row["@odata.etag"]})
    if req.method == "PATCH":
        if "update" not in es.ops:
            raise method_not_allowed("PATCH")
        _check_if_match(state, es, rec, req.headers)
        updated = es.update(ctx, rec, _parse_body(req.body))
        row = es.serialize(ctx, updated)
        return Result(200, {"@odata.context": f"{base}/$metadata#{ctx.path}/$entity", **row},
                      headers={"ETag": row["@odata.etag"]})
    if req.method == "DELETE":
        if "delete" not in es.ops:
            raise method_not_allowed("DELETE")
        _check_if_match(state, es, rec, req.headers)
        es.delete(ctx, rec)
        return Result(204)
    raise method_not_allowed(req.method)


def _select_expand(es: EntitySet, ctx: Ctx, opts: dict[str, str]) -> tuple[set[str] | None, list[str]]:
    select = None
    if opts.get("$select"):
        select = {s.strip() for s in opts["$select"].split(",") if s.strip()}
        fields = es.fields(ctx)
        for name in select:
            if name not in fields:
                raise bad_request(f"Could not find a property named '{name}' on type 'Microsoft.NAV.{es.type_name}'.")
    expand: list[str] = []
    if opts.get("$expand"):
        for part in odata.split_top_level(opts["$expand"]):
            name = part.split("(", 1)[0].strip()
            if name not in es.navs:
                raise bad_request(f"Could not find a property named '{name}' on type 'Microsoft.NAV.{es.type_name}'.")
            expand.append(name)
    return select, expand


def _list(state: SandboxState, req: ApiRequest, es: EntitySet, ctx: Ctx, opts: dict[str, str]) -> Result:
    if "$count" in opts and not SUPPORTS_COUNT:
        raise bad_request("$count is not supported.")
    page_size = odata.parse_prefer_maxpagesize(req.headers.get("prefer"))
    fields = es.fields(ctx)
    node = odata.parse_filter(opts["$filter"]) if opts.get("$filter") else None
    predicate = odata.compile_filter(node, fields, es.type_name) if node is not None else None
    order = odata.parse_orderby(opts["$orderby"], fields, es.type_name) if opts.get("$orderby") else None
    if isinstance(es, FlatCustomerPaymentsSet):
        source = es.source_for_filter(ctx, _eq_value(node, "journalId") if node is not None else None)
    else:
        source = es.source(ctx)
    select, expand = _select_expand(es, ctx, opts)
    page = odata.run_page(source, predicate, node, page_size, opts.get("$skiptoken"),
                          _int_option(opts, "$top"), _int_option(opts, "$skip"), order, fields)
    tail: dict[str, Any] = {}
    if page.next_token:
        kept = [(k, v) for k, v in req.items if k not in ("$skiptoken", "$top", "$skip")]
        kept.append(("$skiptoken", page.next_token))
        tail["@odata.nextLink"] = f"{req.base}/{req.url_path}?" + urlencode(kept, quote_via=quote, safe="$,()'=:")
    headers = {}
    if req.headers.get("prefer") and "maxpagesize" in req.headers["prefer"]:
        headers["Preference-Applied"] = f"odata.maxpagesize={page_size}"
    render = functools.partial(_render, es, ctx, select, expand)
    return Result(200, headers=headers, collection=Collection(
        {"@odata.context": f"{ctx.base}/$metadata#{ctx.path}"}, page.records, render, tail, state.lock))


def _render(es: EntitySet, ctx: Ctx, select: set[str] | None, expand: list[str], rec: Any) -> dict[str, Any]:
    return es.serialize(ctx, rec, select, expand)


# ---------------------------------------------------------------------- $batch (JSON format)

#: BC online's limit of operations in one $batch (reference §7)
MAX_BATCH_OPERATIONS = 100
_BATCH_METHODS = ("GET", "POST", "PATCH", "DELETE")
_BATCH_MEMBERS = {"id", "method", "url", "headers", "body"}


@dataclass
class BatchOp:
    id: str
    method: str
    url_path: str
    query: str
    headers: dict[str, str]
    body: bytes
    error: BCApiError | None = None


def parse_batch(state: SandboxState, api: str, base: str, headers: dict[str, str], body: bytes) -> list[BatchOp]:
    """Validate a JSON ``$batch`` body; problems with the whole batch raise (400 for the batch),
    problems with one operation are kept on it (that operation's response carries them)."""
    ctype = headers.get("content-type", "application/json").split(";", 1)[0].strip().lower()
    if ctype != "application/json":
        raise BCApiError(400, "BadRequest", f"The sandbox implements the JSON $batch format only, not '{ctype}'.")
    if headers.get("isolation", "").strip().lower() == "snapshot":
        raise BCApiError(400, "BadRequest", "The sandbox does not implement transactional batches (Isolation: snapshot).")
    data = _parse_body(body)
    requests = data.get("requests")
    if not isinstance(requests, list) or not requests:
        raise bad_request("A $batch body must be {\"requests\": [...]} with at least one request.")
    if len(requests) > MAX_BATCH_OPERATIONS:
        raise bad_request(f"The batch has {len(requests)} operations; at most {MAX_BATCH_OPERATIONS} are allowed "
                          "in one $batch request.")
    ops: list[BatchOp] = []
    seen: set[str] = set()
    for i, item in enumerate(requests):
        if not isinstance(item, dict):
            raise bad_request(f"Request {i} of the batch is not a JSON object.")
        unknown = sorted(set(item) - _BATCH_MEMBERS)
        if unknown:
            raise bad_request(f"Request {i} of the batch has members the sandbox does not implement: {', '.join(unknown)}.")
        op_id, method, url = item.get("id"), item.get("method"), item.get("url")
        if not isinstance(op_id, str) or not op_id:
            raise bad_request(f"Request {i} of the batch has no id.")
        if op_id in seen:
            raise bad_request(f"The id '{op_id}' is used by more than one request of the batch.")
        seen.add(op_id)
        if not isinstance(method, str) or not isinstance(url, str) or not url:
            raise bad_request(f"Request '{op_id}' of the batch needs a method and a url.")
        op_headers = item.get("headers") or {}
        if not isinstance(op_headers, dict) or not all(isinstance(v, str) for v in op_headers.values()):
            raise bad_request(f"The headers of request '{op_id}' must be an object of strings.")
        op_body = item.get("body")
        raw = bcjson.dumps(op_body).encode() if op_body is not None else b""
        target, _, query = url.partition("?")
        if target.startswith(("http://", "https://")):
            if not target.startswith(base + "/"):
                op = BatchOp(op_id, method.upper(), "", "", {}, b"")
                op.error = not_found_route(url)
                ops.append(op)
                continue
            target = target[len(base) + 1:]
        op = BatchOp(op_id, method.upper(), target.strip("/"), query,
                     {k.lower(): v for k, v in op_headers.items()}, raw)
        if op.method not in _BATCH_METHODS:
            op.error = method_not_allowed(op.method)
        elif op.url_path.split("/", 1)[0].split("(", 1)[0] in ("$batch", "subscriptions", "$metadata"):
            op.error = bad_request(f"'{op.url_path.split('/', 1)[0]}' cannot be requested inside a $batch.")
        ops.append(op)
    return ops


def _op_response(op_id: str, result: Result | BCApiError) -> dict[str, Any]:
    if isinstance(result, BCApiError):
        out: dict[str, Any] = {"id": op_id, "status": result.status,
                               "headers": {"content-type": JSON_TYPE, **{k.lower(): v for k, v in result.headers.items()}},
                               "body": bcjson.loads(result.body(str(uuid.uuid4())))}
        return out
    if result.collection is not None:
        result = Result(result.status, result.collection.payload(), headers=result.headers)
    headers = {k.lower(): v for k, v in result.headers.items()}
    out = {"id": op_id, "status": result.status, "headers": headers}
    if result.raw is not None:  # media: base64 in the JSON batch format
        headers["content-type"] = result.content_type
        out["body"] = base64.b64encode(result.raw).decode()
    elif result.payload is not None:
        headers.update({"content-type": JSON_TYPE, "odata-version": "4.0"})
        out["body"] = result.payload
    return out


def run_batch(state: SandboxState, api: str, base: str, prefix: str, ops: list[BatchOp], client: str) -> Result:
    """Run the operations in order (each as if it were its own request, BC's non-transactional
    batch); one failing does not stop the others."""
    responses = []
    for op in ops:
        label = "-"
        result: Result | BCApiError
        try:
            if op.error is not None:
                raise op.error
            parts = op.url_path.split("/")
            segs = parse_odata_path(parts)
            names = [sg.name for sg in segs if not sg.name.startswith("Microsoft.NAV.") and sg.name != "content"]
            label = names[-1] if names else "-"
            fault = state.faults.take(op.method, f"/v2.0/{prefix}/api/{api}/{'/'.join(p for p in parts if p)}")
            if fault is not None and fault.kind == "status":
                hdrs = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                raise BCApiError(fault.status, FAULT_CODES.get(fault.status, "Unknown"),
                                 "The service is temporarily unavailable (injected fault).", hdrs)
            result = dispatch(state, ApiRequest(api, base, "/".join(p for p in parts if p),
                                                parse_qsl(op.query, keep_blank_values=True), op.method, segs,
                                                op.headers, op.body))
        except BCApiError as exc:
            result = exc
        state.stats.count_operation(client, op.method, label, result.status)
        responses.append(_op_response(op.id, result))
    return Result(200, {"responses": responses})


# ---------------------------------------------------------------------- the app

def create_app(state: SandboxState | None = None, *, admin: bool = True) -> Starlette:
    """Build the sandbox app over ``state`` (a fresh :class:`SandboxState` if None)."""
    from .admin import admin_routes

    state = state if state is not None else SandboxState()
    throttler = Throttler(state)

    async def token_endpoint(request: Request) -> Response:
        tenant = request.path_params["tenant"]
        raw = (await request.body()).decode("utf-8", "replace")
        form = dict(parse_qsl(raw, keep_blank_values=True))

        def aad_error(status: int, error: str, code: int, text: str) -> Response:
            body = {"error": error, "error_description": f"AADSTS{code}: {text}", "error_codes": [code],
                    "trace_id": str(uuid.uuid4()), "correlation_id": str(uuid.uuid4())}
            return Response(bcjson.dumps(body), status_code=status, media_type="application/json")

        if not state.tenant_matches(tenant):
            return aad_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            return aad_error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        client_id = form.get("client_id", "")
        if client_id not in state.apps:
            return aad_error(400, "unauthorized_client", 700016,
                             f"Application with identifier '{client_id}' was not found in the directory.")
        if form.get("client_secret") != state.apps[client_id]:
            return aad_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
        if form.get("scope") != BC_SCOPE:
            return aad_error(400, "invalid_scope", 1002012, f"The provided value for scope {form.get('scope')} is not valid.")
        state.stats.token_requests[client_id] += 1
        token, lifetime = state.issue_token(client_id)
        body = {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token}
        return Response(bcjson.dumps(body), media_type="application/json",
                        headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    async def api_endpoint(request: Request) -> Response:
        rest = request.path_params["rest"]
        method = request.method
        client = "-"
        label = "-"
        status = 500
        try:
            tenant, env, api, parts = split_api_path(rest)
            if env.lower() != state.environment.lower():
                raise not_found_route(request.url.path)
            segs = parse_odata_path(parts)
            names = [s.name for s in segs if not s.name.startswith("Microsoft.NAV.") and s.name != "content"]
            label = names[-1] if names else "-"
            auth = request.headers.get("authorization", "")
            if not auth.lower().startswith("bearer "):
                raise invalid_credentials()
            token = state.check_token(auth[7:].strip())
            if token is None:
                raise invalid_credentials("The access token is invalid or has expired.")
            if tenant is not None and not state.tenant_matches(tenant):
                raise invalid_credentials("The token was not issued for this tenant.")
            client = token.client_id
            fault = state.faults.take(method, request.url.path)
            if fault is not None and fault.kind == "status":
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                raise BCApiError(fault.status, FAULT_CODES.get(fault.status, "Unknown"),
                                 "The service is temporarily unavailable (injected fault).", headers)
            await throttler.acquire(client)
            try:
                if state.latency_seconds:
                    await asyncio.sleep(state.latency_seconds)
                body = await request.body()
                prefix = rest.split("/api/", 1)[0]
                base = f"{request.url.scheme}://{request.url.netloc}/v2.0/{prefix}/api/{api}"
                url_path = "/".join(p for p in parts if p != "")
                req = ApiRequest(api, base, url_path, parse_qsl(request.url.query, keep_blank_values=True), method, segs,
                                 {k.lower(): v for k, v in request.headers.items()}, body)
                if segs and segs[0].name == "subscriptions":
                    result = await _subscriptions(state, req, client)
                elif segs and segs[0].name == "$batch":
                    if method != "POST" or len(segs) != 1:
                        raise method_not_allowed(method) if method != "POST" else resource_not_found(segs[1].name)
                    ops = parse_batch(state, api, base, req.headers, body)
                    result = await anyio.to_thread.run_sync(
                        functools.partial(run_batch, state, api, base, prefix, ops, client))
                else:
                    result = await anyio.to_thread.run_sync(functools.partial(dispatch, state, req))
            finally:
                throttler.release(client)
            dropping = fault is not None and fault.kind == "drop"
            response = _json_response(result, stream=not dropping)
            status = response.status_code
            if dropping:
                return DroppedResponse(response)
            if fault is not None and fault.kind == "delay":
                await asyncio.sleep(fault.delay)
            return response
        except BCApiError as exc:
            status = exc.status
            return error_response(exc)
        finally:
            state.stats.count(client, method, label, status)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.webhooks.start()
        try:
            yield
        finally:
            state.webhooks.stop()

    routes = [
        Route("/{tenant}/oauth2/v2.0/token", token_endpoint, methods=["POST"]),
        Route("/v2.0/{rest:path}", api_endpoint, methods=["GET", "POST", "PATCH", "DELETE", "PUT"]),
    ]
    if admin:
        routes += admin_routes(state)
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.sandbox = state
    app.state.throttler = throttler
    return app


async def _subscriptions(state: SandboxState, req: ApiRequest, client: str) -> Result:
    wh = state.webhooks
    if len(req.segs) != 1:
        raise resource_not_found(req.segs[-1].name)
    key = req.segs[0].key
    base = req.base
    if key is None:
        if req.method == "GET":
            rows = [s.to_json() for s in wh.list(req.api)]
            return Result(200, {"@odata.context": f"{base}/$metadata#subscriptions", "value": rows})
        if req.method == "POST":
            body = _parse_body(req.body)
            sub = wh.new_subscription(req.api, body, client)
            ok, message = await handshake(sub.notification_url)
            if not ok:
                raise BCApiError(400, "BadRequest", f"The subscription could not be validated. {message}")
            wh.add(sub)
            return Result(201, {"@odata.context": f"{base}/$metadata#subscriptions/$entity", **sub.to_json()},
                          headers={"ETag": sub.etag})
        raise method_not_allowed(req.method)
    sub = wh.get(key)
    if req.method == "GET":
        return Result(200, {"@odata.context": f"{base}/$metadata#subscriptions/$entity", **sub.to_json()},
                      headers={"ETag": sub.etag})
    if req.method == "PATCH":
        wh.check_etag(sub, req.headers.get("if-match"))
        body = _parse_body(req.body)
        url = body.get("notificationUrl", sub.notification_url)
        ok, message = await handshake(url)
        if not ok:
            raise BCApiError(400, "BadRequest", f"The subscription could not be validated. {message}")
        wh.renew(sub, body)
        return Result(200, {"@odata.context": f"{base}/$metadata#subscriptions/$entity", **sub.to_json()},
                      headers={"ETag": sub.etag})
    if req.method == "DELETE":
        wh.check_etag(sub, req.headers.get("if-match"))
        wh.delete(sub)
        return Result(204)
    raise method_not_allowed(req.method)
