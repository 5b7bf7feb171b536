"""PSP events are looked up by the PSP's reference only while ``unmatched`` (they arrived before
their payment had its reference): a partial index on those replaces the index of every event by
reference and status, which each recorded webhook and each applied event had to update (a
random page of it per event, in the webhook route's commit).

Revision ID: 0400
Revises: 0300
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0400'
down_revision = '0300'
branch_labels = None
depends_on = None

UNMATCHED = sa.text("status = 'unmatched'")


def upgrade() -> None:
    with op.batch_alter_table('psp_events', schema=None) as batch_op:
        batch_op.drop_index('ix_psp_events_reference')
        batch_op.create_index('ix_psp_events_unmatched', ['psp', 'psp_account', 'psp_reference'], unique=False,
                              sqlite_where=UNMATCHED, postgresql_where=UNMATCHED)


def downgrade() -> None:
    with op.batch_alter_table('psp_events', schema=None) as batch_op:
        batch_op.drop_index('ix_psp_events_unmatched', sqlite_where=UNMATCHED, postgresql_where=UNMATCHED)
        batch_op.create_index('ix_psp_events_reference', ['psp', 'psp_account', 'psp_reference', 'status'], unique=False)
