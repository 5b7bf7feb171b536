"""The payment engine: payment-method setup, document rules, carts, the transaction state
machine and the :class:`PaymentEngine` facade (see :mod:`payweave.core.engine.service`)."""
from .service import AdvancedImportRequest, OpStatus, PaymentEngine, Trigger
from .setup import CaptureTiming, PaymentMethodSetup, RefundTiming
from .statemachine import Ledger, OpKind, TxStatus
from .views import Amounts, EventAction, EventResult, HistoryEntry, OperationView, TransactionView

__all__ = [
    "AdvancedImportRequest",
    "Amounts",
    "CaptureTiming",
    "EventAction",
    "EventResult",
    "HistoryEntry",
    "Ledger",
    "OpKind",
    "OpStatus",
    "OperationView",
    "PaymentEngine",
    "PaymentMethodSetup",
    "RefundTiming",
    "TransactionView",
    "Trigger",
    "TxStatus",
]
