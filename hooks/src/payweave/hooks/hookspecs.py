"""The payweave hook specifications: the plugin author's reference.

A plugin is a module (or object) with functions marked ``@hookimpl`` whose names and argument
names match the specs below, published through an entry point in the ``payweave`` group::

    [project.entry-points.payweave]
    my_psp = "my_psp.plugin"

Calling conventions (the core guarantees these to every plugin):

* Hooks are called with keyword arguments only, and only on the plugin that owns the account
  (``account.plugin``): a PSP plugin never sees another plugin's calls.
* Every hook that moves money receives a request with an ``idempotency_key``. The core derives
  it from the transaction and the step, commits it *before* calling the plugin, and sends the
  identical key on every retry, also after a crash and restart. Pass it to the PSP (e.g. as the
  ``Idempotency-Key`` header); a second call with the same key must not move money again but
  return the first outcome.
* The core refuses operations the plugin's :class:`~payweave.hooks.capabilities.PspCapabilities`
  excludes *before* calling it; a plugin still raises :class:`~payweave.hooks.errors.NotSupported`
  if called anyway (the conformance suite checks this).
* The core retries only after :class:`~payweave.hooks.errors.TemporarilyUnavailable`, with the
  same request and backoff (``payweave.hooks.retry``); every other error is final for that request.
* Raise only the typed errors of :mod:`payweave.hooks.errors`. A bare exception is treated as a
  plugin bug: the operation is parked, and the conformance suite fails the plugin.
* Amounts are :class:`~payweave.hooks.money.Money` (Decimal + ISO currency). Convert to the
  PSP's minor units with :func:`~payweave.hooks.money.to_minor_units`, never with floats.
* Never log or return secrets; settings hold them as ``SecretStr``.

Required hooks: every plugin implements ``payweave_plugin_info``. A ``psp`` plugin implements
``psp_capabilities`` and, for each feature it declares, the hooks in :data:`FEATURE_HOOKS`.
An ``erp`` plugin implements the hooks in :data:`ERP_REQUIRED_HOOKS`. The plugin manager checks
this (and unknown hook names, and signatures) when it loads the plugin.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING

import pluggy

from .capabilities import Feature

if TYPE_CHECKING:
    from .capabilities import PspCapabilities
    from .models import (
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

PROJECT = "payweave"
_spec = pluggy.HookspecMarker(PROJECT)


# ============================================================================================
# Identity and tooling (all plugins)
# ============================================================================================
@_spec(firstresult=True)
def payweave_plugin_info() -> PluginInfo:
    """Say who this plugin is. **Required for every plugin.**

    :return: a :class:`~payweave.hooks.models.PluginInfo` whose ``name`` equals the entry-point
        name, with ``kind`` (``psp``/``erp``) and the plugin's settings model (a
        ``pydantic_settings.BaseSettings`` subclass; secrets as ``SecretStr``).

    Called once at load time; must not do I/O. Stops at the first non-None result.

    Example::

        @hookimpl
        def payweave_plugin_info():
            return PluginInfo(name="my_psp", kind="psp", title="My PSP", settings_model=MySettings)
    """


@_spec(firstresult=True)
def payweave_sandboxes() -> list[SandboxSpec]:
    """Optional: the sandbox servers this plugin ships, each served by ``payweave <command>``.

    :return: a list of :class:`~payweave.hooks.models.SandboxSpec`.
    """


@_spec(firstresult=True)
def payweave_conformance_environment(account_name: str):  # type: ignore[no-untyped-def]
    """Optional for PSP plugins: give the conformance suite a ready environment.

    :param account_name: a name for the account the suite will use.
    :return: a context manager yielding a
        :class:`~payweave.hooks.conformance.ConformanceEnvironment` (start the sandbox or point
        at a test account on enter, clean up on exit). See ``docs/writing-a-psp-plugin.md``.
    """


# ============================================================================================
# PSP hooks
# ============================================================================================
@_spec(firstresult=True)
def psp_capabilities(account: Account) -> PspCapabilities:
    """Declare what this PSP can do for ``account``. **Required for PSP plugins.**

    :param account: the account (its ``settings`` may change what the PSP can do).
    :return: a :class:`~payweave.hooks.capabilities.PspCapabilities`.

    Must be cheap and free of I/O: the core calls it before every operation and when setup is
    saved. The answer must be stable for the same settings.
    """


@_spec(firstresult=True)
def psp_reserve(account: Account, request: ReserveRequest) -> ReservationResult:
    """Authorize (reserve) a payment, or authorize and capture at once when ``request.capture``.

    :param account: the PSP account.
    :param request: amount, cart (None in no-cart mode), customer, ``idempotency_key``.
    :return: :class:`~payweave.hooks.models.ReservationResult` with the PSP reference, status
        ``reserved`` (or ``captured`` with ``capture=True``, or ``pending`` when the customer
        must still act) and ``expires_at`` if the PSP tells it.
    :raises PaymentDeclined: the PSP refused the payment (with its decline code).
    :raises InvalidRequest: the PSP rejected the data (e.g. unsupported currency).
    :raises NotSupported: ``capture=True`` without ``auto_capture``, or no cart without ``no_cart``.
    :raises TemporarilyUnavailable: timeouts, 429, 5xx; the core retries with the same key.

    Idempotency: the same ``idempotency_key`` must return the first reservation, never a second.
    Declared by: ``Feature.RESERVE`` / ``Feature.AUTO_CAPTURE``.
    """


@_spec(firstresult=True)
def psp_capture(account: Account, request: CaptureRequest) -> OperationResult:
    """Capture all or part of a reservation.

    :param request: ``psp_reference`` of the reservation, ``amount`` to capture now, ``final``
        (no further capture follows), ``idempotency_key``.
    :return: :class:`~payweave.hooks.models.OperationResult` (``succeeded`` or ``pending``);
        ``released`` is what a final partial capture let go.
    :raises NotSupported: a partial amount without ``partial_capture``, or a second capture
        without ``manual_multiple``.
    :raises InvalidRequest: more than the capturable amount, or the reservation is gone
        (voided, expired).
    :raises TemporarilyUnavailable: retried by the core with the same key.

    The core has already checked the amount against its own ledger (never more than reserved
    minus captured). Declared by: ``Feature.CAPTURE``.
    """


@_spec(firstresult=True)
def psp_void(account: Account, request: VoidRequest) -> OperationResult:
    """Release (cancel) all or part of an uncaptured reservation.

    :param request: ``psp_reference``, ``amount`` to release (None = everything still
        reserved), ``reason``, ``idempotency_key``.
    :return: :class:`~payweave.hooks.models.OperationResult` with the released amount.
    :raises NotSupported: any void without ``void``; a partial amount without ``void=partial``.
    :raises InvalidRequest: nothing left to release.

    No money moves, but the call is idempotent all the same. Declared by: ``Feature.VOID``.
    """


@_spec(firstresult=True)
def psp_refund(account: Account, request: RefundRequest) -> OperationResult:
    """Refund captured money, tied to the original payment and its cart (cart-dependent).

    :param request: ``psp_reference`` of the captured payment, ``amount``, refunded ``lines``,
        ``reason``, ``idempotency_key``.
    :return: :class:`~payweave.hooks.models.OperationResult`.
    :raises NotSupported: without ``refund``; a partial amount with ``refund=full_only``.
    :raises InvalidRequest: more than captured minus refunded.

    Declared by: ``Feature.REFUND`` / ``Feature.PARTIAL_REFUND``.
    """


@_spec(firstresult=True)
def psp_credit(account: Account, request: CreditRequest) -> OperationResult:
    """Pay money back without the original cart (advanced-import payments, follow-up credits,
    credit memos with lines the PSP never saw).

    :param request: ``amount``, the original ``psp_reference`` when there is one, ``customer``,
        ``reason``, ``idempotency_key``.

    :return: :class:`~payweave.hooks.models.OperationResult`.
    :raises NotSupported: without ``credit``.
    Declared by: ``Feature.CREDIT``.
    """


@_spec(firstresult=True)
def psp_update_cart(account: Account, request: CartUpdateRequest) -> ReservationResult:
    """Send a changed cart for a prepared (``stage='before_reservation'``) or reserved
    (``stage='while_reserved'``) payment. The new total may be lower or higher.

    :param request: ``psp_reference``, ``stage``, the complete new ``cart``, ``idempotency_key``.

    :return: the payment's :class:`~payweave.hooks.models.ReservationResult` after the change.
    :raises NotSupported: the stage is not in ``cart_update``.
    :raises PaymentDeclined: a higher amount could not be authorized.
    Declared by: ``Feature.CART_UPDATE_BEFORE_RESERVATION`` / ``Feature.CART_UPDATE_WHILE_RESERVED``.
    """


@_spec(firstresult=True)
def psp_create_payment_link(account: Account, request: PaymentLinkRequest) -> PaymentLinkResult:
    """Create a hosted payment page / link for the customer (Pay by Link, Start Payment).

    :param request: amount, cart, customer, ``success_url``, ``error_url``, ``cancel_url``
        (where the customer's browser lands), ``idempotency_key``.
    :return: :class:`~payweave.hooks.models.PaymentLinkResult` with the URL to send.

    The outcome must reach the core through a webhook (``link_completed`` with ``link_id`` and
    the payment's ``psp_reference``) or :func:`psp_get_payment`; the redirect alone proves nothing.
    Declared by: ``Feature.PAY_BY_LINK``.
    """


@_spec(firstresult=True)
def psp_charge_mandate(account: Account, request: MandateChargeRequest) -> ReservationResult:
    """Charge a customer's mandate without the customer present (recurring payments).

    :param request: ``mandate_reference``, ``customer``, ``amount``, optional ``cart``,
        ``idempotency_key`` (one charge per key, also when retried).

    :return: a ``captured`` :class:`~payweave.hooks.models.ReservationResult`.
    :raises PaymentDeclined: e.g. ``authentication_required``, insufficient funds.
    Declared by: ``Feature.RECURRING``.
    """


@_spec(firstresult=True)
def psp_renew_reservation(account: Account, request: RenewReservationRequest) -> RenewalResult:
    """Renew a reservation that is about to expire (reauthorize or extend).

    :param request: the expiring ``psp_reference``, the ``amount`` still reserved, the ``cart``,
        ``idempotency_key``.

    :return: :class:`~payweave.hooks.models.RenewalResult`: the new reservation and what became
        of the old one (``voided``, ``lapses`` or ``extended``).
    Declared by: ``Feature.RESERVATION_RENEWAL``.
    """


@_spec(firstresult=True)
def psp_get_payment(account: Account, psp_reference: str) -> PaymentLookup:
    """Read a payment's current state at the PSP (advanced import, reconciliation after a
    timeout, re-fetch when webhooks arrive out of order). The core also calls it before it
    applies a webhook that reports a change payweave did not make itself (a capture, release,
    expiry or refund made in the PSP's dashboard, an authorization of a waiting payment): the
    event moves the payment only as far as these books show. Read the PSP's current state, not a
    cache; the core calls it outside its locks and transactions and retries later when it raises
    :class:`TemporarilyUnavailable`.

    :param psp_reference: the PSP's id of the payment.
    :return: :class:`~payweave.hooks.models.PaymentLookup` with amounts and status; fill
        ``capturable`` (what is still reserved) when the PSP says it.

    :raises RemoteNotFound: no such payment.
    Declared by: ``Feature.PAYMENT_LOOKUP``.
    """


@_spec(firstresult=True)
def psp_parse_webhook(account: Account, request: WebhookRequest) -> list[PspEvent]:
    """Verify an incoming webhook and turn it into normalized events.

    :param request: raw ``body`` bytes and lower-cased ``headers`` exactly as received.
    :return: a list of :class:`~payweave.hooks.models.PspEvent` (``unknown`` type for events the
        plugin does not map; they are stored and acknowledged).
    :raises WebhookVerificationFailed: missing, malformed, wrong or stale signature. Verify
        *before* parsing, compare in constant time, and reject replays outside the tolerance.

    The core deduplicates on ``event_id`` and applies events in order per transaction, so a
    plugin need not remember what it has seen. The HTTP service calls this hook on its event
    loop, before it records the events (it answers the PSP once they are committed and applies
    them afterwards): do no I/O here (no HTTP call, no database, no sleeping) and keep it to
    verifying and parsing the bytes given; anything that needs the PSP's API belongs in the
    operation hooks. Declared by: ``Feature.WEBHOOKS``.
    """


@_spec(firstresult=True)
def psp_list_payouts(account: Account, since: datetime | None) -> list[Payout]:
    """List payouts (with their lines and fees) created after ``since`` (all when None),
    oldest first, for deposit reconciliation. Declared by: ``Feature.PAYOUTS``.
    """


# ============================================================================================
# ERP hooks
# ============================================================================================
@_spec(firstresult=True)
def erp_read_changes(account: Account, entity: SyncEntity, cursor: SyncCursor, page_size: int) -> Iterator[SyncPage]:
    """Stream the records of ``entity`` changed since ``cursor.since`` (and before
    ``cursor.until`` when set), page by page, oldest change first; newest change first when
    ``cursor.newest_first`` is set (mark such pages ``newest_first=True``; a plugin that cannot
    ignores the flag, and the core then reads the initial sync in two windows).
    **Required for ERP plugins.**

    :param entity: customers, invoices (with lines), payments, credit memos, or document events
        (sales documents carrying a payweave payment method, with their changes).
    :param cursor: where the previous run stopped; resume from ``cursor.page_token`` if set.
    :param page_size: the most records per ERP request the core wants (the plugin may use less).
    :return: an iterator of :class:`~payweave.hooks.models.SyncPage`. Yield lazily: the core
        commits each page, then stores ``page.next_cursor``, so a crash repeats a page and never
        skips one. Never hold the whole history in memory, nor a whole large ERP response: a
        plugin may yield one response in several pages (``requests=0`` after the first), each
        with a cursor that resumes at that response.
    :raises TemporarilyUnavailable: after the plugin's own bounded retries (429/503 honoured).
    """


@_spec(firstresult=True)
def erp_read_many_changes(account: Account, cursors: dict[SyncEntity, SyncCursor], page_size: int) -> Iterator[SyncPage]:
    """Optional: :func:`erp_read_changes` for several entities at once, in fewer ERP requests
    (a delta sync polls every entity; BC's ``$batch`` reads them in one request).

    :param cursors: the entities to read, each with its cursor (never ``newest_first``).
    :param page_size: as for :func:`erp_read_changes`.
    :return: an iterator of :class:`~payweave.hooks.models.SyncPage` whose ``entity`` says
        which stream each belongs to. Per entity, pages come in order and follow the rules of
        :func:`erp_read_changes` (the core commits each page with its ``next_cursor``); pages of
        different entities may interleave. Charge each request once, to one of its pages.
    :raises NotSupported: for entities it cannot read together; the core then calls
        :func:`erp_read_changes` for each entity.
    """


@_spec(firstresult=True)
def erp_read_document(account: Account, document_type: DocumentType, document_id: str) -> SalesDocument | None:
    """Read one sales document with its lines and payment-method code. **Required for ERP plugins.**

    :param document_type: sales order, sales invoice, sales return order or sales credit memo.
    :param document_id: the ERP's id of the document.
    :return: a :class:`~payweave.hooks.models.SalesDocument`, or None when it no longer exists.
    """


@_spec(firstresult=True)
def erp_read_invoice_pdf(account: Account, invoice_id: str) -> bytes:
    """Return the PDF bytes of a posted invoice. **Required for ERP plugins.**

    :param invoice_id: the ERP's id of the posted invoice.

    :raises RemoteNotFound: no such invoice.
    """


@_spec(firstresult=True)
def erp_list_ledger_accounts(account: Account) -> list[LedgerAccount]:
    """List the G/L accounts and bank accounts offered in account setup (payments account,
    deposits bank account, fee account). **Required for ERP plugins.**"""


@_spec(firstresult=True)
def erp_record_payment(account: Account, request: RecordPaymentRequest) -> ErpRecordResult:
    """Record a captured payment in the ERP as a customer payment applied to its invoice, and
    post it. **Required for ERP plugins.**

    Idempotent: ``request.document_number`` is unique per payment; when an entry with that
    number exists already (posted or not), finish it if needed and return it with
    ``already_existed=True`` instead of posting again.
    :raises TemporarilyUnavailable: retried by the core with the same request.
    """


@_spec(firstresult=True)
def erp_record_deposit(account: Account, request: RecordDepositRequest) -> ErpRecordResult:
    """Record a PSP payout as a deposit: payout gross from the clearing (payments) account to the
    bank account, fees to the fee account, so the bank statement matches the net.
    Idempotent by ``request.document_number`` exactly like :func:`erp_record_payment`.
    **Required for ERP plugins.**"""


@_spec(firstresult=True)
def erp_ensure_subscriptions(account: Account, notification_url: str, client_state: str) -> datetime | None:
    """Optional: create or renew the ERP's change-notification subscriptions so they deliver to
    ``notification_url``; return the earliest expiry (the core renews before it).

    :param notification_url: where the ERP must deliver notifications (payweave's endpoint).
    :param client_state: an opaque secret the ERP echoes in every notification.
    """


@_spec(firstresult=True)
def erp_parse_notification(account: Account, request: WebhookRequest, client_state: str) -> list[SyncEntity]:
    """Optional: verify an ERP change notification and say which entities to sync now.

    :param request: the raw notification (body bytes and headers) as received. The core answers
        the ERP's validation handshake itself; the plugin only sees notifications.
    :param client_state: the secret the core passed to :func:`erp_ensure_subscriptions`; every
        item of the notification must carry it (compare in constant time).
    :return: the entities to delta-sync now (each once); an empty list when the notification
        concerns nothing the plugin syncs.

    :raises WebhookVerificationFailed: wrong ``clientState`` or malformed body.
    """


@_spec(firstresult=True)
def erp_list_companies(account: Account) -> list[ErpCompany]:
    """Optional: list the companies the account's credentials can reach, so ``payweave connect``
    can offer them (one connection syncs one company).

    :return: a list of :class:`~payweave.hooks.models.ErpCompany`.
    """


# ============================================================================================
# Requirements derived from the specs (used by the plugin manager and the conformance suite)
# ============================================================================================
#: For each declared PSP feature, the hooks a plugin must implement.
FEATURE_HOOKS: dict[Feature, tuple[str, ...]] = {
    Feature.RESERVE: ("psp_reserve",),
    Feature.AUTO_CAPTURE: ("psp_reserve",),
    Feature.CAPTURE: ("psp_capture",),
    Feature.PARTIAL_CAPTURE: ("psp_capture",),
    Feature.MULTIPLE_CAPTURES: ("psp_capture",),
    Feature.VOID: ("psp_void",),
    Feature.PARTIAL_VOID: ("psp_void",),
    Feature.REFUND: ("psp_refund",),
    Feature.PARTIAL_REFUND: ("psp_refund",),
    Feature.CREDIT: ("psp_credit",),
    Feature.CART_UPDATE_BEFORE_RESERVATION: ("psp_update_cart",),
    Feature.CART_UPDATE_WHILE_RESERVED: ("psp_update_cart",),
    Feature.RECURRING: ("psp_charge_mandate",),
    Feature.RESERVATION_RENEWAL: ("psp_renew_reservation",),
    Feature.PAY_BY_LINK: ("psp_create_payment_link",),
    Feature.NO_CART: ("psp_reserve",),
    Feature.WEBHOOKS: ("psp_parse_webhook",),
    Feature.PAYOUTS: ("psp_list_payouts",),
    Feature.PAYMENT_LOOKUP: ("psp_get_payment",),
}
assert set(FEATURE_HOOKS) == set(Feature), "every Feature needs its hooks named"

PSP_REQUIRED_HOOKS: tuple[str, ...] = ("payweave_plugin_info", "psp_capabilities")
ERP_REQUIRED_HOOKS: tuple[str, ...] = (
    "payweave_plugin_info",
    "erp_read_changes",
    "erp_read_document",
    "erp_read_invoice_pdf",
    "erp_list_ledger_accounts",
    "erp_record_payment",
    "erp_record_deposit",
)
PSP_HOOK_PREFIX = "psp_"
ERP_HOOK_PREFIX = "erp_"
