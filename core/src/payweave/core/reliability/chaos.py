"""Fault injection at payweave's real boundaries, without test branches in production code.

* :class:`ChaosPsp` and :class:`ChaosErp` are ordinary plugins, registered with
  :meth:`PluginManager.register` (the path every plugin takes): each wraps a real plugin (psp_mock,
  the durable test PSP, erp_businesscentral) and asks the :class:`FaultController` at the points
  before and after every hook call. A payment method that names the wrapper's plugin goes
  through it; the wrapped plugin does the real work against its real ledger / sandbox.
* :class:`DbFaults` drops the database connection under a statement: an SQLAlchemy event on the
  store's engine. On PostgreSQL the backend is killed with ``pg_terminate_backend`` from a side
  connection, so the driver sees a genuine disconnect; on SQLite (no server to kill) the driver
  raises the disconnect error SQLite raises for a closed database, inside SQLAlchemy's own
  execute, so the same error handling runs.
"""
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import event

from payweave.core.plugins import PluginManager
from payweave.hooks import hookimpl
from payweave.hooks.models import Account, PluginInfo, PluginKind

from .faults import FaultController


class _Wrapper:
    """Common part of the wrappers: the inner plugin is called through the manager, like the
    core calls any plugin, with an account of the inner plugin carrying the same settings."""

    kind: PluginKind

    def __init__(
        self,
        manager: Callable[[], PluginManager],
        controller: FaultController,
        *,
        name: str,
        inner: str,
        settings_model: type[BaseModel] | None,
    ) -> None:
        self._manager = manager
        self.controller = controller
        self.name = name
        self.inner = inner
        self.settings_model = settings_model

    def _inner_account(self, account: Account) -> Account:
        return Account(plugin=self.inner, name=account.name, settings=account.settings)

    def _delegate(self, hook: str, account: Account, **kwargs: Any) -> Any:
        return self._manager().call(self.inner, hook, None, account=self._inner_account(account), **kwargs)

    def _around(self, prefix: str, operation: str, account: Account, **kwargs: Any) -> Any:
        self.controller.reached(f"{prefix}.{operation}.before", account=account, **kwargs)
        result = self._delegate(f"{prefix}_{operation}", account, **kwargs)
        self.controller.reached(f"{prefix}.{operation}.after", account=account, result=result, **kwargs)
        return result

    @hookimpl
    def payweave_plugin_info(self) -> PluginInfo:
        return PluginInfo(name=self.name, kind=self.kind, title=f"{self.inner} with fault injection",
                          settings_model=self.settings_model)


class ChaosPsp(_Wrapper):
    """A PSP plugin that is ``inner`` plus the faults the controller fires."""

    kind = PluginKind.PSP

    @hookimpl
    def psp_capabilities(self, account: Account) -> Any:
        return self._delegate("psp_capabilities", account)

    @hookimpl
    def psp_reserve(self, account: Account, request: Any) -> Any:
        return self._around("psp", "reserve", account, request=request)

    @hookimpl
    def psp_capture(self, account: Account, request: Any) -> Any:
        return self._around("psp", "capture", account, request=request)

    @hookimpl
    def psp_void(self, account: Account, request: Any) -> Any:
        return self._around("psp", "void", account, request=request)

    @hookimpl
    def psp_refund(self, account: Account, request: Any) -> Any:
        return self._around("psp", "refund", account, request=request)

    @hookimpl
    def psp_credit(self, account: Account, request: Any) -> Any:
        return self._around("psp", "credit", account, request=request)

    @hookimpl
    def psp_update_cart(self, account: Account, request: Any) -> Any:
        return self._around("psp", "update_cart", account, request=request)

    @hookimpl
    def psp_create_payment_link(self, account: Account, request: Any) -> Any:
        return self._around("psp", "create_payment_link", account, request=request)

    @hookimpl
    def psp_charge_mandate(self, account: Account, request: Any) -> Any:
        return self._around("psp", "charge_mandate", account, request=request)

    @hookimpl
    def psp_renew_reservation(self, account: Account, request: Any) -> Any:
        return self._around("psp", "renew_reservation", account, request=request)

    @hookimpl
    def psp_get_payment(self, account: Account, psp_reference: str) -> Any:
        return self._delegate("psp_get_payment", account, psp_reference=psp_reference)

    @hookimpl
    def psp_parse_webhook(self, account: Account, request: Any) -> Any:
        return self._delegate("psp_parse_webhook", account, request=request)

    @hookimpl
    def psp_list_payouts(self, account: Account, since: datetime | None) -> Any:
        return self._delegate("psp_list_payouts", account, since=since)


class ChaosErp(_Wrapper):
    """An ERP plugin that is ``inner`` (erp_businesscentral) plus the faults the controller fires."""

    kind = PluginKind.ERP

    @hookimpl
    def erp_read_changes(self, account: Account, entity: Any, cursor: Any, page_size: int) -> Iterator[Any]:
        pages = self._delegate("erp_read_changes", account, entity=entity, cursor=cursor, page_size=page_size)

        def paged() -> Iterator[Any]:
            for page in pages:
                # the sync has committed every earlier page (and its cursor) when this one arrives
                self.controller.reached("erp.read_changes.page", account=account, entity=entity)
                yield page

        return paged()

    @hookimpl
    def erp_read_document(self, account: Account, document_type: Any, document_id: str) -> Any:
        return self._delegate("erp_read_document", account, document_type=document_type, document_id=document_id)

    @hookimpl
    def erp_read_invoice_pdf(self, account: Account, invoice_id: str) -> Any:
        return self._delegate("erp_read_invoice_pdf", account, invoice_id=invoice_id)

    @hookimpl
    def erp_list_ledger_accounts(self, account: Account) -> Any:
        return self._delegate("erp_list_ledger_accounts", account)

    @hookimpl
    def erp_record_payment(self, account: Account, request: Any) -> Any:
        return self._around("erp", "record_payment", account, request=request)

    @hookimpl
    def erp_record_deposit(self, account: Account, request: Any) -> Any:
        return self._around("erp", "record_deposit", account, request=request)

    @hookimpl
    def erp_ensure_subscriptions(self, account: Account, notification_url: str, client_state: str) -> Any:
        return self._delegate("erp_ensure_subscriptions", account, notification_url=notification_url,
                              client_state=client_state)

    @hookimpl
    def erp_parse_notification(self, account: Account, request: Any, client_state: str) -> Any:
        return self._delegate("erp_parse_notification", account, request=request, client_state=client_state)

    @hookimpl
    def erp_list_companies(self, account: Account) -> Any:
        return self._delegate("erp_list_companies", account)


class DbFaults:
    """Drops the store's database connection under the next statement of the arming thread."""

    def __init__(self, store: Any, *, admin: Callable[[int], None] | None = None) -> None:
        self.store = store
        self._admin = admin
        self._armed: dict[int, int] = {}
        self._lock = threading.Lock()
        self.dropped = 0
        if store.is_postgres:
            event.listen(store.engine, "before_cursor_execute", self._before_cursor_execute)
        else:
            event.listen(store.engine, "do_execute", self._do_execute)

    def arm(self, skip: int = 0) -> None:
        """The ``skip``-th next statement of this thread runs on a dropped connection."""
        with self._lock:
            self._armed[threading.get_ident()] = skip

    def disarm(self) -> None:
        with self._lock:
            self._armed.clear()

    def _due(self) -> bool:
        ident = threading.get_ident()
        with self._lock:
            n = self._armed.get(ident)
            if n is None:
                return False
            if n > 0:
                self._armed[ident] = n - 1
                return False
            del self._armed[ident]
            self.dropped += 1
            return True

    def _before_cursor_execute(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                               executemany: bool) -> None:
        if self._due():
            assert self._admin is not None, "PostgreSQL connection drops need the admin connection"
            self._admin(conn.connection.dbapi_connection.info.backend_pid)

    def _do_execute(self, cursor: Any, statement: str, parameters: Any, context: Any) -> bool | None:
        if self._due():
            # what sqlite3 raises on a connection that went away; SQLAlchemy treats it as a disconnect
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        return None


__all__ = ["ChaosErp", "ChaosPsp", "DbFaults"]
