"""The partner dashboard: server-rendered pages under ``/ui`` (Jinja2, a little plain JS).

Pages (all scoped to the logged-in company; another company's ids answer 404):

* ``/ui/login``: log in with an API key (a session cookie follows; see :mod:`.session`).
* ``/ui/integrations``: the ERP module: Connect (choose the ERP company), status Pending with
  the sync's progress, Connected, Error with the reason; Sync now.
* ``/ui/accounts``: Set Up Accounts: payments account, deposits bank account, fee account,
  chosen from the ERP's accounts; saving validates against the ERP.
* ``/ui/payment-methods``: payment methods with their PSP and options; the form is validated
  while it is edited by ``POST /ui/payment-methods/validate`` (the engine's own setup
  validation) and again on save.
* ``/ui/transactions``: filterable list (status, document type, dates, number) and each
  transaction's amounts, operations and history.
* ``/ui/jobs``: jobs by state; failed ones with their error, Retry and Cancel.

Connect and Sync now queue an ``erp_sync`` job (the job worker of ``payweave serve`` or a
``payweave worker`` runs it); the status card refreshes itself while a sync is pending.
"""
from __future__ import annotations

import functools
import json
import mimetypes
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from payweave.core.engine.setup import OPTION_FIELDS, CaptureTiming, RefundTiming
from payweave.core.errors import PaymentMethodNotFound
from payweave.core.jobs.queue import JobStatus
from payweave.core.service.context import ServiceContext, get_context
from payweave.core.service.security import api_keys
from payweave.core.sync import AccountSetupInvalid, ConnectionNotFound, ErpSyncService
from payweave.core.sync.jobs import ACTION_SYNC, enqueue_erp_job
from payweave.core.version import __version__
from payweave.hooks.errors import PayweaveError

from . import forms, views
from .session import (
    CSRF_FIELD,
    REASONS,
    SESSION_COOKIE,
    CsrfError,
    DashboardAuthError,
    DashboardUser,
    authenticate,
    check_csrf,
    check_login_token,
    clear_cookie,
    issue_login_token,
    set_login_cookie,
    sign,
    start_session,
    unsign,
)

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)

FLASH_COOKIE = "pw_flash"
#: Content-Security-Policy of every page: nothing but this site's own files.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
NAV = (
    ("integrations", "Integrations", "/ui/integrations"),
    ("accounts", "Set Up Accounts", "/ui/accounts"),
    ("payment_methods", "Payment methods", "/ui/payment-methods"),
    ("transactions", "Transactions", "/ui/transactions"),
    ("jobs", "Jobs", "/ui/jobs"),
)
ROLE_FIELDS = {"payments account": "payments_account", "deposits bank account": "bank_account",
               "fee account": "fee_account"}


# ------------------------------------------------------------------------------ template helpers
def _money(amount: Any, currency: str | None = None) -> str:
    if amount is None or amount == "":
        return ""
    value = Decimal(str(amount))
    exponent = -value.as_tuple().exponent if isinstance(value.as_tuple().exponent, int) else 2
    text = f"{value:,.{max(exponent, 0)}f}"
    return f"{text} {currency}" if currency else text


def _when(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _label(value: Any) -> str:
    text = str(getattr(value, "value", value) or "")
    return text.replace("_", " ")


templates.env.filters["money"] = _money
templates.env.filters["when"] = _when
templates.env.filters["label"] = _label
templates.env.globals["version"] = __version__
templates.env.globals["nav"] = NAV


def _security_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


# ------------------------------------------------------------------------------ page plumbing
@dataclass
class Page:
    """One dashboard request: its context, user, submitted form and the sync service."""

    request: Request
    context: ServiceContext
    user: DashboardUser
    form: FormData | None

    @property
    def company_id(self) -> str:
        return self.user.company_id

    @property
    def engine(self) -> Any:
        return self.context.engine

    @functools.cached_property
    def sync(self) -> ErpSyncService:
        return sync_service(self.request, self.context)

    def field(self, name: str) -> str:
        value = self.form.get(name) if self.form is not None else None
        return value.strip() if isinstance(value, str) else ""

    def render(self, template: str, active: str | None = None, status: int = 200, **values: Any) -> Response:
        flash = _read_flash(self.context, self.request)
        response = templates.TemplateResponse(
            self.request, template,
            {"user": self.user, "csrf_token": self.user.csrf_token or "", "active": active, "flash": flash, **values},
            status_code=status,
        )
        if flash is not None:
            _clear_flash(response, self.request)
        return _security_headers(response)

    def redirect(self, url: str, flash: tuple[str, str] | None = None) -> Response:
        response = RedirectResponse(url, status_code=303)
        if flash is not None:
            _set_flash(self.context, self.request, response, *flash)
        return _security_headers(response)


def sync_service(request: Request, context: ServiceContext) -> ErpSyncService:
    """The ERP sync service of this app (``app.state.erp_sync`` when set, else the engine's)."""
    service = getattr(request.app.state, "erp_sync", None)
    if service is not None:
        return service
    from payweave.core.sync.jobs import service_for_engine

    return service_for_engine(context.engine)


def _set_flash(context: ServiceContext, request: Request, response: Response, kind: str, text: str) -> None:
    value = sign(context, "flash", {"k": kind, "t": text[:500], "e": int(time.time()) + 120})
    response.set_cookie(FLASH_COOKIE, value, max_age=120, path="/ui", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


def _read_flash(context: ServiceContext, request: Request) -> dict[str, str] | None:
    payload = unsign(context, "flash", request.cookies.get(FLASH_COOKIE))
    if payload is None or int(payload.get("e", 0)) < time.time():
        return None
    return {"kind": str(payload.get("k", "ok")), "text": str(payload.get("t", ""))}


def _clear_flash(response: Response, request: Request) -> None:
    clear_cookie(response, request, FLASH_COOKIE)


def _login_redirect(request: Request, reason: str | None = None) -> Response:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    query = {"next": target} if request.method == "GET" and target.startswith("/ui") else {}
    if reason:
        query["reason"] = reason
    response = RedirectResponse("/ui/login" + ("?" + urlencode(query) if query else ""), status_code=303)
    clear_cookie(response, request, SESSION_COOKIE)
    return _security_headers(response)


def _error_page(request: Request, status: int, title: str, message: str, user: DashboardUser | None = None) -> Response:
    response = templates.TemplateResponse(
        request, "error.html",
        {"user": user, "csrf_token": (user.csrf_token if user else "") or "", "active": None, "flash": None,
         "title": title, "message": message, "status": status},
        status_code=status,
    )
    return _security_headers(response)


def _json_error(status: int, code: str, message: str) -> Response:
    return _security_headers(JSONResponse({"ok": False, "code": code, "message": message}, status_code=status))


async def _run(request: Request, handler: Callable[[Page], Response], *, as_json: bool = False) -> Response:
    """Authenticate (session cookie or API key), check CSRF on POST, run ``handler`` in a
    worker thread (it calls the blocking engine), and turn refusals into pages."""
    context = get_context(request)
    form = await request.form() if request.method == "POST" else None
    user: DashboardUser | None = None

    def work() -> Response:
        nonlocal user
        user = authenticate(context, request)
        if request.method == "POST":
            submitted = form.get(CSRF_FIELD) if form is not None else None
            check_csrf(context, request, user, submitted if isinstance(submitted, str) else None)
        return handler(Page(request, context, user, form))

    try:
        return await run_in_threadpool(work)
    except DashboardAuthError as exc:
        if as_json:
            return _json_error(401, "not_authenticated", exc.message)
        return _login_redirect(request, exc.reason if request.cookies.get(SESSION_COOKIE) else None)
    except CsrfError as exc:
        if as_json:
            return _json_error(403, "csrf_failed", exc.message)
        return _error_page(request, 403, "Request refused", exc.message, user)
    except PayweaveError as exc:
        status = exc.http_status if 400 <= exc.http_status < 600 else 500
        if as_json:
            return _json_error(status, exc.code, exc.message)
        title = "Not found" if status == 404 else "Request refused" if status < 500 else "Something went wrong"
        return _error_page(request, status, title, exc.message, user)


# ------------------------------------------------------------------------------ entry, static
@router.get("/", include_in_schema=False)
async def root() -> Response:
    return RedirectResponse("/ui", status_code=307)


@router.get("/ui", include_in_schema=False)
@router.get("/ui/", include_in_schema=False)
async def home(request: Request) -> Response:
    return await _run(request, lambda page: page.redirect("/ui/integrations"))


@router.get("/ui/static/{name}", include_in_schema=False)
async def static(name: str) -> Response:
    files = {p.name: p for p in STATIC.iterdir() if p.is_file()}
    path = files.get(name)
    if path is None:
        return _security_headers(Response("Not found", status_code=404, media_type="text/plain"))
    media = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if name.endswith(".js"):
        media = "text/javascript"
    response = Response(path.read_bytes(), media_type=media)
    response.headers["Cache-Control"] = "public, max-age=300"
    return _security_headers(response)


# ------------------------------------------------------------------------------ login / logout
def _login_form(request: Request, context: ServiceContext, *, status: int = 200, error: str | None = None,
                notice: str | None = None, next_url: str = "/ui") -> Response:
    token, cookie = issue_login_token(context)
    response = templates.TemplateResponse(
        request, "login.html",
        {"user": None, "csrf_token": "", "active": None, "flash": None, "error": error, "notice": notice,
         "next": next_url, "login_token": token},
        status_code=status,
    )
    set_login_cookie(response, request, cookie)
    return _security_headers(response)


def _safe_next(value: str | None) -> str:
    if value and value.startswith("/ui") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui"


@router.get("/ui/login", include_in_schema=False)
async def login_page(request: Request) -> Response:
    context = get_context(request)
    if request.cookies.get(SESSION_COOKIE):
        try:
            await run_in_threadpool(authenticate, context, request)
            return _security_headers(RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303))
        except DashboardAuthError:
            pass
    return _login_form(request, context, notice=REASONS.get(request.query_params.get("reason") or ""),
                       next_url=_safe_next(request.query_params.get("next")))


@router.post("/ui/login", include_in_schema=False)
async def login(request: Request) -> Response:
    context = get_context(request)
    form = await request.form()
    key = form.get("api_key")
    token = form.get("login_token")
    next_url = _safe_next(form.get("next") if isinstance(form.get("next"), str) else None)  # type: ignore[arg-type]
    try:
        check_login_token(context, request, token if isinstance(token, str) else None)
    except CsrfError as exc:
        return _login_form(request, context, status=403, error=exc.message, next_url=next_url)
    if not isinstance(key, str) or not key.strip():
        return _login_form(request, context, status=422, error="Enter your API key (pwk_...).", next_url=next_url)
    principal = await run_in_threadpool(api_keys(context).authenticate, key)
    if principal is None:
        return _login_form(request, context, status=401, error="The API key is not valid or was revoked.",
                           next_url=next_url)
    response = RedirectResponse(next_url, status_code=303)
    start_session(context, request, response, principal)
    return _security_headers(response)


@router.post("/ui/logout", include_in_schema=False)
async def logout(request: Request) -> Response:
    def handler(page: Page) -> Response:
        response = page.redirect("/ui/login?reason=logged_out")
        clear_cookie(response, request, SESSION_COOKIE)
        return response

    return await _run(request, handler)


# ------------------------------------------------------------------------------ integrations
def _integration(page: Page, *, with_companies: bool) -> views.Integration:
    return views.integration(page.engine, page.sync, page.company_id, with_companies=with_companies)


@router.get("/ui/integrations", include_in_schema=False)
async def integrations(request: Request) -> Response:
    def handler(page: Page) -> Response:
        return page.render("integrations.html", "integrations", integration=_integration(page, with_companies=True))

    return await _run(request, handler)


@router.get("/ui/integrations/status", include_in_schema=False)
async def integration_status(request: Request) -> Response:
    """The status card alone (the page refreshes it while a sync is pending)."""

    def handler(page: Page) -> Response:
        response = templates.TemplateResponse(
            request, "_integration_card.html",
            {"integration": _integration(page, with_companies=True), "csrf_token": page.user.csrf_token or "",
             "user": page.user})
        return _security_headers(response)

    return await _run(request, handler)


def _queue_sync(page: Page) -> int:
    queue = page.sync.queue or page.engine.jobs
    with page.engine.store.transaction() as s:
        job = enqueue_erp_job(queue, s, company_id=page.company_id, action=ACTION_SYNC, due_at=page.engine.clock.now())
        return int(job.id)


@router.post("/ui/integrations/connect", include_in_schema=False)
async def connect(request: Request) -> Response:
    def handler(page: Page) -> Response:
        plugin, _, problem = views.erp_plugin(page.engine)
        if plugin is None:
            return page.redirect("/ui/integrations", ("error", problem or "No ERP plugin is loaded."))
        chosen = page.field("erp_company") or None
        started = page.engine.clock.now()
        try:
            # records the connection (Pending) and queues the initial sync for the job worker
            view = page.sync.connect(plugin=plugin, erp_company_id=chosen, company_id=page.company_id,
                                     run_initial=False)
        except PayweaveError as exc:
            return page.redirect("/ui/integrations", ("error", exc.message))
        queued = views.sync_job_since(page.engine, page.company_id, started)
        job_id = queued.id if queued is not None else _queue_sync(page)
        name = view.erp_company_name or view.erp_company_id
        return page.redirect("/ui/integrations", (
            "ok", f"Connecting {name}: the initial sync (last 12 months, then all history) is queued as job #{job_id}."))

    return await _run(request, handler)


@router.post("/ui/integrations/sync", include_in_schema=False)
async def sync_now(request: Request) -> Response:
    def handler(page: Page) -> Response:
        try:
            page.sync.connection(page.company_id)
        except ConnectionNotFound:
            return page.redirect("/ui/integrations", ("error", "Connect the ERP first; there is nothing to sync yet."))
        job_id = _queue_sync(page)
        return page.redirect("/ui/integrations", ("ok", f"Sync queued as job #{job_id}."))

    return await _run(request, handler)


# ------------------------------------------------------------------------------ accounts
def _accounts_page(page: Page, *, status: int = 200, errors: dict[str, str] | None = None,
                   message: str | None = None, selected: dict[str, str] | None = None) -> Response:
    try:
        connection = page.sync.connection(page.company_id)
    except ConnectionNotFound:
        connection = None
    setup = page.sync.account_setup(page.company_id) if connection is not None else None
    ready = connection is not None and connection.connected_at is not None
    choices = views.account_choices(page.sync, page.company_id) if ready else views.AccountChoices()
    if selected is None:
        selected = {
            "payments_account": setup.payments_account.account_id if setup else "",
            "bank_account": setup.bank_account.account_id if setup else "",
            "fee_account": setup.fee_account.account_id if setup else "",
        }
    return page.render("accounts.html", "accounts", status=status, connection=connection, setup=setup, ready=ready,
                       choices=choices, errors=errors or {}, message=message, selected=selected)


@router.get("/ui/accounts", include_in_schema=False)
async def accounts(request: Request) -> Response:
    return await _run(request, _accounts_page)


@router.post("/ui/accounts", include_in_schema=False)
async def save_accounts(request: Request) -> Response:
    def handler(page: Page) -> Response:
        selected = {name: page.field(name) for name in ("payments_account", "bank_account", "fee_account")}
        try:
            connection = page.sync.connection(page.company_id)
        except ConnectionNotFound:
            connection = None
        if connection is None or connection.connected_at is None:
            return _accounts_page(page, status=409, selected=selected,
                                  message="Accounts can be set up once the integration is Connected.")
        captions = {"payments_account": "an account to record payments",
                    "bank_account": "the bank account that receives payouts",
                    "fee_account": "an account for PSP fees"}
        errors = {name: f"Choose {captions[name]}." for name, value in selected.items() if not value}
        if errors:
            return _accounts_page(page, status=422, errors=errors, selected=selected, message="Choose all three accounts.")
        try:
            saved = page.sync.set_account_setup(page.company_id, payments_account=selected["payments_account"],
                                                bank_account=selected["bank_account"],
                                                fee_account=selected["fee_account"], actor=page.user.actor)
        except AccountSetupInvalid as exc:
            role = ROLE_FIELDS.get(str(exc.details.get("role", "")))
            names = [role] if role else ["payments_account", "fee_account"]
            return _accounts_page(page, status=422, errors={n: exc.message for n in names}, selected=selected,
                                  message=exc.message)
        except PayweaveError as exc:
            return _accounts_page(page, status=exc.http_status if exc.http_status < 500 else 502, selected=selected,
                                  message=exc.message)
        return page.redirect("/ui/accounts", (
            "ok", f"Accounts saved: payments {saved.payments_account.number}, deposits {saved.bank_account.number}, "
                  f"fees {saved.fee_account.number}."))

    return await _run(request, handler)


# ------------------------------------------------------------------------------ payment methods
def _method_form(page: Page, *, mode: str, check: forms.FormCheck, status: int = 200) -> Response:
    choices = forms.psp_choices(page.engine)
    capabilities = check.capabilities
    if not capabilities and check.values.get("psp"):
        plugin, _, account = str(check.values["psp"]).partition(":")
        try:
            capabilities = forms.capability_titles(page.engine.capabilities(plugin, account or "default"))
        except PayweaveError:
            capabilities = []
    return page.render(
        "payment_method_form.html", "payment_methods", status=status, mode=mode, check=check, values=check.values,
        errors=check.errors, choices=choices, capabilities=capabilities, titles=forms.TITLES,
        option_fields=OPTION_FIELDS, capture_timings=[t.value for t in CaptureTiming],
        refund_timings=[t.value for t in RefundTiming],
    )


@router.get("/ui/payment-methods", include_in_schema=False)
async def payment_methods(request: Request) -> Response:
    def handler(page: Page) -> Response:
        methods = page.engine.list_payment_methods(page.company_id)
        return page.render("payment_methods.html", "payment_methods", methods=methods, titles=forms.TITLES,
                           option_fields=OPTION_FIELDS)

    return await _run(request, handler)


@router.get("/ui/payment-methods/new", include_in_schema=False)
async def new_payment_method(request: Request) -> Response:
    def handler(page: Page) -> Response:
        values = forms.blank_values()
        choices = [c for c in forms.psp_choices(page.engine) if c.problem is None]
        if choices:
            values["psp"] = choices[0].value
        return _method_form(page, mode="new", check=forms.FormCheck(values=values))

    return await _run(request, handler)


@router.post("/ui/payment-methods/validate", include_in_schema=False)
async def validate_payment_method(request: Request) -> Response:
    """Check the form as it is being edited (the engine's setup validation, nothing saved)."""

    def handler(page: Page) -> Response:
        values = forms.values_from_form(page.form or {})
        check = forms.check_form(page.engine, page.company_id, values)
        return _security_headers(JSONResponse(check.as_json()))

    return await _run(request, handler, as_json=True)


@router.post("/ui/payment-methods", include_in_schema=False)
async def save_payment_method(request: Request) -> Response:
    def handler(page: Page) -> Response:
        mode = "edit" if page.field("mode") == "edit" else "new"
        values = forms.values_from_form(page.form or {})
        check = forms.check_form(page.engine, page.company_id, values)
        if not check.ok:
            return _method_form(page, mode=mode, check=check, status=422)
        assert check.setup is not None
        if mode == "new":
            try:
                page.engine.get_payment_method(page.company_id, check.setup.code)
            except PaymentMethodNotFound:
                pass
            else:
                check.errors["code"] = f"Payment method {check.setup.code} exists already; edit it instead."
                check.message = check.errors["code"]
                check.setup = None
                return _method_form(page, mode=mode, check=check, status=409)
        try:
            saved = page.engine.save_payment_method(check.setup, actor=page.user.actor)
        except PayweaveError as exc:
            check.message, check.code = exc.message, exc.code
            for name in (exc.details or {}).get("settings") or [(exc.details or {}).get("setting") or "psp"]:
                check.errors[str(name)] = forms.field_message(exc.message, check.setup.code)
            check.setup = None
            return _method_form(page, mode=mode, check=check, status=exc.http_status if exc.http_status < 500 else 502)
        return page.redirect("/ui/payment-methods", ("ok", f"Payment method {saved.code} saved."))

    return await _run(request, handler)


@router.get("/ui/payment-methods/{code}", include_in_schema=False)
async def edit_payment_method(request: Request, code: str) -> Response:
    def handler(page: Page) -> Response:
        setup = page.engine.get_payment_method(page.company_id, code)
        check = forms.FormCheck(values=forms.values_of(setup))
        return _method_form(page, mode="edit", check=check)

    return await _run(request, handler)


@router.post("/ui/payment-methods/{code}/delete", include_in_schema=False)
async def delete_payment_method(request: Request, code: str) -> Response:
    def handler(page: Page) -> Response:
        page.engine.delete_payment_method(page.company_id, code)
        return page.redirect("/ui/payment-methods", ("ok", f"Payment method {code.upper()} deleted."))

    return await _run(request, handler)


# ------------------------------------------------------------------------------ transactions
@router.get("/ui/transactions", include_in_schema=False)
async def transactions(request: Request) -> Response:
    def handler(page: Page) -> Response:
        params = dict(request.query_params)
        problem = None
        try:
            flt = views.parse_filter(params)
        except views.FilterError as exc:
            problem, flt = str(exc), None
        rows = views.transactions(page.engine, page.company_id, flt) if flt is not None else []
        return page.render(
            "transactions.html", "transactions", status=200 if problem is None else 422, rows=rows, problem=problem,
            filter=params, statuses=[s.value for s in views.TxStatus], document_types=views.DOCUMENT_TYPE_TITLES,
            limit=views.TransactionFilter.limit,
        )

    return await _run(request, handler)


@router.get("/ui/transactions/{transaction_id}", include_in_schema=False)
async def transaction(request: Request, transaction_id: str) -> Response:
    def handler(page: Page) -> Response:
        tx = page.engine.get_transaction(page.company_id, transaction_id)
        related = page.engine.jobs.list(company_id=page.company_id, transaction_id=transaction_id, limit=100)
        details = {entry.id: json.dumps(entry.details, indent=2, sort_keys=True, default=str)
                   for entry in tx.history if entry.details}
        return page.render("transaction.html", "transactions", tx=tx, jobs=related, details=details,
                           document_types=views.DOCUMENT_TYPE_TITLES, job_kinds=views.JOB_KIND_TITLES)

    return await _run(request, handler)


# ------------------------------------------------------------------------------ jobs
@router.get("/ui/jobs", include_in_schema=False)
async def jobs(request: Request) -> Response:
    def handler(page: Page) -> Response:
        status = request.query_params.get("status") or None
        kind = request.query_params.get("kind") or None
        problem = None
        if status is not None and status not in {s.value for s in JobStatus}:
            problem = f"Status '{status}' is not a job state."
            status = None
        if kind is not None and kind not in views.JOB_KIND_TITLES:
            problem = f"Kind '{kind}' is not a job kind."
            kind = None
        rows = [] if problem else views.jobs(page.engine, page.company_id, status=status, kind=kind)
        counts = page.engine.jobs.counts(company_id=page.company_id)
        return page.render("jobs.html", "jobs", status=200 if problem is None else 422, rows=rows, counts=counts,
                           problem=problem, selected_status=status or "", selected_kind=kind or "",
                           statuses=[s.value for s in JobStatus], kinds=views.JOB_KIND_TITLES,
                           subject=views.job_subject)

    return await _run(request, handler)


def _job_action(request: Request, job_id: int, action: str) -> Callable[[Page], Response]:
    def handler(page: Page) -> Response:
        back = page.field("back")
        back = back if back.startswith("/ui/") and not back.startswith("//") else "/ui/jobs"
        try:
            if action == "retry":
                job = page.engine.jobs.retry(job_id, company_id=page.company_id)
                text = f"Job #{job.id} is queued again and runs shortly."
            else:
                job = page.engine.jobs.cancel(job_id, company_id=page.company_id)
                text = f"Job #{job.id} is cancelled."
        except PayweaveError as exc:
            if exc.http_status == 404:
                raise
            return page.redirect(back, ("error", exc.message))
        return page.redirect(back, ("ok", text))

    return handler


@router.post("/ui/jobs/{job_id}/retry", include_in_schema=False)
async def retry_job(request: Request, job_id: int) -> Response:
    return await _run(request, _job_action(request, job_id, "retry"))


@router.post("/ui/jobs/{job_id}/cancel", include_in_schema=False)
async def cancel_job(request: Request, job_id: int) -> Response:
    return await _run(request, _job_action(request, job_id, "cancel"))


__all__ = ["router", "sync_service"]
