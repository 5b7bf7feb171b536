"""The BC-facing API, version 1: what a Business Central extension calls.

Every route needs an API key (bound to one company) and works only inside that company; every
POST takes an ``Idempotency-Key``. Refusals are RFC 9457 problem documents with the engine's
stable code and sentence.
"""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from payweave.core.engine import EventResult, HistoryEntry, PaymentMethodSetup, TransactionView, TxStatus
from payweave.core.engine.links import PaymentLinkView
from payweave.core.engine.mandates import MandateRegistration, MandateView
from payweave.core.engine.psp_events import PspEventView
from payweave.core.engine.service import AdvancedImportRequest
from payweave.core.sync.views import AccountSetupView
from payweave.hooks.errors import PayweaveError
from payweave.hooks.models import Cart, DocumentType, LedgerAccount

from .api_models import (
    AccountSetup,
    AccountSetupMissing,
    AmountIn,
    AuthorizeIn,
    Deleted,
    DocumentEventIn,
    DocumentIn,
    ImportIn,
    MandateChargeIn,
    MandateIn,
    Me,
    MoneyBackIn,
    PaymentLinkIn,
    PaymentMethodIn,
    PspAccountView,
)
from .problems import PROBLEM_JSON, Problem
from .security import Caller, Context, IdempotencyKey, run_operation

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"
TransactionId = Annotated[str, Path(pattern=_ID, max_length=100, description="A payweave transaction id.")]
LinkId = Annotated[str, Path(pattern=_ID, max_length=100, description="A payment link id.")]
MandateId = Annotated[str, Path(pattern=_ID, max_length=100, description="A mandate id.")]
DocumentId = Annotated[str, Path(pattern=_ID, max_length=100, description="The BC document id.")]
MethodCode = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,19}$", description="The BC payment-method code.")]


def _problem(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description, "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


#: The refusals any /v1 route may answer (RFC 9457 problem documents).
ERRORS: dict[int | str, dict[str, Any]] = {
    400: _problem("Malformed request (e.g. the body is not JSON)."),
    401: _problem("No valid API key."),
    402: _problem("The PSP declined the payment."),
    404: _problem("Not found in the API key's company."),
    409: _problem("Not possible in the current state, or the same request is still running."),
    413: _problem("The request body is too large."),
    422: _problem("Refused: invalid values, or a rule of the engine (the sentence says which)."),
    502: _problem("The PSP or its plugin failed."),
    503: _problem("The PSP did not answer; repeat the request (it is replayed, never done twice)."),
}

router = APIRouter(prefix="/v1", responses=ERRORS)


async def _sync(fn: Any, *args: Any, **kw: Any) -> Any:
    return await run_in_threadpool(fn, *args, **kw)


# ============================================================================== identity
@router.get("/me", response_model=Me, tags=["setup"], summary="The company of this API key")
async def me(caller: Caller) -> Me:
    return Me(company_id=caller.company_id, api_key_id=caller.key_id, api_key_name=caller.name)


# ============================================================================== setup
@router.get("/psp-accounts", response_model=list[PspAccountView], tags=["setup"],
            summary="PSP accounts available for payment methods, with their features")
async def psp_accounts(ctx: Context, caller: Caller) -> list[PspAccountView]:
    def work() -> list[PspAccountView]:
        found: list[PspAccountView] = []
        for record in ctx.plugins.active("psp"):
            names = ["default", *sorted(n for n in ctx.settings.accounts.get(record.name, {}) if n != "default")]
            for name in names:
                try:
                    caps = ctx.engine.capabilities(record.name, name)
                except PayweaveError:
                    continue  # an account that is not configured completely is not offered
                title = record.info.title if record.info else record.name
                found.append(PspAccountView(psp=record.name, account=name, title=title, features=caps.matrix()))
        return found

    return await _sync(work)


@router.get("/payment-methods", response_model=list[PaymentMethodSetup], tags=["setup"],
            summary="The company's payweave payment methods")
async def list_payment_methods(ctx: Context, caller: Caller) -> list[PaymentMethodSetup]:
    return await _sync(ctx.engine.list_payment_methods, caller.company_id)


@router.get("/payment-methods/{code}", response_model=PaymentMethodSetup, tags=["setup"], summary="One payment method")
async def get_payment_method(code: MethodCode, ctx: Context, caller: Caller) -> PaymentMethodSetup:
    return await _sync(ctx.engine.get_payment_method, caller.company_id, code)


@router.put("/payment-methods/{code}", response_model=PaymentMethodSetup, tags=["setup"],
            summary="Create or replace a payment method (validated against the PSP's capabilities)")
async def put_payment_method(code: MethodCode, body: PaymentMethodIn, ctx: Context, caller: Caller) -> PaymentMethodSetup:
    setup = body.for_company(caller.company_id, code)
    return await _sync(ctx.engine.save_payment_method, setup, actor=caller.actor)


@router.delete("/payment-methods/{code}", response_model=Deleted, tags=["setup"], summary="Delete a payment method")
async def delete_payment_method(code: MethodCode, ctx: Context, caller: Caller) -> Deleted:
    await _sync(ctx.engine.delete_payment_method, caller.company_id, code)
    return Deleted()


def _erp_sync(ctx: Any) -> Any:
    from payweave.core.sync.jobs import service_for_engine

    return service_for_engine(ctx.engine)


# The account setup has one home: the ERP sync service, which validates the choice against the
# ERP's own accounts and uses it for write-back (the dashboard and `payweave accounts` use it too).
@router.get("/account-setup", response_model=AccountSetupView, tags=["setup"],
            summary="Where payments, payouts and fees are recorded in BC",
            responses={404: {"model": Problem, "content": {PROBLEM_JSON: {}}}})
async def get_account_setup(ctx: Context, caller: Caller) -> AccountSetupView:
    def work() -> AccountSetupView:
        view = _erp_sync(ctx).account_setup(caller.company_id)
        if view is None:
            raise AccountSetupMissing(
                "No account setup yet: connect the ERP company, then choose the payments account, the deposits "
                "bank account and the fee account.",
            )
        return view

    return await _sync(work)


@router.get("/account-setup/choices", response_model=list[LedgerAccount], tags=["setup"],
            summary="The ERP's G/L accounts and bank accounts to choose from",
            responses={404: {"model": Problem, "content": {PROBLEM_JSON: {}}}})
async def account_setup_choices(ctx: Context, caller: Caller) -> list[LedgerAccount]:
    return await _sync(_erp_sync(ctx).ledger_accounts, caller.company_id)


@router.put("/account-setup", response_model=AccountSetupView, tags=["setup"],
            summary="Set the account setup (validated against the ERP's accounts)",
            responses={404: {"model": Problem, "content": {PROBLEM_JSON: {}}},
                       422: {"model": Problem, "content": {PROBLEM_JSON: {}}}})
async def put_account_setup(body: AccountSetup, ctx: Context, caller: Caller) -> AccountSetupView:
    return await _sync(
        lambda: _erp_sync(ctx).set_account_setup(
            caller.company_id, payments_account=body.payments_account, bank_account=body.bank_account,
            fee_account=body.fee_account, actor=caller.actor,
        )
    )


# ============================================================================== documents
@router.post("/document-events", response_model=EventResult, tags=["documents"],
             summary="Tell a document event: released, reopened, changed, posted, partly cancelled, deleted")
async def document_event(body: DocumentEventIn, request: Request, ctx: Context, caller: Caller,
                         idempotency_key: IdempotencyKey = None) -> Any:
    event = body.for_company(caller.company_id)
    return await run_operation(request, ctx, caller, idempotency_key, body,
                               lambda _rid: ctx.engine.handle_event(event, actor=caller.actor),
                               operation=f"document_{event.type.value}")


@router.post("/documents/check", response_model=Cart | None, tags=["documents"],
             summary="Check a document against the rules and return the cart the PSP would get")
async def check_document(body: DocumentIn, request: Request, ctx: Context, caller: Caller,
                         idempotency_key: IdempotencyKey = None) -> Any:
    document = body.for_company(caller.company_id)
    return await run_operation(request, ctx, caller, idempotency_key, body,
                               lambda _rid: ctx.engine.check_document(document), operation="check_document")


@router.post("/returns/{document_type}/{document_id}/pay-back", response_model=TransactionView, tags=["documents"],
             summary="Pay back a posted return order or credit memo now (manual refund timing)")
async def pay_back(document_type: DocumentType, document_id: DocumentId, request: Request, ctx: Context, caller: Caller,
                   idempotency_key: IdempotencyKey = None) -> Any:
    return await run_operation(
        request, ctx, caller, idempotency_key, {"document_type": document_type.value, "document_id": document_id},
        lambda _rid: ctx.engine.refund_document(caller.company_id, document_type, document_id, actor=caller.actor),
        operation="pay_back",
    )


# ============================================================================== payments
@router.post("/authorizations", response_model=TransactionView, tags=["payments"],
             summary="Prepare and authorize the payment of a sales order or invoice")
async def authorize(body: AuthorizeIn, request: Request, ctx: Context, caller: Caller,
                    idempotency_key: IdempotencyKey = None) -> Any:
    document = body.document.for_company(caller.company_id)
    return await run_operation(
        request, ctx, caller, idempotency_key, body,
        lambda rid: ctx.engine.authorize(document, payment_method_token=body.payment_method_token, actor=caller.actor,
                                         request_id=rid),
        operation="authorize",
    )


@router.post("/payment-links", response_model=PaymentLinkView, status_code=201, tags=["payments"],
             summary="Start Payment: create a payment link for a sales order or invoice")
async def create_payment_link(body: PaymentLinkIn, request: Request, ctx: Context, caller: Caller,
                              idempotency_key: IdempotencyKey = None) -> Any:
    document = body.document.for_company(caller.company_id)
    return await run_operation(
        request, ctx, caller, idempotency_key, body,
        lambda rid: ctx.links.create(document, request_id=rid, actor=caller.actor, expires_at=body.expires_at),
        operation="payment_link", status_code=201,
    )


@router.get("/payment-links/{link_id}", response_model=PaymentLinkView, tags=["payments"], summary="A payment link")
async def get_payment_link(link_id: LinkId, ctx: Context, caller: Caller) -> PaymentLinkView:
    return await _sync(ctx.links.get, caller.company_id, link_id)


@router.post("/imports", response_model=TransactionView, tags=["payments"],
             summary="Advanced import: attach a payment made elsewhere to a document (the PSP confirms it)")
async def import_payment(body: ImportIn, request: Request, ctx: Context, caller: Caller,
                         idempotency_key: IdempotencyKey = None) -> Any:
    document = body.document.for_company(caller.company_id)
    req = AdvancedImportRequest(document=document, psp_reference=body.psp_reference, amount=body.amount)
    return await run_operation(request, ctx, caller, idempotency_key, body,
                               lambda _rid: ctx.engine.import_payment(req, actor=caller.actor), operation="import")


# ============================================================================== transactions
@router.get("/transactions", response_model=list[TransactionView], tags=["transactions"],
            summary="The company's transactions, newest first (without operations and history)")
async def list_transactions(
    ctx: Context,
    caller: Caller,
    status: Annotated[TxStatus | None, Query()] = None,
    document_number: Annotated[str | None, Query(max_length=50, pattern=r"^[^\x00]*$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[TransactionView]:
    return await _sync(ctx.engine.list_transactions, caller.company_id, status=status, document_number=document_number,
                       limit=limit)


@router.get("/transactions/{transaction_id}", response_model=TransactionView, tags=["transactions"],
            summary="A transaction with its operations and history")
async def get_transaction(transaction_id: TransactionId, ctx: Context, caller: Caller) -> TransactionView:
    return await _sync(ctx.engine.get_transaction, caller.company_id, transaction_id)


@router.get("/transactions/{transaction_id}/history", response_model=list[HistoryEntry], tags=["transactions"],
            summary="The audit trail of a transaction")
async def transaction_history(transaction_id: TransactionId, ctx: Context, caller: Caller) -> list[HistoryEntry]:
    view = await _sync(ctx.engine.get_transaction, caller.company_id, transaction_id)
    return list(view.history)


@router.get("/transactions/{transaction_id}/psp-events", response_model=list[PspEventView], tags=["transactions"],
            summary="The PSP's notifications about a transaction and what each changed")
async def transaction_events(transaction_id: TransactionId, ctx: Context, caller: Caller) -> list[PspEventView]:
    await _sync(ctx.engine.get_transaction, caller.company_id, transaction_id, full=False)
    return await _sync(ctx.events.for_transaction, caller.company_id, transaction_id)


def _operation(name: str, summary: str, call: Any, model: type[AmountIn]) -> None:
    async def endpoint(transaction_id: TransactionId, body: model, request: Request, ctx: Context,  # type: ignore[valid-type]
                       caller: Caller, idempotency_key: IdempotencyKey = None) -> Any:
        def work(rid: str | None) -> TransactionView:
            kwargs: dict[str, Any] = {"actor": caller.actor, "request_id": rid}
            if name != "capture":
                kwargs["reason"] = body.reason
            return call(ctx.engine)(caller.company_id, transaction_id, body.amount, **kwargs)

        return await run_operation(request, ctx, caller, idempotency_key, body, work, operation=name)

    endpoint.__annotations__["body"] = model  # a real class: the annotation above is only a name here
    endpoint.__name__ = f"{name}_transaction"
    router.add_api_route(f"/transactions/{{transaction_id}}/{name}", endpoint, methods=["POST"],
                         response_model=TransactionView, tags=["transactions"], summary=summary)


_operation("capture", "Capture (default: everything still reserved)", lambda e: e.capture, AmountIn)
_operation("void", "Void the reservation (default: everything still reserved)", lambda e: e.void, AmountIn)
_operation("refund", "Refund captured money, cart-dependent (default: all not yet paid back)", lambda e: e.refund, MoneyBackIn)
_operation("credit", "Credit captured money, cart-independent (default: all not yet paid back)", lambda e: e.credit, MoneyBackIn)


# ============================================================================== mandates
@router.post("/mandates", response_model=MandateView, status_code=201, tags=["mandates"],
             summary="Register a customer's mandate for recurring payments")
async def register_mandate(body: MandateIn, request: Request, ctx: Context, caller: Caller,
                           idempotency_key: IdempotencyKey = None) -> Any:
    registration = MandateRegistration(**body.model_dump())
    return await run_operation(request, ctx, caller, idempotency_key, body,
                               lambda _rid: ctx.mandates.register(caller.company_id, registration, actor=caller.actor),
                               operation="mandate_register", status_code=201)


@router.get("/mandates", response_model=list[MandateView], tags=["mandates"], summary="The company's mandates")
async def list_mandates(
    ctx: Context,
    caller: Caller,
    customer_id: Annotated[str | None, Query(max_length=100, pattern=r"^[^\x00]*$")] = None,
    status: Annotated[str | None, Query(pattern=r"^(active|revoked)$")] = None,
) -> list[MandateView]:
    return await _sync(ctx.mandates.list, caller.company_id, customer_id=customer_id, status=status)


@router.get("/mandates/{mandate_id}", response_model=MandateView, tags=["mandates"], summary="A mandate")
async def get_mandate(mandate_id: MandateId, ctx: Context, caller: Caller) -> MandateView:
    return await _sync(ctx.mandates.get, caller.company_id, mandate_id)


@router.post("/mandates/{mandate_id}/revoke", response_model=MandateView, tags=["mandates"],
             summary="Revoke a mandate (no further charges)")
async def revoke_mandate(mandate_id: MandateId, request: Request, ctx: Context, caller: Caller,
                         idempotency_key: IdempotencyKey = None) -> Any:
    return await run_operation(request, ctx, caller, idempotency_key, {"mandate_id": mandate_id},
                               lambda _rid: ctx.mandates.revoke(caller.company_id, mandate_id, actor=caller.actor),
                               operation="mandate_revoke")


@router.post("/mandates/{mandate_id}/charges", response_model=TransactionView, status_code=201, tags=["mandates"],
             summary="Charge a mandate for a sales order or invoice (recurring payment)")
async def charge_mandate(mandate_id: MandateId, body: MandateChargeIn, request: Request, ctx: Context, caller: Caller,
                         idempotency_key: IdempotencyKey = None) -> Any:
    document = body.document.for_company(caller.company_id)
    return await run_operation(
        request, ctx, caller, idempotency_key, body,
        lambda rid: ctx.mandates.charge(caller.company_id, mandate_id, document, request_id=rid, actor=caller.actor),
        operation="mandate_charge", status_code=201,
    )


__all__ = ["ERRORS", "router"]
