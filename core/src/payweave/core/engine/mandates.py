"""Recurring payments: customer mandates and charges without the customer present.

A mandate is the PSP's saved permission to charge a customer (``mandate_reference``), kept
per payment method (which must have 'Recurring Payment' switched on and a PSP that declares
``recurring``). Charging a mandate for a sales document prepares the document's payment
(engine) and calls ``psp_charge_mandate`` through the exactly-once protocol of
:mod:`payweave.core.engine.external`: one charge per request, also when the request is
repeated after a timeout.
"""
from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from payweave.core.errors import CoreError, IllegalTransition, OptionDisabled
from payweave.core.store import TransactionRow
from payweave.core.store.service_models import MandateRow, ServiceOperationRow
from payweave.hooks.capabilities import Feature
from payweave.hooks.errors import PayweaveError
from payweave.hooks.models import (
    Account,
    Cart,
    Customer,
    MandateChargeRequest,
    PaymentStatus,
    ReservationResult,
    SalesDocument,
)
from payweave.hooks.money import Money, from_minor_units

from . import rules
from .external import ExternalCalls
from .psp_events import add_history, ledger_of, store_ledger
from .statemachine import Ledger, Phase, TxStatus
from .views import TransactionView


class MandateNotFound(CoreError):
    code = "mandate_not_found"
    http_status = 404


class MandateRevoked(CoreError):
    code = "mandate_revoked"
    http_status = 409


class MandateMismatch(CoreError):
    """The document does not fit the mandate (another customer or payment method)."""

    code = "mandate_mismatch"
    http_status = 422


class MandateConflict(CoreError):
    code = "mandate_conflict"
    http_status = 409


class MandateRegistration(BaseModel):
    """A mandate the PSP holds for a customer, registered for a payweave payment method."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    payment_method_code: str = Field(min_length=1, max_length=20)
    customer: Customer
    mandate_reference: str = Field(min_length=1, max_length=200, description="The PSP's id of the mandate.")
    description: str = Field("", max_length=200)


class MandateView(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    payment_method_code: str
    customer: Customer
    mandate_reference: str
    description: str
    status: str
    created_at: datetime
    updated_at: datetime
    revoked_at: datetime | None


def _view(row: MandateRow) -> MandateView:
    return MandateView(
        id=row.id, payment_method_code=row.payment_method_code, customer=Customer.model_validate(row.customer),
        mandate_reference=row.mandate_reference, description=row.description, status=row.status,
        created_at=row.created_at, updated_at=row.updated_at, revoked_at=row.revoked_at,
    )


class Mandates(ExternalCalls):
    kind = "mandate_charge"
    request_model = MandateChargeRequest

    # ---- PSP call ---------------------------------------------------------------------------------
    def invoke(self, account: Account, request: MandateChargeRequest) -> ReservationResult:
        return self.engine.plugins.psp(account.plugin).charge_mandate(account, request)

    def on_success(self, s: Session, op: ServiceOperationRow, tx: TransactionRow, result: ReservationResult) -> None:
        now = self.engine.clock.now()
        before = tx.status
        cur = tx.currency
        if result.amount.currency != cur or result.captured.currency != cur:
            raise IllegalTransition(f"The PSP answered the mandate charge in {result.amount.currency}, not {cur}.")
        amount, captured = result.amount.minor_units, result.captured.minor_units
        tx.psp_reference = result.psp_reference
        if result.status is PaymentStatus.PENDING:
            tx.status = TxStatus.PENDING.value
            tx.updated_at = now
        else:
            store_ledger(tx, Ledger(cur, authorized=amount, captured=captured), Phase.ACTIVE, now)
            if ledger_of(tx).open > 0:
                validity = self.engine.capabilities(tx.psp, tx.psp_account).reservation_validity
                tx.expires_at = result.expires_at or ((now + validity) if validity else None)
                self.engine._schedule_expiry_jobs(s, tx, self.engine._setup(s, tx.company_id, tx.payment_method_code))
        add_history(
            s, tx, "mandate_charged", actor=op.actor, trigger="recurring", now=now, from_status=before,
            amount_minor=captured or amount, idempotency_key=op.idempotency_key,
            message=f"Mandate {op.context.get('mandate_reference')} charged: {result.status.value}, "
            f"{result.captured} captured (reference {result.psp_reference}).",
        )

    def on_failure(self, s: Session, op: ServiceOperationRow, tx: TransactionRow, exc: PayweaveError) -> None:
        if tx.status == TxStatus.PREPARED.value:
            tx.status = TxStatus.FAILED.value
            tx.updated_at = self.engine.clock.now()

    # ---- mandates ---------------------------------------------------------------------------------
    def register(self, company_id: str, registration: MandateRegistration, *, actor: str = "api") -> MandateView:
        code = registration.payment_method_code.strip().upper()
        setup = self.engine.get_payment_method(company_id, code)
        if not setup.recurring:
            raise OptionDisabled(
                f"Payment method {setup.code} does not take recurring payments: switch on 'Recurring Payment'.",
                details={"setting": "recurring", "payment_method": setup.code},
            )
        self.engine.capabilities(setup.psp, setup.psp_account).require(
            Feature.RECURRING, psp=self.engine._psp_name(setup.psp, setup.psp_account)
        )
        now = self.engine.clock.now()
        with self.store.transaction() as s:
            existing = s.scalars(
                select(MandateRow).where(
                    MandateRow.company_id == company_id, MandateRow.payment_method_code == code,
                    MandateRow.mandate_reference == registration.mandate_reference,
                )
            ).first()
            if existing is not None:
                if existing.customer_id != registration.customer.customer_id:
                    raise MandateConflict(
                        f"Mandate {registration.mandate_reference} is registered for another customer.",
                        details={"mandate_reference": registration.mandate_reference},
                    )
                if existing.status != "active":
                    raise MandateRevoked(
                        f"Mandate {registration.mandate_reference} was revoked; register the new mandate the PSP gave.",
                        details={"mandate_id": existing.id},
                    )
                return _view(existing)
            row = MandateRow(
                id=str(uuid.uuid4()), company_id=company_id, payment_method_code=code,
                customer_id=registration.customer.customer_id, customer=registration.customer.model_dump(mode="json"),
                mandate_reference=registration.mandate_reference, description=registration.description,
                status="active", created_at=now, updated_at=now,
            )
            try:
                with s.begin_nested():
                    s.add(row)
                    s.flush()
            except IntegrityError:
                raise MandateConflict("The same mandate is being registered by another request; try again.") from None
            self.log.info("mandate.registered", company=company_id, payment_method=code, actor=actor)
            return _view(row)

    def list(self, company_id: str, *, customer_id: str | None = None, status: str | None = None) -> list[MandateView]:
        query = select(MandateRow).where(MandateRow.company_id == company_id)
        if customer_id is not None:
            query = query.where(MandateRow.customer_id == customer_id)
        if status is not None:
            query = query.where(MandateRow.status == status)
        with self.store.transaction() as s:
            return [_view(r) for r in s.scalars(query.order_by(MandateRow.created_at, MandateRow.id)).all()]

    def _row(self, s: Session, company_id: str, mandate_id: str) -> MandateRow:
        row = s.get(MandateRow, mandate_id)
        if row is None or row.company_id != company_id:
            raise MandateNotFound(f"There is no mandate {mandate_id} in this company.", details={"mandate_id": mandate_id})
        return row

    def get(self, company_id: str, mandate_id: str) -> MandateView:
        with self.store.transaction() as s:
            return _view(self._row(s, company_id, mandate_id))

    def revoke(self, company_id: str, mandate_id: str, *, actor: str = "api") -> MandateView:
        now = self.engine.clock.now()
        with self.store.transaction() as s:
            row = self._row(s, company_id, mandate_id)
            if row.status != "revoked":
                row.status = "revoked"
                row.revoked_at = now
                row.updated_at = now
            return _view(row)

    # ---- charges ----------------------------------------------------------------------------------
    def charge(
        self, company_id: str, mandate_id: str, document: SalesDocument, *, request_id: str | None = None, actor: str = "api"
    ) -> TransactionView:
        """Charge the mandate for ``document`` (a sales order or invoice of the mandate's customer)."""
        mandate = self.get(company_id, mandate_id)
        request_id = request_id or f"mandate:{mandate_id}:{document.document_type.value}:{document.document_id}"
        with self.store.transaction() as s:
            existing = self.by_request(s, company_id, request_id)
        if existing is not None:
            self.settle(existing)
            return self.view(company_id, existing.transaction_id)
        if mandate.status != "active":
            raise MandateRevoked(f"Mandate {mandate.mandate_reference} was revoked and cannot be charged.",
                                 details={"mandate_id": mandate_id})
        code = (document.payment_method_code or "").strip().upper()
        if code != mandate.payment_method_code:
            raise MandateMismatch(
                f"{rules.describe(document)} uses payment method {code or '(none)'}, but the mandate belongs to payment "
                f"method {mandate.payment_method_code}.",
                details={"payment_method": code, "mandate_payment_method": mandate.payment_method_code},
            )
        if document.customer.customer_id != mandate.customer.customer_id:
            raise MandateMismatch(
                f"{rules.describe(document)} is for customer {document.customer.number or document.customer.customer_id}, "
                f"but the mandate is customer {mandate.customer.number or mandate.customer.customer_id}'s.",
                details={"customer_id": document.customer.customer_id},
            )
        rules.require_direction(document, rules.Direction.CAPTURE)
        self.engine.check_document(document)
        setup = self.engine.get_payment_method(company_id, code)
        if not setup.recurring:
            raise OptionDisabled(
                f"Payment method {setup.code} does not take recurring payments: switch on 'Recurring Payment'.",
                details={"setting": "recurring", "payment_method": setup.code},
            )
        psp = self.engine._psp_name(setup.psp, setup.psp_account)
        caps = self.engine.capabilities(setup.psp, setup.psp_account)
        caps.require(Feature.RECURRING, psp=psp)
        caps.require_currency(document.currency, psp=psp)
        tx_id = self.engine.prepare(document, actor=actor).id
        with self.locked(company_id, tx_id):
            with self.store.transaction() as s:
                again = self.by_request(s, company_id, request_id)
                if again is None:
                    tx = s.get(TransactionRow, tx_id)
                    assert tx is not None
                    if tx.status != TxStatus.PREPARED.value or tx.psp_reference:
                        raise IllegalTransition(
                            f"{rules.describe(document)} already has a payment ({tx.status.replace('_', ' ')}, transaction "
                            f"{tx.id}); the mandate was not charged.",
                            details={"transaction_id": tx.id, "status": tx.status},
                        )
                    cart = Cart.model_validate(tx.cart) if (tx.cart and not tx.no_cart) else None

                    def build(key: str) -> MandateChargeRequest:
                        return MandateChargeRequest(
                            idempotency_key=key, transaction_id=tx.id, mandate_reference=mandate.mandate_reference,
                            customer=mandate.customer,
                            amount=Money(amount=from_minor_units(tx.amount_minor, tx.currency), currency=tx.currency),
                            cart=cart, reference=tx.document_number,
                        )

                    op = self.begin(s, tx, request_id=request_id, actor=actor, build=build,
                                    context={"mandate_id": mandate_id, "mandate_reference": mandate.mandate_reference})
                    add_history(
                        s, tx, "mandate_charge_requested", actor=actor, trigger="recurring", now=self.engine.clock.now(),
                        from_status=tx.status, amount_minor=tx.amount_minor, idempotency_key=op.idempotency_key,
                        message=f"Charge of {from_minor_units(tx.amount_minor, tx.currency)} {tx.currency} on mandate "
                        f"{mandate.mandate_reference} requested.",
                    )
                    op_id = op.id
            if again is not None:
                self.settle(again)
            else:
                self.call(op_id)
        return self.view(company_id, tx_id)


__all__ = [
    "MandateConflict",
    "MandateMismatch",
    "MandateNotFound",
    "MandateRegistration",
    "MandateRevoked",
    "MandateView",
    "Mandates",
]
