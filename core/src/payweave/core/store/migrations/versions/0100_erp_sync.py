"""ERP sync: connections, cursors, synced customers/invoices/lines/credit memos/payments,
invoice PDFs, account setup, write-backs, the document-event inbox and sync issues
(payweave.core.sync.models).

Revision ID: 0100
Revises: 0200
Create Date: 2026-11-22
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0100'
down_revision = '0200'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('erp_account_setups',
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('payments_account_id', sa.String(length=100), nullable=False),
    sa.Column('payments_account_number', sa.String(length=50), nullable=False),
    sa.Column('payments_account_name', sa.String(length=200), nullable=False),
    sa.Column('bank_account_id', sa.String(length=100), nullable=False),
    sa.Column('bank_account_number', sa.String(length=50), nullable=False),
    sa.Column('bank_account_name', sa.String(length=200), nullable=False),
    sa.Column('fee_account_id', sa.String(length=100), nullable=False),
    sa.Column('fee_account_number', sa.String(length=50), nullable=False),
    sa.Column('fee_account_name', sa.String(length=200), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('company_id', name=op.f('pk_erp_account_setups'))
    )
    op.create_table('erp_connections',
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('plugin', sa.String(length=100), nullable=False),
    sa.Column('account_name', sa.String(length=100), nullable=False),
    sa.Column('account_overrides', sa.JSON(), nullable=False),
    sa.Column('erp_company_id', sa.String(length=100), nullable=False),
    sa.Column('erp_company_name', sa.String(length=200), nullable=False),
    sa.Column('default_currency', sa.String(length=3), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('status_reason', sa.Text(), nullable=True),
    sa.Column('phase', sa.String(length=20), nullable=False),
    sa.Column('initial_started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('recent_boundary', sa.DateTime(timezone=True), nullable=True),
    sa.Column('connected_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_sync_started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_sync_finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_sync_outcome', sa.String(length=20), nullable=True),
    sa.Column('last_error_code', sa.String(length=100), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('client_state', sa.String(length=100), nullable=False),
    sa.Column('notification_url', sa.Text(), nullable=True),
    sa.Column('subscriptions_expire_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('subscriptions_error', sa.Text(), nullable=True),
    sa.Column('lease_owner', sa.String(length=200), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('progress', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('company_id', name=op.f('pk_erp_connections'))
    )
    op.create_table('erp_credit_memos',
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('credit_memo_id', sa.String(length=100), nullable=False),
    sa.Column('number', sa.String(length=50), nullable=False),
    sa.Column('customer_id', sa.String(length=100), nullable=False),
    sa.Column('invoice_id', sa.String(length=100), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('erp_status', sa.String(length=20), nullable=False),
    sa.Column('total_incl_minor', sa.BigInteger(), nullable=False),
    sa.Column('credit_memo_date', sa.Date(), nullable=False),
    sa.Column('origin', sa.String(length=10), nullable=False),
    sa.Column('erp_last_modified', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('company_id', 'credit_memo_id', name=op.f('pk_erp_credit_memos'))
    )
    op.create_index('ix_erp_credit_memos_company_invoice', 'erp_credit_memos', ['company_id', 'invoice_id'], unique=False)
    op.create_table('erp_customers',
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('customer_id', sa.String(length=100), nullable=False),
    sa.Column('number', sa.String(length=50), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('email', sa.String(length=200), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('blocked', sa.String(length=20), nullable=False),
    sa.Column('origin', sa.String(length=10), nullable=False),
    sa.Column('archived', sa.Boolean(), nullable=False),
    sa.Column('erp_last_modified', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('company_id', 'customer_id', name=op.f('pk_erp_customers'))
    )
    op.create_index('ix_erp_customers_company_number', 'erp_customers', ['company_id', 'number'], unique=False)
    op.create_table('erp_document_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('event_id', sa.String(length=200), nullable=False),
    sa.Column('event_type', sa.String(length=30), nullable=False),
    sa.Column('document_type', sa.String(length=30), nullable=False),
    sa.Column('document_id', sa.String(length=100), nullable=False),
    sa.Column('document_number', sa.String(length=50), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error_code', sa.String(length=100), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_erp_document_events')),
    sa.UniqueConstraint('company_id', 'event_id', name=op.f('uq_erp_document_events_company_id_event_id'))
    )
    op.create_index('ix_erp_document_events_company_status', 'erp_document_events', ['company_id', 'status', 'id'], unique=False)
    op.create_table('erp_invoice_lines',
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('invoice_id', sa.String(length=100), nullable=False),
    sa.Column('line_id', sa.String(length=100), nullable=False),
    sa.Column('line_no', sa.Integer(), nullable=False),
    sa.Column('type', sa.String(length=30), nullable=False),
    sa.Column('number', sa.String(length=50), nullable=False),
    sa.Column('description', sa.String(length=250), nullable=False),
    sa.Column('quantity', sa.String(length=40), nullable=False),
    sa.Column('unit_price', sa.String(length=40), nullable=False),
    sa.Column('discount_minor', sa.BigInteger(), nullable=False),
    sa.Column('amount_excl_minor', sa.BigInteger(), nullable=False),
    sa.Column('tax_minor', sa.BigInteger(), nullable=False),
    sa.Column('amount_incl_minor', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('company_id', 'invoice_id', 'line_id', name=op.f('pk_erp_invoice_lines'))
    )
    op.create_table('erp_invoices',
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('invoice_id', sa.String(length=100), nullable=False),
    sa.Column('number', sa.String(length=50), nullable=False),
    sa.Column('customer_id', sa.String(length=100), nullable=False),
    sa.Column('customer_number', sa.String(length=50), nullable=False),
    sa.Column('invoice_date', sa.Date(), nullable=False),
    sa.Column('due_date', sa.Date(), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('erp_status', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('total_excl_minor', sa.BigInteger(), nullable=False),
    sa.Column('total_tax_minor', sa.BigInteger(), nullable=False),
    sa.Column('total_incl_minor', sa.BigInteger(), nullable=False),
    sa.Column('remaining_minor', sa.BigInteger(), nullable=False),
    sa.Column('open_minor', sa.BigInteger(), nullable=False),
    sa.Column('settled_minor', sa.BigInteger(), nullable=False),
    sa.Column('settlements', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.String(length=100), nullable=True),
    sa.Column('origin', sa.String(length=10), nullable=False),
    sa.Column('archived', sa.Boolean(), nullable=False),
    sa.Column('paid_via_payweave', sa.Boolean(), nullable=False),
    sa.Column('payweave_paid_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ignored_erp_changes', sa.Integer(), nullable=False),
    sa.Column('last_ignored_change_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('erp_last_modified', sa.DateTime(timezone=True), nullable=True),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('pdf_sha256', sa.String(length=64), nullable=True),
    sa.Column('pdf_fetched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('pdf_attempts', sa.Integer(), nullable=False),
    sa.Column('pdf_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('company_id', 'invoice_id', name=op.f('pk_erp_invoices'))
    )
    op.create_index('ix_erp_invoices_company_customer', 'erp_invoices', ['company_id', 'customer_id'], unique=False)
    op.create_index('ix_erp_invoices_company_number', 'erp_invoices', ['company_id', 'number'], unique=False)
    op.create_index('ix_erp_invoices_company_status', 'erp_invoices', ['company_id', 'status'], unique=False)
    op.create_table('erp_payments',
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('payment_id', sa.String(length=200), nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('invoice_id', sa.String(length=100), nullable=True),
    sa.Column('customer_id', sa.String(length=100), nullable=True),
    sa.Column('document_number', sa.String(length=50), nullable=False),
    sa.Column('posting_date', sa.Date(), nullable=True),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('matched_writebacks', sa.JSON(), nullable=False),
    sa.Column('erp_last_modified', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('company_id', 'payment_id', name=op.f('pk_erp_payments'))
    )
    op.create_index('ix_erp_payments_company_invoice', 'erp_payments', ['company_id', 'invoice_id'], unique=False)
    op.create_table('erp_pdfs',
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('company_id', 'sha256', name=op.f('pk_erp_pdfs'))
    )
    op.create_table('erp_sync_cursors',
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('entity', sa.String(length=30), nullable=False),
    sa.Column('stream', sa.String(length=20), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('page_token', sa.Text(), nullable=True),
    sa.Column('high_water', sa.DateTime(timezone=True), nullable=True),
    sa.Column('pages', sa.BigInteger(), nullable=False),
    sa.Column('records', sa.BigInteger(), nullable=False),
    sa.Column('requests', sa.BigInteger(), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('company_id', 'entity', 'stream', name=op.f('pk_erp_sync_cursors'))
    )
    op.create_table('erp_sync_issues',
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('entity', sa.String(length=30), nullable=False),
    sa.Column('record_id', sa.String(length=200), nullable=False),
    sa.Column('code', sa.String(length=100), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('occurrences', sa.Integer(), nullable=False),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('company_id', 'entity', 'record_id', name=op.f('pk_erp_sync_issues'))
    )
    op.create_table('erp_writebacks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('source_key', sa.String(length=200), nullable=False),
    sa.Column('document_number', sa.String(length=20), nullable=False),
    sa.Column('idempotency_key', sa.String(length=255), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('invoice_id', sa.String(length=100), nullable=True),
    sa.Column('invoice_number', sa.String(length=50), nullable=False),
    sa.Column('customer_id', sa.String(length=100), nullable=True),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('posting_date', sa.Date(), nullable=False),
    sa.Column('external_reference', sa.String(length=100), nullable=False),
    sa.Column('description', sa.String(length=250), nullable=False),
    sa.Column('payout', sa.JSON(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('lease_owner', sa.String(length=200), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error_code', sa.String(length=100), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('entry_ids', sa.JSON(), nullable=False),
    sa.Column('already_existed', sa.Boolean(), nullable=True),
    sa.Column('observed_in_erp', sa.Boolean(), nullable=False),
    sa.Column('payment_failed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('payment_failure_reason', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_erp_writebacks')),
    sa.UniqueConstraint('company_id', 'document_number', name=op.f('uq_erp_writebacks_company_id_document_number')),
    sa.UniqueConstraint('company_id', 'kind', 'source_key', name=op.f('uq_erp_writebacks_company_id_kind_source_key'))
    )
    op.create_index('ix_erp_writebacks_company_invoice', 'erp_writebacks', ['company_id', 'invoice_id'], unique=False)
    op.create_index('ix_erp_writebacks_company_status', 'erp_writebacks', ['company_id', 'status'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_erp_writebacks_company_status', table_name='erp_writebacks')
    op.drop_index('ix_erp_writebacks_company_invoice', table_name='erp_writebacks')
    op.drop_table('erp_writebacks')
    op.drop_table('erp_sync_issues')
    op.drop_table('erp_sync_cursors')
    op.drop_table('erp_pdfs')
    op.drop_index('ix_erp_payments_company_invoice', table_name='erp_payments')
    op.drop_table('erp_payments')
    op.drop_index('ix_erp_invoices_company_status', table_name='erp_invoices')
    op.drop_index('ix_erp_invoices_company_number', table_name='erp_invoices')
    op.drop_index('ix_erp_invoices_company_customer', table_name='erp_invoices')
    op.drop_table('erp_invoices')
    op.drop_table('erp_invoice_lines')
    op.drop_index('ix_erp_document_events_company_status', table_name='erp_document_events')
    op.drop_table('erp_document_events')
    op.drop_index('ix_erp_customers_company_number', table_name='erp_customers')
    op.drop_table('erp_customers')
    op.drop_index('ix_erp_credit_memos_company_invoice', table_name='erp_credit_memos')
    op.drop_table('erp_credit_memos')
    op.drop_table('erp_connections')
    op.drop_table('erp_account_setups')
