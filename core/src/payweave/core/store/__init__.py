"""The state store: SQLAlchemy models, the engine/session factory and Alembic migrations."""
from .db import Store
from .models import (
    Base,
    DocumentRow,
    HistoryRow,
    JobRow,
    OperationRow,
    PaymentMethodRow,
    ProcessedEventRow,
    TransactionRow,
)

__all__ = [
    "Base",
    "DocumentRow",
    "HistoryRow",
    "JobRow",
    "OperationRow",
    "PaymentMethodRow",
    "ProcessedEventRow",
    "Store",
    "TransactionRow",
]
