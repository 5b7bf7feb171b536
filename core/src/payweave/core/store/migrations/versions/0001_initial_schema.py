"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op



revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('document_locks',
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('lock_key', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('company_id', 'lock_key', name=op.f('pk_document_locks'))
    )
    op.create_table('documents',
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('document_type', sa.String(length=30), nullable=False),
    sa.Column('document_id', sa.String(length=100), nullable=False),
    sa.Column('number', sa.String(length=50), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('payment_method_code', sa.String(length=20), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('transaction_id', sa.String(length=36), nullable=True),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('released_hash', sa.String(length=64), nullable=True),
    sa.Column('changed_since_release', sa.Boolean(), nullable=False),
    sa.Column('snapshot', sa.JSON(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('company_id', 'document_type', 'document_id', name=op.f('pk_documents'))
    )
    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.create_index('ix_documents_company_number', ['company_id', 'document_type', 'number'], unique=False)
        batch_op.create_index('ix_documents_company_transaction', ['company_id', 'transaction_id'], unique=False)

    op.create_table('jobs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('lease_owner', sa.String(length=200), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('last_error_code', sa.String(length=100), nullable=True),
    sa.Column('dedupe_key', sa.String(length=200), nullable=True),
    sa.Column('transaction_id', sa.String(length=36), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs')),
    sa.UniqueConstraint('company_id', 'dedupe_key', name=op.f('uq_jobs_company_id_dedupe_key'))
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_company_kind', ['company_id', 'kind'], unique=False)
        batch_op.create_index('ix_jobs_status_due', ['status', 'due_at'], unique=False)

    op.create_table('payment_methods',
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('code', sa.String(length=20), nullable=False),
    sa.Column('description', sa.String(length=200), nullable=False),
    sa.Column('psp', sa.String(length=100), nullable=False),
    sa.Column('psp_account', sa.String(length=100), nullable=False),
    sa.Column('capture_timing', sa.String(length=20), nullable=False),
    sa.Column('refund_timing', sa.String(length=20), nullable=False),
    sa.Column('options', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('company_id', 'code', name=op.f('pk_payment_methods'))
    )
    op.create_table('processed_events',
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('event_id', sa.String(length=200), nullable=False),
    sa.Column('event_type', sa.String(length=30), nullable=False),
    sa.Column('document_type', sa.String(length=30), nullable=False),
    sa.Column('document_id', sa.String(length=100), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('outcome', sa.JSON(), nullable=True),
    sa.Column('error_code', sa.String(length=100), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('error_details', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('company_id', 'event_id', name=op.f('pk_processed_events'))
    )
    op.create_table('transactions',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('document_type', sa.String(length=30), nullable=False),
    sa.Column('document_id', sa.String(length=100), nullable=False),
    sa.Column('document_number', sa.String(length=50), nullable=False),
    sa.Column('payment_method_code', sa.String(length=20), nullable=False),
    sa.Column('psp', sa.String(length=100), nullable=False),
    sa.Column('psp_account', sa.String(length=100), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('origin', sa.String(length=20), nullable=False),
    sa.Column('no_cart', sa.Boolean(), nullable=False),
    sa.Column('auto_capture', sa.Boolean(), nullable=False),
    sa.Column('psp_reference', sa.String(length=200), nullable=True),
    sa.Column('authorized_minor', sa.BigInteger(), nullable=False),
    sa.Column('captured_minor', sa.BigInteger(), nullable=False),
    sa.Column('voided_minor', sa.BigInteger(), nullable=False),
    sa.Column('refunded_minor', sa.BigInteger(), nullable=False),
    sa.Column('credited_minor', sa.BigInteger(), nullable=False),
    sa.Column('expired_minor', sa.BigInteger(), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('invoiced_minor', sa.BigInteger(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('customer', sa.JSON(), nullable=True),
    sa.Column('cart', sa.JSON(), nullable=True),
    sa.Column('cart_hash', sa.String(length=64), nullable=False),
    sa.Column('psp_cart_hash', sa.String(length=64), nullable=False),
    sa.Column('next_seq', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transactions')),
    sa.UniqueConstraint('company_id', 'psp', 'psp_account', 'psp_reference', name=op.f('uq_transactions_company_id_psp_psp_account_psp_reference'))
    )
    with op.batch_alter_table('transactions', schema=None) as batch_op:
        batch_op.create_index('ix_transactions_company_document', ['company_id', 'document_type', 'document_id'], unique=False)
        batch_op.create_index('ix_transactions_company_status', ['company_id', 'status'], unique=False)

    op.create_table('operations',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('transaction_id', sa.String(length=36), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('request_id', sa.String(length=200), nullable=False),
    sa.Column('idempotency_key', sa.String(length=255), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('trigger', sa.String(length=30), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('psp_reference', sa.String(length=200), nullable=True),
    sa.Column('operation_reference', sa.String(length=200), nullable=True),
    sa.Column('document_type', sa.String(length=30), nullable=True),
    sa.Column('document_id', sa.String(length=100), nullable=True),
    sa.Column('document_number', sa.String(length=50), nullable=True),
    sa.Column('request', sa.JSON(), nullable=False),
    sa.Column('context', sa.JSON(), nullable=False),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('error_code', sa.String(length=100), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('error_details', sa.JSON(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['transaction_id'], ['transactions.id'], name=op.f('fk_operations_transaction_id_transactions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_operations')),
    sa.UniqueConstraint('company_id', 'request_id', name=op.f('uq_operations_company_id_request_id')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_operations_idempotency_key'))
    )
    with op.batch_alter_table('operations', schema=None) as batch_op:
        batch_op.create_index('ix_operations_company_transaction', ['company_id', 'transaction_id'], unique=False)
        batch_op.create_index('ix_operations_status', ['status'], unique=False)

    op.create_table('transaction_history',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('transaction_id', sa.String(length=36), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('trigger', sa.String(length=30), nullable=False),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('from_status', sa.String(length=20), nullable=True),
    sa.Column('to_status', sa.String(length=20), nullable=True),
    sa.Column('amount_minor', sa.BigInteger(), nullable=True),
    sa.Column('operation_id', sa.BigInteger(), nullable=True),
    sa.Column('idempotency_key', sa.String(length=255), nullable=True),
    sa.Column('psp_reference', sa.String(length=200), nullable=True),
    sa.Column('operation_reference', sa.String(length=200), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['transaction_id'], ['transactions.id'], name=op.f('fk_transaction_history_transaction_id_transactions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transaction_history'))
    )
    with op.batch_alter_table('transaction_history', schema=None) as batch_op:
        batch_op.create_index('ix_history_company_transaction', ['company_id', 'transaction_id', 'id'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('transaction_history', schema=None) as batch_op:
        batch_op.drop_index('ix_history_company_transaction')

    op.drop_table('transaction_history')
    with op.batch_alter_table('operations', schema=None) as batch_op:
        batch_op.drop_index('ix_operations_status')
        batch_op.drop_index('ix_operations_company_transaction')

    op.drop_table('operations')
    with op.batch_alter_table('transactions', schema=None) as batch_op:
        batch_op.drop_index('ix_transactions_company_status')
        batch_op.drop_index('ix_transactions_company_document')

    op.drop_table('transactions')
    op.drop_table('processed_events')
    op.drop_table('payment_methods')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_status_due')
        batch_op.drop_index('ix_jobs_company_kind')

    op.drop_table('jobs')
    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.drop_index('ix_documents_company_transaction')
        batch_op.drop_index('ix_documents_company_number')

    op.drop_table('documents')
    op.drop_table('document_locks')

