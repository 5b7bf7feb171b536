"""The Business Central API v2.0 client.

:class:`BCClient` is the HTTP layer: OAuth2 client credentials (:mod:`.auth`), the client-side
limiter (:mod:`.limiter`), the project's one retry policy (:mod:`payweave.hooks.retry`: 429 and
502/503/504 honour Retry-After, else exponential backoff with jitter, bounded), BC error bodies
mapped to typed errors (:mod:`.errors`), OData paging that follows ``@odata.nextLink`` as an
opaque URL and yields one page at a time, and request counting per entity set.

:class:`BCCompany` is one company: generic entity access (list/get/create/update/delete with
ETags, bound actions, media) and delta reads on ``lastModifiedDateTime``. Typed reads that
return the contract's models live in :mod:`.sync`; write-back in :mod:`.writeback`; webhook
subscriptions in :mod:`.subscriptions`.

Writes are never blindly repeated: a POST/PATCH/DELETE whose connection fails after sending
raises :class:`~.errors.BCAmbiguousWrite`, and only 429/503 (BC did not run the request) are
retried for them. The write-back helpers re-read BC to settle ambiguous outcomes.
"""
from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import structlog
from payweave.hooks.errors import TemporarilyUnavailable
from payweave.hooks.retry import RETRYABLE_STATUSES, RetryPolicy, retry_after_seconds, send_with_retries

from . import bcjson
from .auth import TokenProvider
from .errors import BCAmbiguousWrite, BCNotFound, BCRequestError, BCUnavailable, error_from_response
from .jsonstream import CollectionParser, StreamFormatError
from .limiter import RateLimiter
from .settings import BusinessCentralSettings
from .version import __version__

log = structlog.get_logger("payweave.plugins.erp_businesscentral")

BLANK_GUID = "00000000-0000-0000-0000-000000000000"
_KEY_RE = re.compile(r"\([^)]*\)")
_QUERY_SAFE = "$,()'=:"
#: BC online's limit of operations in one $batch (reference §7)
MAX_BATCH_OPERATIONS = 100
#: how much of a streamed body is parsed at a time
STREAM_CHUNK_BYTES = 256 * 1024


def odata_datetime(value: datetime, *, round_up: bool = False) -> str:
    """An unquoted OData datetime literal in UTC with milliseconds, e.g.
    ``2019-08-18T20:05:51.603Z``. Sub-millisecond parts are truncated (or rounded up)."""
    if value.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")
    value = value.astimezone(UTC)
    micro = value.microsecond
    value = value.replace(microsecond=(micro // 1000) * 1000)
    if round_up and micro % 1000:
        value += timedelta(milliseconds=1)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def odata_string(value: str) -> str:
    """A quoted OData string literal (single quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def parse_bc_datetime(value: str) -> datetime:
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def entity_label(url: str) -> str:
    """``.../companies(..)/salesInvoices(..)/salesInvoiceLines?$x`` -> ``salesInvoiceLines``."""
    path = url.split("?", 1)[0]
    for marker in ("/api/v2.0/", "/api/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    names = [_KEY_RE.sub("", p) for p in path.split("/") if p]
    names = [n for n in names if n and not n.startswith("Microsoft.NAV.") and n != "content"]
    if "payments" in names and "v1.0" in names:  # the companion root: payweave/payments/v1.0
        names = names[names.index("v1.0") + 1:]
    return names[-1] if names else "-"


class RequestStats:
    """Counts every HTTP attempt per (method, entity set); retries and throttling separately."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, str]] = Counter()
        self.statuses: Counter[int] = Counter()
        self.retries = 0
        self.transport_errors = 0

    def record(self, method: str, entity: str, status: int | None) -> None:
        with self._lock:
            self.requests[(method, entity)] += 1
            if status is None:
                self.transport_errors += 1
            else:
                self.statuses[status] += 1

    def retried(self) -> None:
        with self._lock:
            self.retries += 1

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.requests.values())

    def by_entity(self) -> dict[str, int]:
        with self._lock:
            out: Counter[str] = Counter()
            for (_, entity), n in self.requests.items():
                out[entity] += n
            return dict(out)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": sum(self.requests.values()),
                "by_entity": {f"{m} {e}": n for (m, e), n in sorted(self.requests.items())},
                "statuses": dict(self.statuses),
                "retries": self.retries,
                "transport_errors": self.transport_errors,
            }


@dataclass(frozen=True)
class ODataPage:
    values: list[dict[str, Any]]
    next_link: str | None
    url: str


@dataclass(frozen=True)
class PageEnd:
    """Marks the end of one page in :meth:`BCClient.stream_rows`: ``url`` was read (re-reading it
    resumes at this page), ``next_link`` is the next page (None after the last)."""

    url: str
    next_link: str | None


@dataclass(frozen=True)
class BatchOperation:
    """One request inside a ``$batch``: ``url`` absolute (under the batch's API root) or
    relative to it, e.g. ``companies({id})/customers?$filter=...``."""

    method: str
    url: str
    headers: dict[str, str] | None = None
    body: Any = None

    def relative_url(self, root: str) -> str:
        if self.url.startswith(("http://", "https://")):
            if not self.url.startswith(root + "/"):
                raise BCRequestError(f"{entity_label(self.url)} is not under {root}; it cannot go in this $batch.")
            return self.url[len(root) + 1:]
        return self.url.lstrip("/")

    def as_json(self, op_id: str, root: str) -> dict[str, Any]:
        out: dict[str, Any] = {"id": op_id, "method": self.method, "url": self.relative_url(root)}
        if self.headers:
            out["headers"] = dict(self.headers)
        if self.body is not None:
            out["body"] = self.body
        return out


@dataclass(frozen=True)
class BatchResult:
    """BC's answer to one :class:`BatchOperation`: status, headers (lower-case names), body."""

    operation: BatchOperation
    status: int
    headers: dict[str, str]
    body: Any
    root: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def retry_after(self) -> float | None:
        value = self.headers.get("retry-after")
        if value is None:
            return None
        return retry_after_seconds(httpx.Response(self.status, headers={"Retry-After": value}))

    def raise_for_status(self) -> None:
        """Raise the typed error :meth:`BCClient.request` would raise for this answer."""
        if self.ok:
            return
        url = self.operation.url if self.operation.url.startswith("http") else f"{self.root}/{self.operation.url}"
        response = httpx.Response(self.status, headers=self.headers, content=bcjson.dumps(self.body or {}).encode(),
                                  request=httpx.Request(self.operation.method, url))
        raise error_from_response(response, retry_after=self.retry_after)


def _retry_operation(op: BatchOperation, result: BatchResult | None) -> bool:
    if result is None:
        return False
    if op.method == "GET":
        return result.status in RETRYABLE_STATUSES
    return result.status in (429, 503)  # a write BC did not run (see _retry_unapplied_only)


class _AmbiguousTransport(Exception):
    """A write's connection failed after sending (not an httpx.TransportError, so the shared
    retry loop does not repeat it)."""

    def __init__(self, exc: httpx.TransportError) -> None:
        super().__init__(str(exc))
        self.exc = exc


def _retry_unapplied_only(response: httpx.Response) -> bool:
    """For writes: BC did not run a request it answered 429 or 503 (throttled / queued too
    long), so repeating it is safe; 500/502/504 may have been applied and are not repeated."""
    return response.status_code in (429, 503)


class BCClient:
    """HTTP access to one BC environment with one set of client credentials."""

    def __init__(self, settings: BusinessCentralSettings, *, http: httpx.Client | None = None,
                 policy: RetryPolicy | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        timeout = httpx.Timeout(connect=settings.connect_timeout, read=settings.read_timeout,
                                write=settings.write_timeout, pool=settings.pool_timeout)
        self._owns_http = http is None
        self._http = http or httpx.Client(
            timeout=timeout,
            limits=httpx.Limits(max_connections=settings.max_concurrent_requests + 2,
                                max_keepalive_connections=settings.max_concurrent_requests),
            headers={"User-Agent": f"payweave-erp-businesscentral/{__version__}"},
        )
        self.policy = policy or RetryPolicy(max_attempts=settings.max_attempts, max_retry_after=settings.max_retry_after)
        self._sleep = sleep
        self.tokens = TokenProvider(
            token_url=settings.token_url.replace("{tenant}", settings.tenant_id), client_id=settings.client_id,
            client_secret=settings.client_secret, scope=settings.scope, http=self._http, policy=self.policy,
            refresh_margin=settings.token_refresh_margin_seconds, clock=clock, sleep=sleep,
        )
        self.limiter = RateLimiter(max_concurrent=settings.max_concurrent_requests,
                                   max_requests=settings.max_requests_per_window,
                                   window_seconds=settings.window_seconds, clock=clock, sleep=sleep)
        self.stats = RequestStats()

    def __repr__(self) -> str:
        return f"BCClient(tenant={self.settings.tenant_id!r}, environment={self.settings.environment!r})"

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> BCClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ URLs
    def api_root(self, api: str = "v2.0") -> str:
        s = self.settings
        parts = [s.api_base_url, "v2.0"]
        if s.include_tenant_in_url:
            parts.append(s.tenant_id)
        parts += [s.environment, "api", api]
        return "/".join(parts)

    def companion_root(self) -> str:
        return self.api_root(self.settings.companion_api_path)

    def company(self, company_id: str | None = None) -> BCCompany:
        cid = company_id or self.settings.company_id
        if not cid:
            raise BCRequestError("No BC company is configured (settings.company_id).")
        return BCCompany(self, cid)

    def full_url(self, url: str, params: dict[str, Any] | None = None) -> str:
        """``url`` under the API root (unless absolute) with ``params`` as its query."""
        return self._url(url, params)

    def _url(self, url: str, params: dict[str, Any] | None) -> str:
        if not url.startswith(("http://", "https://")):
            url = f"{self.api_root()}/{url.lstrip('/')}"
        if params:
            query = urlencode({k: v for k, v in params.items() if v is not None}, quote_via=quote, safe=_QUERY_SAFE)
            if query:
                url = f"{url}{'&' if '?' in url else '?'}{query}"
        return url

    # ------------------------------------------------------------------ requests
    def request(self, method: str, url: str, *, params: dict[str, Any] | None = None, body: Any = None,
                headers: dict[str, str] | None = None, idempotent: bool | None = None) -> httpx.Response:
        """Send one logical request (with bounded retries) and return a 2xx response.

        Raises a :class:`~.errors.BCError` subclass for any other outcome.
        """
        return self._send(method, url, params=params, body=body, headers=headers, idempotent=idempotent)

    def _send(self, method: str, url: str, *, params: dict[str, Any] | None = None, body: Any = None,
              headers: dict[str, str] | None = None, idempotent: bool | None = None,
              stream: bool = False, label: str | None = None) -> httpx.Response:
        """:meth:`request`; with ``stream`` the 2xx response's body is not read yet and the
        response holds its limiter slot: pass it to :meth:`_close_stream` when done."""
        full = self._url(url, params)
        method = method.upper()
        if idempotent is None:
            idempotent = method == "GET"
        content = bcjson.dumps(body).encode() if body is not None else None
        entity = label or entity_label(full)
        extra = dict(headers or {})

        def send() -> httpx.Response:
            response: httpx.Response | None = None
            for attempt in (1, 2):  # a 401 gets one retry with a fresh token
                token = self.tokens.token()
                hdrs = {"Authorization": f"Bearer {token.get_secret_value()}", "Accept": "application/json",
                        "Accept-Language": "en-US", **extra}
                if content is not None:
                    hdrs["Content-Type"] = "application/json"
                self.limiter.acquire()
                try:
                    request = self._http.build_request(method, full, content=content, headers=hdrs)
                    response = self._http.send(request, stream=stream)
                except httpx.TransportError as exc:
                    self.limiter.release()
                    self.stats.record(method, entity, None)
                    if not idempotent:
                        raise _AmbiguousTransport(exc) from exc
                    raise
                except BaseException:
                    self.limiter.release()
                    raise
                if not stream or not 200 <= response.status_code < 300:
                    # only a streamed 2xx body is read later (keeping its slot); read the rest now
                    try:
                        if stream:
                            response.read()
                            response.close()
                    finally:
                        self.limiter.release()
                self.stats.record(method, entity, response.status_code)
                if response.status_code == 401 and attempt == 1:
                    response.close()
                    self.tokens.invalidate(token)
                    continue
                return response
            assert response is not None
            return response

        def on_retry(attempt: int, wait: float, why: str) -> None:
            self.stats.retried()
            log.info("bc.retry", method=method, entity=entity, attempt=attempt, wait=round(wait, 3), reason=why)

        try:
            response = send_with_retries(send, policy=self.policy, sleep=self._sleep,
                                         should_retry=None if idempotent else _retry_unapplied_only,
                                         on_retry=on_retry, what="Business Central")
        except _AmbiguousTransport as exc:
            raise BCAmbiguousWrite(
                f"The outcome of {method} {entity} is unknown: the connection failed after sending "
                f"({type(exc.exc).__name__}).") from None
        except TemporarilyUnavailable as exc:
            if isinstance(exc, BCUnavailable):
                raise
            raise BCUnavailable(f"Business Central is unavailable for {method} {entity}: {exc.message}",
                                retry_after=exc.retry_after) from None
        if response.status_code >= 400:
            raise error_from_response(response, retry_after=retry_after_seconds(response))
        return response

    def _close_stream(self, response: httpx.Response) -> None:
        try:
            response.close()
        finally:
            self.limiter.release()

    def get_json(self, url: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Any:
        response = self.request("GET", url, params=params, headers=headers)
        return bcjson.loads(response.content)

    def iter_pages(self, url: str, params: dict[str, Any] | None = None, *,
                   page_size: int | None = None) -> Iterator[ODataPage]:
        """GET a collection and follow ``@odata.nextLink`` verbatim, one page at a time."""
        values: list[dict[str, Any]] = []
        for item in self.stream_rows(url, params, page_size=page_size):
            if isinstance(item, PageEnd):
                yield ODataPage(values, item.next_link, item.url)
                values = []
            else:
                values.append(item)

    def stream_rows(self, url: str, params: dict[str, Any] | None = None, *,
                    page_size: int | None = None) -> Iterator[dict[str, Any] | PageEnd]:
        """GET a collection and follow ``@odata.nextLink`` like :meth:`iter_pages`, but parse each
        page as it arrives (:mod:`.jsonstream`): yields the rows one by one, and after the rows
        of each page a :class:`PageEnd` with the page's URL and its nextLink. No page is ever
        held whole; the response stays open while the caller works on its rows."""
        size = page_size or self.settings.page_size
        headers = {"Prefer": f"odata.maxpagesize={min(size, 20000)}"}
        next_url: str | None = self._url(url, params)
        seen: set[str] = set()
        while next_url:
            if next_url in seen:
                raise BCRequestError(f"Business Central returned the same nextLink twice ({entity_label(next_url)}).")
            seen.add(next_url)
            response = self._send("GET", next_url, headers=headers, stream=True)
            parser = CollectionParser()
            try:
                try:
                    for chunk in response.iter_bytes(STREAM_CHUNK_BYTES):
                        yield from parser.feed_bytes(chunk)
                    rows = parser.close()
                except httpx.TransportError as exc:
                    raise BCUnavailable(f"The connection broke while reading {entity_label(next_url)} from Business "
                                        f"Central ({type(exc).__name__}).") from None
                except StreamFormatError as exc:
                    raise BCRequestError(f"Expected a collection from {entity_label(next_url)}: {exc}.") from None
                yield from rows
            finally:
                self._close_stream(response)
            link = parser.members.get("@odata.nextLink")
            link = link if isinstance(link, str) and link else None
            yield PageEnd(next_url, link)
            next_url = link

    def batch(self, operations: list[BatchOperation], *, api: str = "v2.0") -> list[BatchResult]:
        """Send ``operations`` in JSON ``$batch`` requests of at most 100 (BC's limit) to the
        API root ``api`` and return one result per operation, in order.

        Operations BC answered with a retryable status (429, 5xx; for writes only 429/503, as
        :meth:`request` does) are sent again in the next ``$batch``, with the delays of the
        project's retry policy (:mod:`payweave.hooks.retry`); what is still failing after the
        last attempt is returned as it is (see :meth:`BatchResult.raise_for_status`).
        """
        root = self.api_root(api)
        results: list[BatchResult | None] = [None] * len(operations)
        pending = list(range(len(operations)))
        for attempt in range(1, self.policy.max_attempts + 1):
            for start in range(0, len(pending), MAX_BATCH_OPERATIONS):
                chunk = pending[start:start + MAX_BATCH_OPERATIONS]
                self._batch_once(root, [(i, operations[i]) for i in chunk], results)
            retry = [i for i in pending if _retry_operation(operations[i], results[i])]
            if not retry or attempt == self.policy.max_attempts:
                break
            afters = [a for i in retry if (a := results[i].retry_after) is not None]  # type: ignore[union-attr]
            after = max(afters) if afters else None
            if after is not None and after > self.policy.max_retry_after:
                break
            wait = self.policy.delay(attempt, after)
            self.stats.retried()
            log.info("bc.retry", method="POST", entity="$batch", attempt=attempt, wait=round(wait, 3),
                     reason=f"{len(retry)} operations answered {sorted({results[i].status for i in retry})}")  # type: ignore[union-attr]
            self._sleep(wait)
            pending = retry
        return [r for r in results if r is not None]

    def _batch_once(self, root: str, ops: list[tuple[int, BatchOperation]], results: list[BatchResult | None]) -> None:
        body = {"requests": [op.as_json(str(i), root) for i, op in ops]}
        idempotent = all(op.method == "GET" for _, op in ops)
        response = self._send("POST", f"{root}/$batch", body=body, idempotent=idempotent, label="$batch")
        try:
            answer = bcjson.loads(response.content)
        except ValueError:
            raise BCRequestError("Business Central answered a $batch with something that is not JSON.") from None
        by_id: dict[str, dict[str, Any]] = {}
        for item in (answer.get("responses") if isinstance(answer, dict) else None) or []:
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                by_id[item["id"]] = item
        for i, op in ops:
            item = by_id.get(str(i))
            if item is None or not isinstance(item.get("status"), int):
                raise BCRequestError(f"Business Central's $batch answer has no response for {op.method} "
                                     f"{entity_label(op.url)}.")
            headers = item.get("headers") if isinstance(item.get("headers"), dict) else {}
            results[i] = BatchResult(op, item["status"], {str(k).lower(): str(v) for k, v in headers.items()},
                                     item.get("body"), root)

    def iter_entities(self, url: str, params: dict[str, Any] | None = None, *,
                      page_size: int | None = None) -> Iterator[dict[str, Any]]:
        for page in self.iter_pages(url, params, page_size=page_size):
            yield from page.values

    def list_companies(self) -> list[dict[str, Any]]:
        return list(self.iter_entities("companies"))


def delta_filter(since: datetime | None, until: datetime | None, extra: str | None = None) -> str | None:
    """``lastModifiedDateTime ge <since> and lastModifiedDateTime lt <until>`` (unquoted).

    ``since`` is inclusive on purpose: BC timestamps collide (several records per millisecond),
    so an exclusive bound could skip a record changed in the same millisecond after the last
    read. Callers upsert, so re-reading the boundary record is harmless.
    """
    parts = []
    if since is not None:
        parts.append(f"lastModifiedDateTime ge {odata_datetime(since)}")
    if until is not None:
        parts.append(f"lastModifiedDateTime lt {odata_datetime(until, round_up=True)}")
    if extra:
        parts.append(f"({extra})" if parts else extra)
    return " and ".join(parts) if parts else None


class BCCompany:
    """One company of a :class:`BCClient`: entity paths are relative to
    ``.../api/v2.0/companies({id})`` (or the companion API's root with ``companion=True``)."""

    def __init__(self, client: BCClient, company_id: str) -> None:
        self.client = client
        self.id = company_id.lower()

    def __repr__(self) -> str:
        return f"BCCompany({self.id})"

    def root(self, companion: bool = False) -> str:
        base = self.client.companion_root() if companion else self.client.api_root()
        return f"{base}/companies({self.id})"

    def url(self, path: str, companion: bool = False) -> str:
        return f"{self.root(companion)}/{path.lstrip('/')}"

    # ------------------------------------------------------------------ reads
    def pages(self, entity_set: str, *, filter: str | None = None, expand: str | None = None,
              select: str | None = None, top: int | None = None, page_size: int | None = None,
              companion: bool = False) -> Iterator[ODataPage]:
        params = {"$filter": filter, "$expand": expand, "$select": select, "$top": top}
        return self.client.iter_pages(self.url(entity_set, companion), params, page_size=page_size)

    def list_url(self, entity_set: str, *, filter: str | None = None, expand: str | None = None,
                 orderby: str | None = None, companion: bool = False) -> str:
        """The absolute URL of a collection query (what :meth:`BCClient.stream_rows` and
        ``$batch`` operations take)."""
        return self.client.full_url(self.url(entity_set, companion),
                                    {"$filter": filter, "$expand": expand, "$orderby": orderby})

    def entities(self, entity_set: str, **kw: Any) -> Iterator[dict[str, Any]]:
        for page in self.pages(entity_set, **kw):
            yield from page.values

    def changed(self, entity_set: str, since: datetime | None = None, until: datetime | None = None, *,
                expand: str | None = None, extra_filter: str | None = None, page_size: int | None = None,
                companion: bool = False) -> Iterator[ODataPage]:
        """Pages of records with ``since <= lastModifiedDateTime < until``."""
        return self.pages(entity_set, filter=delta_filter(since, until, extra_filter), expand=expand,
                          page_size=page_size, companion=companion)

    def get(self, path: str, *, expand: str | None = None, companion: bool = False) -> dict[str, Any] | None:
        """One entity (``salesInvoices(<id>)``), or None when BC answers 404."""
        try:
            return self.client.get_json(self.url(path, companion), {"$expand": expand})
        except BCNotFound:
            return None

    def first(self, entity_set: str, filter: str, *, companion: bool = False) -> dict[str, Any] | None:
        for page in self.pages(entity_set, filter=filter, top=1, companion=companion):
            return page.values[0] if page.values else None
        return None

    def media(self, path: str) -> bytes:
        return self.client.request("GET", self.url(path), headers={"Accept": "*/*"}).content

    # ------------------------------------------------------------------ writes
    def create(self, entity_set: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.client.request("POST", self.url(entity_set), body=body)
        return bcjson.loads(response.content)

    def update(self, path: str, etag: str, changes: dict[str, Any]) -> dict[str, Any]:
        response = self.client.request("PATCH", self.url(path), body=changes, headers={"If-Match": etag})
        return bcjson.loads(response.content)

    def delete(self, path: str, etag: str) -> None:
        self.client.request("DELETE", self.url(path), headers={"If-Match": etag})

    def action(self, path: str, action: str) -> None:
        """``POST {path}/Microsoft.NAV.{action}`` (BC answers 204)."""
        self.client.request("POST", self.url(f"{path}/Microsoft.NAV.{action}"))


__all__ = ["BCClient", "BCCompany", "BatchOperation", "BatchResult", "ODataPage", "PageEnd", "RequestStats", "delta_filter", "odata_datetime", "odata_string",
           "parse_bc_datetime", "BLANK_GUID"]
