"""The core's typed errors: every refusal of the engine, the store and the job queue.

Each error subclasses :class:`payweave.hooks.errors.PayweaveError`, so it carries a stable
``code`` (clients such as the BC extension match on it), a sentence a Business Central user
understands, ``details`` (field names, amounts as strings) and the ``http_status`` the HTTP
service answers with. Codes are part of the public API: never rename one.
"""
from __future__ import annotations

from typing import Any

from payweave.hooks.errors import PayweaveError


class CoreError(PayweaveError):
    code = "core_error"
    http_status = 400


# ---- setup ----------------------------------------------------------------------------------
class PaymentMethodNotFound(CoreError):
    code = "payment_method_not_found"
    http_status = 404


class SetupOptionNotSupported(CoreError):
    """A payment-method option the PSP's capabilities cannot serve."""

    code = "setup_option_not_supported"
    http_status = 422


class SetupCombinationForbidden(CoreError):
    """Two payment-method settings that must not be combined (names both)."""

    code = "setup_combination_forbidden"
    http_status = 422


class SetupIncomplete(CoreError):
    """An option needs another setting that is missing (names both)."""

    code = "setup_incomplete"
    http_status = 422


# ---- documents ------------------------------------------------------------------------------
class DocumentNotOurs(CoreError):
    """The document carries no payweave payment method."""

    code = "document_not_payweave"
    http_status = 422


class UnsupportedDocumentFeature(CoreError):
    """The document uses a BC feature payweave does not support (names the field)."""

    code = "document_feature_unsupported"
    http_status = 422


class UnsupportedDocumentLine(CoreError):
    code = "document_line_unsupported"
    http_status = 422


class CartTotalMismatch(CoreError):
    """The cart built from the lines does not add up to the document total (both figures)."""

    code = "cart_total_mismatch"
    http_status = 422


class WrongDocumentDirection(CoreError):
    """A capture asked of a refund document or the other way round."""

    code = "wrong_document_direction"
    http_status = 422


class DocumentNotFound(CoreError):
    code = "document_not_found"
    http_status = 404


class ReleaseRequired(CoreError):
    """A sales order was changed after release (or never released) and is posted."""

    code = "release_required"
    http_status = 409


class OriginalPaymentNotFound(CoreError):
    """A return order / credit memo whose original payment payweave does not know."""

    code = "original_payment_not_found"
    http_status = 422


# ---- transactions ---------------------------------------------------------------------------
class TransactionNotFound(CoreError):
    code = "transaction_not_found"
    http_status = 404


class IllegalTransition(CoreError):
    """The operation is not possible in the transaction's current state."""

    code = "illegal_transition"
    http_status = 409


class AmountNotAvailable(CoreError):
    """The amount exceeds what can be captured / voided / refunded now (names both figures)."""

    code = "amount_not_available"
    http_status = 422


class OptionDisabled(CoreError):
    """The payment method's setup does not switch on what the operation needs."""

    code = "option_disabled"
    http_status = 422


class CartUpdateNotPossible(CoreError):
    code = "cart_update_not_possible"
    http_status = 409


class OperationOutcomeUnknown(CoreError):
    """An earlier PSP call's outcome is still unknown (PSP unreachable); it is replayed with its
    own idempotency key before anything else happens on the transaction."""

    code = "operation_outcome_unknown"
    http_status = 503
    retryable = True


class OperationParked(CoreError):
    """An earlier PSP call ended in a plugin contract violation; the transaction is blocked until
    the plugin is fixed (the call is replayed with the same key, so no money moves twice)."""

    code = "operation_parked"
    http_status = 502


class DocumentBusy(CoreError):
    """Another request holds the document too long."""

    code = "document_busy"
    http_status = 409
    retryable = True


class ImportRejected(CoreError):
    """An advanced import the PSP could not confirm (names the mismatch)."""

    code = "import_rejected"
    http_status = 422


# ---- jobs -----------------------------------------------------------------------------------
class JobNotFound(CoreError):
    code = "job_not_found"
    http_status = 404


class JobStateError(CoreError):
    code = "job_state_invalid"
    http_status = 409


class UnknownJobKind(CoreError):
    code = "job_kind_unknown"
    http_status = 422


def restore_error(code: str | None, message: str | None, details: dict[str, Any] | None = None) -> PayweaveError:
    """Rebuild a stored refusal (same code and sentence) to answer a repeated request."""
    from payweave.hooks import errors as hook_errors

    candidates: list[type[PayweaveError]] = []
    for module in (globals(), vars(hook_errors)):
        for value in module.values():
            if isinstance(value, type) and issubclass(value, PayweaveError):
                candidates.append(value)
    from payweave.core.plugins import PluginBug

    candidates.append(PluginBug)
    for cls in candidates:
        if cls.code == code:
            err = cls.__new__(cls)
            PayweaveError.__init__(err, message or code or "error", code=code, details=details)
            err.__dict__.setdefault("decline_code", (details or {}).get("decline_code"))
            err.__dict__.setdefault("retry_after", None)
            return err
    return PayweaveError(message or "error", code=code or "payweave_error", details=details)
