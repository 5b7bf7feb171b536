"""PSP events are recorded ``received`` by the webhook route and applied afterwards: a partial
index on the events not applied yet (the applier's queue), and an index finding a payment by
the PSP's reference alone (an event names no company).

Revision ID: 0300
Revises: 0100
Create Date: 2026-11-23
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0300'
down_revision = '0100'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('transactions', schema=None) as batch_op:
        batch_op.create_index('ix_transactions_psp_reference', ['psp', 'psp_account', 'psp_reference'], unique=False)
    with op.batch_alter_table('psp_events', schema=None) as batch_op:
        batch_op.create_index('ix_psp_events_received', ['id'], unique=False,
                              sqlite_where=sa.text("status = 'received'"), postgresql_where=sa.text("status = 'received'"))


def downgrade() -> None:
    with op.batch_alter_table('psp_events', schema=None) as batch_op:
        batch_op.drop_index('ix_psp_events_received', sqlite_where=sa.text("status = 'received'"),
                            postgresql_where=sa.text("status = 'received'"))
    with op.batch_alter_table('transactions', schema=None) as batch_op:
        batch_op.drop_index('ix_transactions_psp_reference')
