"""Start Payment / pay by link: a hosted payment page for a sales document.

Creating a link prepares the document's payment (engine), then calls the PSP through the
exactly-once protocol of :mod:`payweave.core.engine.external`. The PSP is given payweave's own
three redirect URLs (``<public_base_url>/pay/<link>/success|error|cancel``): when the customer
lands there, payweave records how they came back and sends them on to the payment method's
Success / Error / Cancel URL. The redirect never decides the payment's status: the PSP's word
does (its webhook, or a lookup of the payment when the PSP offers one).
"""
from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.orm import Session

from payweave.core.errors import CoreError, IllegalTransition, OptionDisabled
from payweave.core.store import TransactionRow
from payweave.core.store.service_models import PaymentLinkRow, ServiceOperationRow
from payweave.hooks.capabilities import Feature
from payweave.hooks.errors import PayweaveError
from payweave.hooks.models import (
    Account,
    Cart,
    Customer,
    EventType,
    PaymentLinkRequest,
    PaymentLinkResult,
    PaymentStatus,
    PspEvent,
    SalesDocument,
)
from payweave.hooks.money import DecimalStr, Money, from_minor_units

from . import rules
from .external import ExternalCalls
from .psp_events import PspEvents, add_history
from .service import PaymentEngine
from .statemachine import TxStatus

Outcome = Literal["success", "error", "cancel"]


class PaymentLinkNotFound(CoreError):
    code = "payment_link_not_found"
    http_status = 404


class PaymentLinkView(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    transaction_id: str
    transaction_status: TxStatus
    status: str
    url: str | None
    psp: str
    psp_account: str
    psp_link_id: str | None
    psp_reference: str | None
    payment_method_code: str
    amount: DecimalStr
    currency: str
    expires_at: datetime | None
    returned_via: str | None
    returned_at: datetime | None
    created_at: datetime


class PaymentLinks(ExternalCalls):
    kind = "payment_link"
    request_model = PaymentLinkRequest

    def __init__(self, engine: PaymentEngine, events: PspEvents | None = None, *, public_base_url: str | None = None) -> None:
        super().__init__(engine, events)
        self.public_base_url = (public_base_url or engine.settings.service.public_base_url).rstrip("/")

    # ---- PSP call ---------------------------------------------------------------------------------
    def invoke(self, account: Account, request: PaymentLinkRequest) -> PaymentLinkResult:
        return self.engine.plugins.psp(account.plugin).create_payment_link(account, request)

    def on_success(self, s: Session, op: ServiceOperationRow, tx: TransactionRow, result: PaymentLinkResult) -> None:
        now = self.engine.clock.now()
        link = s.scalars(select(PaymentLinkRow).where(PaymentLinkRow.operation_id == op.id)).one()
        link.status = "open"
        link.url = result.url
        link.psp_link_id = result.link_id
        link.psp_reference = result.psp_reference
        link.expires_at = result.expires_at
        link.updated_at = now
        before = tx.status
        if tx.status == TxStatus.PREPARED.value:
            tx.status = TxStatus.PENDING.value
        if result.psp_reference and not tx.psp_reference:
            tx.psp_reference = result.psp_reference
        tx.updated_at = now
        add_history(
            s, tx, "payment_link_created", actor=op.actor, trigger="manual", now=now, from_status=before,
            amount_minor=tx.amount_minor, idempotency_key=op.idempotency_key,
            message=f"Payment link {result.link_id} created; the payment waits for the customer"
            + (f" (valid until {result.expires_at.isoformat()})." if result.expires_at else "."),
        )

    def on_failure(self, s: Session, op: ServiceOperationRow, tx: TransactionRow, exc: PayweaveError) -> None:
        link = s.scalars(select(PaymentLinkRow).where(PaymentLinkRow.operation_id == op.id)).one()
        link.status = "failed"
        link.updated_at = self.engine.clock.now()

    # ---- API --------------------------------------------------------------------------------------
    def create(
        self,
        document: SalesDocument,
        *,
        request_id: str | None = None,
        actor: str = "api",
        expires_at: datetime | None = None,
    ) -> PaymentLinkView:
        """Create (or return the open) payment link for a sales order or invoice."""
        company = document.company_id
        request_id = request_id or f"link:{document.document_type.value}:{document.document_id}:{uuid.uuid4()}"
        with self.store.transaction() as s:
            existing = self.by_request(s, company, request_id)
        if existing is not None:
            self.settle(existing)
            return self._view_by_op(company, existing.id)
        rules.require_direction(document, rules.Direction.CAPTURE)
        self.engine.check_document(document)  # payweave payment method + the document rules
        setup = self.engine.get_payment_method(company, document.payment_method_code or "")
        if not setup.start_payment:
            raise OptionDisabled(
                f"Payment method {setup.code} does not offer payment links: switch on 'Start Payment' and set its "
                f"Success, Error and Cancel URLs.",
                details={"setting": "start_payment", "payment_method": setup.code},
            )
        psp = self.engine._psp_name(setup.psp, setup.psp_account)
        caps = self.engine.capabilities(setup.psp, setup.psp_account)
        caps.require(Feature.PAY_BY_LINK, psp=psp)
        caps.require(Feature.AUTO_CAPTURE if setup.auto_capture else Feature.RESERVE, psp=psp)
        if setup.without_cart:
            caps.require(Feature.NO_CART, psp=psp)
        caps.require_currency(document.currency, psp=psp)
        if expires_at is not None and expires_at <= self.engine.clock.now():
            raise IllegalTransition("The payment link would already be expired; choose a later expiry.",
                                    details={"expires_at": expires_at.isoformat()})

        current = self.engine.transaction_for_document(company, document.document_type, document.document_id)
        if current is not None and current.status is TxStatus.PENDING:
            open_link = self._open_link(company, current.id)
            if open_link is not None:
                return open_link
        tx_id = self.engine.prepare(document, actor=actor).id
        with self.locked(company, tx_id):
            with self.store.transaction() as s:
                again = self.by_request(s, company, request_id)
                if again is None:
                    tx = s.get(TransactionRow, tx_id)
                    assert tx is not None
                    if tx.status != TxStatus.PREPARED.value or tx.psp_reference:
                        raise IllegalTransition(
                            f"{rules.describe(document)} already has a payment ({tx.status.replace('_', ' ')}, transaction "
                            f"{tx.id}); a payment link cannot be created for it.",
                            details={"transaction_id": tx.id, "status": tx.status},
                        )
                    link_id = str(uuid.uuid4())
                    base = f"{self.public_base_url}/pay/{link_id}"
                    cart = Cart.model_validate(tx.cart) if (tx.cart and not tx.no_cart) else None

                    def build(key: str) -> PaymentLinkRequest:
                        return PaymentLinkRequest(
                            idempotency_key=key,
                            transaction_id=tx.id,
                            amount=Money(amount=from_minor_units(tx.amount_minor, tx.currency), currency=tx.currency),
                            cart=cart,
                            customer=Customer.model_validate(tx.customer) if tx.customer else None,
                            reference=tx.document_number,
                            success_url=f"{base}/success",
                            error_url=f"{base}/error",
                            cancel_url=f"{base}/cancel",
                            expires_at=expires_at,
                            capture=tx.auto_capture,
                        )

                    op = self.begin(s, tx, request_id=request_id, actor=actor, build=build)
                    now = self.engine.clock.now()
                    s.add(
                        PaymentLinkRow(
                            id=link_id, company_id=company, transaction_id=tx.id, operation_id=op.id, psp=tx.psp,
                            psp_account=tx.psp_account, payment_method_code=tx.payment_method_code, status="creating",
                            amount_minor=tx.amount_minor, currency=tx.currency, created_at=now, updated_at=now,
                        )
                    )
                    add_history(
                        s, tx, "payment_link_requested", actor=actor, trigger="manual", now=now, from_status=tx.status,
                        amount_minor=tx.amount_minor, idempotency_key=op.idempotency_key,
                        message=f"Payment link over {from_minor_units(tx.amount_minor, tx.currency)} {tx.currency} requested.",
                    )
                    op_id = op.id
            if again is not None:
                op_id = again.id
                self.settle(again)
            else:
                self.call(op_id)
        return self._view_by_op(company, op_id)

    def _open_link(self, company: str, tx_id: str) -> PaymentLinkView | None:
        with self.store.transaction() as s:
            link = s.scalars(
                select(PaymentLinkRow)
                .where(PaymentLinkRow.company_id == company, PaymentLinkRow.transaction_id == tx_id,
                       PaymentLinkRow.status.in_(("open", "creating")))
                .order_by(PaymentLinkRow.created_at.desc())
            ).first()
            op = s.get(ServiceOperationRow, link.operation_id) if link is not None else None
        if link is None or op is None:
            return None
        self.settle(op)
        return self._view_by_op(company, op.id)

    def get(self, company_id: str, link_id: str) -> PaymentLinkView:
        with self.store.transaction() as s:
            link = s.get(PaymentLinkRow, link_id)
            if link is None or link.company_id != company_id:
                raise PaymentLinkNotFound(f"There is no payment link {link_id} in this company.", details={"link_id": link_id})
            return self._view(s, link)

    def _view_by_op(self, company_id: str, op_id: int) -> PaymentLinkView:
        with self.store.transaction() as s:
            link = s.scalars(
                select(PaymentLinkRow).where(PaymentLinkRow.company_id == company_id, PaymentLinkRow.operation_id == op_id)
            ).one()
            return self._view(s, link)

    def _view(self, s: Session, link: PaymentLinkRow) -> PaymentLinkView:
        tx = s.get(TransactionRow, link.transaction_id)
        assert tx is not None
        return PaymentLinkView(
            id=link.id, transaction_id=link.transaction_id, transaction_status=TxStatus(tx.status), status=link.status,
            url=link.url, psp=link.psp, psp_account=link.psp_account, psp_link_id=link.psp_link_id,
            psp_reference=link.psp_reference or tx.psp_reference, payment_method_code=link.payment_method_code,
            amount=from_minor_units(link.amount_minor, link.currency), currency=link.currency, expires_at=link.expires_at,
            returned_via=link.returned_via, returned_at=link.returned_at, created_at=link.created_at,
        )

    # ---- the customer's browser comes back -------------------------------------------------------
    def customer_returned(self, link_id: str, outcome: Outcome) -> str:
        """Record how the customer came back and return the URL to send them on to.

        The status is never taken from the redirect (or its query string): when the customer
        reports success and the PSP offers a payment lookup, payweave asks the PSP; otherwise
        the payment waits for the PSP's webhook.
        """
        with self.store.transaction() as s:
            link = s.get(PaymentLinkRow, link_id)
            if link is None:
                raise PaymentLinkNotFound("This payment link is not known.", details={"link_id": link_id})
            tx = s.get(TransactionRow, link.transaction_id)
            assert tx is not None
            company, tx_id, psp, account_name = tx.company_id, tx.id, tx.psp, tx.psp_account
            reference = link.psp_reference or tx.psp_reference
            waiting = tx.status == TxStatus.PENDING.value
            setup = self.engine._setup(s, tx.company_id, tx.payment_method_code)
        if outcome == "success" and waiting and reference:
            self._ask_psp(psp, account_name, link_id, reference)
        with self.locked(company, tx_id):
            with self.store.transaction() as s:
                link = s.get(PaymentLinkRow, link_id)
                tx = s.get(TransactionRow, tx_id)
                assert link is not None and tx is not None
                now = self.engine.clock.now()
                link.returned_via = outcome
                link.returned_at = now
                link.updated_at = now
                add_history(
                    s, tx, "customer_returned", actor="customer", trigger="redirect", now=now, from_status=tx.status,
                    message=f"The customer came back through the {outcome} URL of payment link {link_id}; the payment is "
                    f"{tx.status.replace('_', ' ')} (the PSP's confirmation decides, not the redirect).",
                )
                status = tx.status
        if setup is None:
            raise OptionDisabled("The payment method of this payment link is no longer set up.")
        target = {"success": setup.success_url, "error": setup.error_url, "cancel": setup.cancel_url}[outcome]
        if status == TxStatus.FAILED.value and setup.error_url:
            target = setup.error_url
        if not target:
            raise OptionDisabled(f"Payment method {setup.code} has no {outcome.capitalize()} URL.",
                                 details={"setting": f"{outcome}_url"})
        return _with_params(target, payweave_transaction=tx_id, payweave_status=status)

    def _ask_psp(self, psp: str, account_name: str, link_id: str, reference: str) -> None:
        caps = self.engine.capabilities(psp, account_name)
        if not caps.declares(Feature.PAYMENT_LOOKUP):
            return
        try:
            lookup = self.engine.plugins.psp(psp).get_payment(self.engine.account(psp, account_name), reference)
        except PayweaveError as exc:  # the webhook will tell; the customer is not kept waiting
            self.log.info("link.lookup_failed", code=exc.code)
            return
        if lookup.status not in (PaymentStatus.RESERVED, PaymentStatus.CAPTURED, PaymentStatus.PARTLY_CAPTURED):
            return
        captured = lookup.captured.amount > Decimal(0)
        now = self.engine.clock.now()
        event = PspEvent(
            event_id=f"lookup:{link_id}:{lookup.status.value}",
            type=EventType.CAPTURED if captured else EventType.AUTHORIZED,
            raw_type=f"lookup:{lookup.status.value}",
            occurred_at=now,
            psp_reference=reference,
            amount=lookup.captured if captured else lookup.amount,
            total_captured=lookup.captured if captured else None,
        )
        self.events.record(psp, account_name, event, received_at=now)


def _with_params(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query += list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


__all__ = ["Outcome", "PaymentLinkNotFound", "PaymentLinkView", "PaymentLinks"]
