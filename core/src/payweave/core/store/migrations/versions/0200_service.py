"""HTTP service tables: API keys, idempotent requests, PSP events, service operations
(payment links, mandate charges), payment links, mandates, company account setup.

Revision ID: 0200
Revises: 0001
Create Date: 2026-01-20
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import payweave.core.store.models

revision = '0200'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', payweave.core.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', payweave.core.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('last_used_at', payweave.core.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys'))
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index('ix_api_keys_company', ['company_id'], unique=False)

    op.create_table('idempotent_requests',
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('method', sa.String(length=10), nullable=False),
    sa.Column('path', sa.String(length=500), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('response_status', sa.Integer(), nullable=True),
    sa.Column('response_body', sa.Text(), nullable=True),
    sa.Column('response_type', sa.String(length=100), nullable=True),
    sa.Column('created_at', payweave.core.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('completed_at', payweave.core.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('company_id', 'key', name=op.f('pk_idempotent_requests'))
    )
    op.create_table('mandates',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('payment_method_code', sa.String(length=20), nullable=False),
    sa.Column('customer_id', sa.String(length=100), nullable=False),
    sa.Column('customer', sa.JSON(), nullable=False),
    sa.Column('mandate_reference', sa.String(length=200), nullable=False),
    sa.Column('description', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('created_at', payweave.core.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', payweave.core.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', payweave.core.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mandates')),
    sa.UniqueConstraint('company_id', 'payment_method_code', 'mandate_reference', name=op.f('uq_mandates_company_id_payment_method_code_mandate_reference'))
    )
    with op.batch_alter_table('mandates', schema=None) as batch_op:
        batch_op.create_index('ix_mandates_company_customer', ['company_id', 'customer_id'], unique=False)

    op.create_table('payment_links',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('transaction_id', sa.String(length=36), nullable=False),
    sa.Column('operation_id', sa.BigInteger(), nullable=False),
    sa.Column('psp', sa.String(length=100), nullable=False),
    sa.Column('psp_account', sa.String(length=100), nullable=False),
    sa.Column('payment_method_code', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('psp_link_id', sa.String(length=200), nullable=True),
    sa.Column('url', sa.Text(), nullable=True),
    sa.Column('psp_reference', sa.String(length=200), nullable=True),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('expires_at', payweave.core.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('returned_via', sa.String(length=20), nullable=True),
    sa.Column('returned_at', payweave.core.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('created_at', payweave.core.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', payweave.core.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_links'))
    )
    with op.batch_alter_table('payment_links', schema=None) as batch_op:
        batch_op.create_index('ix_payment_links_psp', ['psp', 'psp_account', 'psp_link_id'], unique=False)
        batch_op.create_index('ix_payment_links_transaction', ['company_id', 'transaction_id'], unique=False)

    op.create_table('psp_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('psp', sa.String(length=100), nullable=False),
    sa.Column('psp_account', sa.String(length=100), nullable=False),
    sa.Column('event_id', sa.String(length=255), nullable=False),
    sa.Column('event_type', sa.String(length=30), nullable=False),
    sa.Column('raw_type', sa.String(length=100), nullable=False),
    sa.Column('occurred_at', payweave.core.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('received_at', payweave.core.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('psp_reference', sa.String(length=200), nullable=True),
    sa.Column('link_id', sa.String(length=200), nullable=True),
    sa.Column('payout_id', sa.String(length=200), nullable=True),
    sa.Column('company_id', sa.String(length=64), nullable=True),
    sa.Column('transaction_id', sa.String(length=36), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('operation_id', sa.BigInteger(), nullable=True),
    sa.Column('event', sa.JSON(), nullable=False),
    sa.Column('applied_at', payweave.core.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_psp_events')),
    sa.UniqueConstraint('psp', 'psp_account', 'event_id', name=op.f('uq_psp_events_psp_psp_account_event_id'))
    )
    with op.batch_alter_table('psp_events', schema=None) as batch_op:
        batch_op.create_index('ix_psp_events_reference', ['psp', 'psp_account', 'psp_reference', 'status'], unique=False)
        batch_op.create_index('ix_psp_events_transaction', ['company_id', 'transaction_id'], unique=False)

    op.create_table('service_operations',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('company_id', sa.String(length=64), nullable=False),
    sa.Column('transaction_id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('request_id', sa.String(length=255), nullable=False),
    sa.Column('idempotency_key', sa.String(length=255), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('request', sa.JSON(), nullable=False),
    sa.Column('context', sa.JSON(), nullable=False),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('error_code', sa.String(length=100), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('error_details', sa.JSON(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', payweave.core.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('completed_at', payweave.core.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_service_operations')),
    sa.UniqueConstraint('company_id', 'request_id', name=op.f('uq_service_operations_company_id_request_id')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_service_operations_idempotency_key'))
    )
    with op.batch_alter_table('service_operations', schema=None) as batch_op:
        batch_op.create_index('ix_service_operations_status', ['status'], unique=False)
        batch_op.create_index('ix_service_operations_transaction', ['company_id', 'transaction_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('service_operations', schema=None) as batch_op:
        batch_op.drop_index('ix_service_operations_transaction')
        batch_op.drop_index('ix_service_operations_status')

    op.drop_table('service_operations')
    with op.batch_alter_table('psp_events', schema=None) as batch_op:
        batch_op.drop_index('ix_psp_events_transaction')
        batch_op.drop_index('ix_psp_events_reference')

    op.drop_table('psp_events')
    with op.batch_alter_table('payment_links', schema=None) as batch_op:
        batch_op.drop_index('ix_payment_links_transaction')
        batch_op.drop_index('ix_payment_links_psp')

    op.drop_table('payment_links')
    with op.batch_alter_table('mandates', schema=None) as batch_op:
        batch_op.drop_index('ix_mandates_company_customer')

    op.drop_table('mandates')
    op.drop_table('idempotent_requests')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index('ix_api_keys_company')

    op.drop_table('api_keys')
