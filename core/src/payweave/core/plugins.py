"""The plugin manager: loads plugins from the ``payweave`` entry-point group only (built-in
plugins included: no back door), validates each one at load time, and offers typed facades
(:class:`PspClient`, :class:`ErpClient`) that call exactly one plugin's hooks.

Loading policy
--------------
* ``PAYWEAVE_PLUGINS=a,b`` loads only those (entry-point or distribution names); an empty value
  loads none. ``PAYWEAVE_DISABLED_PLUGINS=x`` blocks names (``*`` blocks all).
* A plugin that fails to import, has an unknown hook, a hook with a wrong signature, misses a
  required hook for its kind, or declares an invalid capability model is reported as one
  :class:`PluginLoadError` naming the distribution and the problem; the other plugins keep working.
* ``PAYWEAVE_TRACE_PLUGINS=1`` logs every hook call with its outcome.
"""
from __future__ import annotations

import importlib.metadata as md
import inspect
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pluggy
from pydantic import BaseModel, SecretStr, ValidationError

from payweave.hooks import hookspecs
from payweave.hooks.capabilities import Feature, PspCapabilities
from payweave.hooks.errors import ConfigurationError, NotSupported, PayweaveError, PluginError
from payweave.hooks.models import (
    Account,
    CaptureRequest,
    CartUpdateRequest,
    CreditRequest,
    DocumentType,
    ErpCompany,
    ErpRecordResult,
    LedgerAccount,
    MandateChargeRequest,
    OperationResult,
    PaymentLinkRequest,
    PaymentLinkResult,
    PaymentLookup,
    Payout,
    PluginInfo,
    PluginKind,
    PspEvent,
    RecordDepositRequest,
    RecordPaymentRequest,
    RefundRequest,
    RenewalResult,
    RenewReservationRequest,
    ReservationResult,
    ReserveRequest,
    SalesDocument,
    SandboxSpec,
    SyncCursor,
    SyncEntity,
    SyncPage,
    VoidRequest,
    WebhookRequest,
)

from .logging import get_logger, register_secret
from .metrics import PLUGIN_CALLS, labelled
from .settings import PayweaveSettings

ENTRY_POINT_GROUP = "payweave"
_HOOK_PREFIXES = ("psp_", "erp_", "payweave_")


class PluginLoadError(PayweaveError):
    """A plugin could not be loaded; names the plugin, its distribution and the problem."""

    code = "plugin_load_error"
    http_status = 500


class PluginBug(PluginError):
    """A plugin broke the contract (bare exception, wrong return type)."""

    code = "plugin_contract_violation"
    http_status = 502


class UnknownPlugin(PayweaveError):
    code = "unknown_plugin"
    http_status = 404


@dataclass
class LoadedPlugin:
    name: str
    distribution: str
    version: str
    status: str  # active | broken | blocked | not_pinned
    info: PluginInfo | None = None
    error: PluginLoadError | None = None
    obj: Any = None
    hooks: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.info.kind.value if self.info else "?"


def _describe_dist(dist_name: str, version: str) -> str:
    return f"{dist_name} {version}".strip()


class PluginManager:
    def __init__(self, settings: PayweaveSettings | None = None) -> None:
        self.settings = settings or PayweaveSettings()
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._plugins: dict[str, LoadedPlugin] = {}
        self._callers: dict[tuple[str, str], Any] = {}
        self._capability_cache: dict[tuple[str, int], PspCapabilities] = {}
        self.log = get_logger(component="plugins")
        if self.settings.trace_plugins:
            self._enable_tracing()

    # ------------------------------------------------------------------ loading
    def load_entrypoints(self, group: str = ENTRY_POINT_GROUP) -> list[LoadedPlugin]:
        allow = self.settings.plugin_allow_list()
        block = self.settings.plugin_block_list()
        loaded: list[LoadedPlugin] = []
        seen: set[str] = set()
        for dist in md.distributions():
            dist_name = dist.metadata["Name"] or "?"
            for ep in dist.entry_points:
                if ep.group != group or ep.name in seen:
                    continue
                seen.add(ep.name)
                record = LoadedPlugin(ep.name, dist_name, dist.version or "", "active")
                if allow is not None and ep.name not in allow and dist_name not in allow:
                    record.status = "not_pinned"
                elif "*" in block or ep.name in block or dist_name in block:
                    record.status = "blocked"
                else:
                    record = self._load_one(ep, record)
                self._plugins[record.name] = record
                loaded.append(record)
        if allow:
            missing = [n for n in allow if n not in self._plugins and n not in {p.distribution for p in loaded}]
            for name in missing:
                err = PluginLoadError(
                    f"Plugin {name!r} named in PAYWEAVE_PLUGINS is not installed (no '{group}' entry point).",
                    details={"plugin": name},
                )
                self._plugins[name] = LoadedPlugin(name, "?", "", "broken", error=err)
                self.log.error("plugin.missing", plugin=name)
        return loaded

    def _load_one(self, ep: md.EntryPoint, record: LoadedPlugin) -> LoadedPlugin:
        try:
            obj = ep.load()
        except Exception as exc:  # an import failure must not take the other plugins down
            return self._broken(record, f"could not be imported: {type(exc).__name__}: {exc}")
        return self.register(obj, name=record.name, distribution=record.distribution, version=record.version)

    def register(self, obj: Any, *, name: str, distribution: str = "(in-process)", version: str = "") -> LoadedPlugin:
        """Register and validate ``obj`` (a module or object with ``@hookimpl`` functions).

        The same path entry-point plugins take; tests use it for in-process plugins.
        """
        record = LoadedPlugin(name, distribution, version, "active", obj=obj)
        if name in self._plugins and self._plugins[name].status == "active":
            return self._broken(record, f"a plugin named {name!r} is already loaded", register=False)
        try:
            self.pm.register(obj, name=name)
        except pluggy.PluginValidationError as exc:
            return self._broken(record, f"has an invalid hook implementation: {exc}", register=False)
        except ValueError as exc:
            return self._broken(record, str(exc), register=False)
        problem = self._validate(name, obj, record)
        if problem:
            self.pm.unregister(obj, name=name)
            return self._broken(record, problem, register=False)
        self._plugins[name] = record
        self._callers.clear()
        self.log.info("plugin.loaded", plugin=name, dist=distribution, version=version, kind=record.kind)
        return record

    def unregister(self, name: str) -> None:
        record = self._plugins.pop(name, None)
        if record and record.status == "active" and record.obj is not None:
            self.pm.unregister(record.obj, name=name)
        self._callers.clear()
        self._capability_cache.clear()

    def _broken(self, record: LoadedPlugin, problem: str, *, register: bool = False) -> LoadedPlugin:
        where = _describe_dist(record.distribution, record.version)
        err = PluginLoadError(
            f"Plugin {record.name!r} (distribution {where}) {problem}",
            details={"plugin": record.name, "distribution": record.distribution, "version": record.version},
        )
        record.status = "broken"
        record.error = err
        record.obj = None
        self._plugins[record.name] = record
        self.log.error("plugin.broken", plugin=record.name, dist=record.distribution, problem=problem)
        return record

    def _validate(self, name: str, obj: Any, record: LoadedPlugin) -> str | None:
        implemented: list[str] = []
        for caller in self.pm.get_hookcallers(obj) or []:
            if not caller.has_spec():
                impl = next(i for i in caller.get_hookimpls() if i.plugin_name == name)
                if not impl.optionalhook:
                    return f"implements unknown hook {caller.name!r} ({_signature(impl.function)})"
            implemented.append(caller.name)
        # functions that look like hooks but were not marked: a forgotten @hookimpl
        record.hooks = sorted(implemented)
        if "payweave_plugin_info" not in implemented:
            return "does not implement the required hook 'payweave_plugin_info'"
        try:
            info = self._caller("payweave_plugin_info", name)()
        except Exception as exc:
            return f"failed in payweave_plugin_info: {type(exc).__name__}: {exc}"
        if not isinstance(info, PluginInfo):
            return f"payweave_plugin_info returned {type(info).__name__}, not PluginInfo"
        if info.name != name:
            return f"payweave_plugin_info names itself {info.name!r}, but its entry point is {name!r}"
        record.info = info
        wrong_side = [h for h in implemented if h.startswith("erp_" if info.kind is PluginKind.PSP else "psp_")]
        if wrong_side:
            return f"is a {info.kind.value} plugin but implements {', '.join(wrong_side)}"
        required = hookspecs.PSP_REQUIRED_HOOKS if info.kind is PluginKind.PSP else hookspecs.ERP_REQUIRED_HOOKS
        missing = [h for h in required if h not in implemented]
        if missing:
            return f"misses required hook(s) for a {info.kind.value} plugin: {', '.join(missing)}"
        if info.kind is PluginKind.PSP:
            try:
                account = self._default_account(info)
            except ConfigurationError:
                return None  # needs configuration; capabilities are checked when an account is made
            try:
                caps = self._caller("psp_capabilities", name)(account=account)
            except ValidationError as exc:
                return f"declares an invalid capability model: {exc.errors()[0]['msg']}"
            except Exception as exc:
                return f"failed in psp_capabilities: {type(exc).__name__}: {exc}"
            if not isinstance(caps, PspCapabilities):
                return f"psp_capabilities returned {type(caps).__name__}, not PspCapabilities"
            for feature in Feature:
                if caps.declares(feature):
                    lacking = [h for h in hookspecs.FEATURE_HOOKS[feature] if h not in implemented]
                    if lacking:
                        return f"declares {feature.value!r} but does not implement {', '.join(lacking)}"
        return None

    # ------------------------------------------------------------------ queries
    def plugins(self) -> list[LoadedPlugin]:
        return sorted(self._plugins.values(), key=lambda p: p.name)

    def active(self, kind: PluginKind | str | None = None) -> list[LoadedPlugin]:
        return [
            p
            for p in self.plugins()
            if p.status == "active" and (kind is None or (p.info is not None and p.info.kind == PluginKind(kind)))
        ]

    def errors(self) -> list[PluginLoadError]:
        return [p.error for p in self.plugins() if p.error is not None]

    def get(self, name: str, kind: PluginKind | str | None = None) -> LoadedPlugin:
        record = self._plugins.get(name)
        if record is None or record.status != "active":
            if record is not None and record.error is not None:
                raise UnknownPlugin(record.error.message, details={"plugin": name})
            known = ", ".join(p.name for p in self.active(kind)) or "none"
            raise UnknownPlugin(f"No plugin named {name!r} is loaded (loaded: {known}).", details={"plugin": name})
        if kind is not None and record.info is not None and record.info.kind != PluginKind(kind):
            raise UnknownPlugin(f"Plugin {name!r} is a {record.info.kind.value} plugin, not {PluginKind(kind).value}.")
        return record

    def psp(self, name: str) -> PspClient:
        self.get(name, PluginKind.PSP)
        return PspClient(self, name)

    def erp(self, name: str) -> ErpClient:
        self.get(name, PluginKind.ERP)
        return ErpClient(self, name)

    def sandboxes(self) -> list[tuple[str, SandboxSpec]]:
        found: list[tuple[str, SandboxSpec]] = []
        for record in self.active():
            if "payweave_sandboxes" in record.hooks:
                for spec in self._caller("payweave_sandboxes", record.name)() or []:
                    found.append((record.name, spec))
        return found

    # ------------------------------------------------------------------ accounts
    def _default_account(self, info: PluginInfo) -> Account:
        return self.account(info.name, "default", _info=info)

    def account(self, plugin: str, name: str = "default", _info: PluginInfo | None = None, **overrides: Any) -> Account:
        """Build the :class:`Account` for ``plugin``/``name`` from ``[accounts.<plugin>.<name>]``
        settings, the plugin's own ``PAYWEAVE_...`` environment, and ``overrides``."""
        info = _info or self.get(plugin).info
        assert info is not None
        values = {**self.settings.accounts.get(plugin, {}).get(name, {}), **overrides}
        settings_obj: BaseModel | None = None
        if info.settings_model is not None:
            try:
                settings_obj = info.settings_model(**values)
            except ValidationError as exc:
                problems = "; ".join(
                    (".".join(str(p) for p in e["loc"]) + ": " if e["loc"] else "") + str(e["msg"])
                    for e in exc.errors(include_input=False)
                )
                fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors() if e["loc"])
                raise ConfigurationError(
                    f"Account {name!r} of plugin {plugin!r} has missing or invalid settings: {problems}.",
                    details={"plugin": plugin, "account": name, "fields": fields},
                ) from None
            _register_model_secrets(settings_obj)
        return Account(plugin=plugin, name=name, settings=settings_obj)

    # ------------------------------------------------------------------ calling
    def _caller(self, hook: str, plugin: str) -> Callable[..., Any]:
        key = (hook, plugin)
        caller = self._callers.get(key)
        if caller is None:
            others = [p for n, p in self.pm.list_name_plugin() if n != plugin]
            caller = self.pm.subset_hook_caller(hook, remove_plugins=others)
            self._callers[key] = caller
        return caller

    def call(self, plugin: str, hook: str, expect: type | tuple[type, ...] | None, **kwargs: Any) -> Any:
        """Call ``hook`` on ``plugin`` only. Plugin errors pass through; anything else a plugin
        raises or returns outside the contract becomes :class:`PluginBug`."""
        record = self._plugins.get(plugin)
        if record is None or record.status != "active":
            self.get(plugin)
        if hook not in record.hooks:  # type: ignore[union-attr]
            raise NotSupported(
                f"Plugin {plugin!r} does not implement {hook}.", details={"plugin": plugin, "hook": hook}
            )
        started = time.perf_counter()
        outcome = "error"
        try:
            result = self._caller(hook, plugin)(**kwargs)
            outcome = "ok"
        except PayweaveError as exc:
            outcome = exc.code
            raise
        except ValidationError as exc:
            raise PluginBug(
                f"Plugin {plugin!r} built an invalid result in {hook}: {exc.errors()[0]['msg']}",
                details={"plugin": plugin, "hook": hook},
            ) from exc
        except Exception as exc:
            raise PluginBug(
                f"Plugin {plugin!r} raised {type(exc).__name__} in {hook} instead of a payweave error: {exc}",
                details={"plugin": plugin, "hook": hook},
            ) from exc
        finally:
            labelled(PLUGIN_CALLS, plugin, hook, outcome).observe(time.perf_counter() - started)
        if expect is not None and not isinstance(result, expect):
            raise PluginBug(
                f"Plugin {plugin!r} returned {type(result).__name__} from {hook}, expected "
                f"{getattr(expect, '__name__', expect)}.",
                details={"plugin": plugin, "hook": hook},
            )
        return result

    def _enable_tracing(self) -> None:
        log = get_logger(component="plugin-trace")
        starts: dict[int, float] = {}

        def before(hook_name: str, hook_impls: list[Any], kwargs: dict[str, Any]) -> None:
            starts[id(kwargs)] = time.perf_counter()
            log.info("hook.call", hook=hook_name, plugins=[i.plugin_name for i in hook_impls], kwargs=kwargs)

        def after(outcome: Any, hook_name: str, hook_impls: list[Any], kwargs: dict[str, Any]) -> None:
            took = (time.perf_counter() - starts.pop(id(kwargs), time.perf_counter())) * 1000
            exc = outcome.exception
            log.info(
                "hook.done",
                hook=hook_name,
                ms=round(took, 3),
                outcome="error" if exc else "ok",
                error=repr(exc) if exc else None,
            )

        self.pm.add_hookcall_monitoring(before, after)


def _signature(fn: Callable[..., Any]) -> str:
    try:
        return f"{fn.__name__}{inspect.signature(fn)}"
    except (TypeError, ValueError):
        return getattr(fn, "__name__", repr(fn))


def _register_model_secrets(model: BaseModel) -> None:
    for value in model.__dict__.values():
        if isinstance(value, SecretStr):
            register_secret(value)
        elif isinstance(value, BaseModel):
            _register_model_secrets(value)


class PspClient:
    """Typed facade over one PSP plugin's hooks (the core never calls ``pm.hook`` directly)."""

    def __init__(self, manager: PluginManager, name: str) -> None:
        self.manager = manager
        self.name = name

    def _call(self, hook: str, expect: Any, **kw: Any) -> Any:
        return self.manager.call(self.name, hook, expect, **kw)

    def capabilities(self, account: Account) -> PspCapabilities:
        return self._call("psp_capabilities", PspCapabilities, account=account)

    def reserve(self, account: Account, request: ReserveRequest) -> ReservationResult:
        return self._call("psp_reserve", ReservationResult, account=account, request=request)

    def capture(self, account: Account, request: CaptureRequest) -> OperationResult:
        return self._call("psp_capture", OperationResult, account=account, request=request)

    def void(self, account: Account, request: VoidRequest) -> OperationResult:
        return self._call("psp_void", OperationResult, account=account, request=request)

    def refund(self, account: Account, request: RefundRequest) -> OperationResult:
        return self._call("psp_refund", OperationResult, account=account, request=request)

    def credit(self, account: Account, request: CreditRequest) -> OperationResult:
        return self._call("psp_credit", OperationResult, account=account, request=request)

    def update_cart(self, account: Account, request: CartUpdateRequest) -> ReservationResult:
        return self._call("psp_update_cart", ReservationResult, account=account, request=request)

    def create_payment_link(self, account: Account, request: PaymentLinkRequest) -> PaymentLinkResult:
        return self._call("psp_create_payment_link", PaymentLinkResult, account=account, request=request)

    def charge_mandate(self, account: Account, request: MandateChargeRequest) -> ReservationResult:
        return self._call("psp_charge_mandate", ReservationResult, account=account, request=request)

    def renew_reservation(self, account: Account, request: RenewReservationRequest) -> RenewalResult:
        return self._call("psp_renew_reservation", RenewalResult, account=account, request=request)

    def get_payment(self, account: Account, psp_reference: str) -> PaymentLookup:
        return self._call("psp_get_payment", PaymentLookup, account=account, psp_reference=psp_reference)

    def parse_webhook(self, account: Account, request: WebhookRequest) -> list[PspEvent]:
        events = self._call("psp_parse_webhook", list, account=account, request=request)
        _check_items(self.name, "psp_parse_webhook", events, PspEvent)
        return events

    def list_payouts(self, account: Account, since: datetime | None) -> list[Payout]:
        payouts = self._call("psp_list_payouts", list, account=account, since=since)
        _check_items(self.name, "psp_list_payouts", payouts, Payout)
        return payouts


class ErpClient:
    """Typed facade over one ERP plugin's hooks."""

    def __init__(self, manager: PluginManager, name: str) -> None:
        self.manager = manager
        self.name = name

    def _call(self, hook: str, expect: Any, **kw: Any) -> Any:
        return self.manager.call(self.name, hook, expect, **kw)

    def read_changes(self, account: Account, entity: SyncEntity, cursor: SyncCursor, page_size: int) -> Iterator[SyncPage]:
        pages = self._call(
            "erp_read_changes", Iterable, account=account, entity=entity, cursor=cursor, page_size=page_size
        )
        for page in pages:
            if not isinstance(page, SyncPage):
                raise PluginBug(f"Plugin {self.name!r} yielded {type(page).__name__} from erp_read_changes, not SyncPage.")
            yield page

    def read_many_changes(self, account: Account, cursors: dict[SyncEntity, SyncCursor],
                          page_size: int) -> Iterator[SyncPage]:
        """``erp_read_many_changes`` (optional: NotSupported when the plugin lacks it)."""
        pages = self._call("erp_read_many_changes", Iterable, account=account, cursors=cursors, page_size=page_size)
        for page in pages:
            if not isinstance(page, SyncPage) or page.entity not in cursors:
                raise PluginBug(f"Plugin {self.name!r} yielded {type(page).__name__} from erp_read_many_changes, "
                                "not a SyncPage of an entity asked for.")
            yield page

    def read_document(self, account: Account, document_type: DocumentType, document_id: str) -> SalesDocument | None:
        return self.manager.call(
            self.name, "erp_read_document", (SalesDocument, type(None)),
            account=account, document_type=document_type, document_id=document_id,
        )

    def read_invoice_pdf(self, account: Account, invoice_id: str) -> bytes:
        return self._call("erp_read_invoice_pdf", bytes, account=account, invoice_id=invoice_id)

    def list_ledger_accounts(self, account: Account) -> list[LedgerAccount]:
        accounts = self._call("erp_list_ledger_accounts", list, account=account)
        _check_items(self.name, "erp_list_ledger_accounts", accounts, LedgerAccount)
        return accounts

    def record_payment(self, account: Account, request: RecordPaymentRequest) -> ErpRecordResult:
        return self._call("erp_record_payment", ErpRecordResult, account=account, request=request)

    def record_deposit(self, account: Account, request: RecordDepositRequest) -> ErpRecordResult:
        return self._call("erp_record_deposit", ErpRecordResult, account=account, request=request)

    def ensure_subscriptions(self, account: Account, notification_url: str, client_state: str) -> datetime | None:
        return self.manager.call(
            self.name, "erp_ensure_subscriptions", (datetime, type(None)),
            account=account, notification_url=notification_url, client_state=client_state,
        )

    def parse_notification(self, account: Account, request: WebhookRequest, client_state: str) -> list[SyncEntity]:
        entities = self._call(
            "erp_parse_notification", list, account=account, request=request, client_state=client_state
        )
        _check_items(self.name, "erp_parse_notification", entities, SyncEntity)
        return entities

    def list_companies(self, account: Account) -> list[ErpCompany]:
        companies = self._call("erp_list_companies", list, account=account)
        _check_items(self.name, "erp_list_companies", companies, ErpCompany)
        return companies


def _check_items(plugin: str, hook: str, items: list[Any], kind: type) -> None:
    for item in items:
        if not isinstance(item, kind):
            raise PluginBug(f"Plugin {plugin!r} returned a {type(item).__name__} in {hook}, expected {kind.__name__}.")


_default: PluginManager | None = None


def get_plugin_manager(settings: PayweaveSettings | None = None, *, fresh: bool = False) -> PluginManager:
    """The process-wide manager, loaded from entry points once (``fresh=True`` reloads)."""
    global _default
    if _default is None or fresh or settings is not None:
        manager = PluginManager(settings)
        manager.load_entrypoints()
        if settings is not None and not fresh:
            return manager
        _default = manager
    return _default
