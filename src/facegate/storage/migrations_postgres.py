"""PostgreSQL's migrations (see storage/migrations.py): entry N is migration N, recorded in
the ``schema_version`` table."""

POSTGRES: list[str] = [
    """
    CREATE EXTENSION IF NOT EXISTS vector;
    CREATE TABLE tenants (
        id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at DOUBLE PRECISION NOT NULL,
        kek_version INTEGER NOT NULL, wrapped_dek BYTEA NOT NULL,
        sealed_transform_seed BYTEA NOT NULL, transform_version INTEGER NOT NULL,
        settings TEXT NOT NULL
    );
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id),
        secret_hash TEXT NOT NULL, roles TEXT NOT NULL, label TEXT NOT NULL DEFAULT '',
        created_at DOUBLE PRECISION NOT NULL, revoked_at DOUBLE PRECISION
    );
    CREATE TABLE subjects (
        tenant_id TEXT NOT NULL REFERENCES tenants(id), id TEXT NOT NULL, external_ref TEXT,
        created_at DOUBLE PRECISION NOT NULL, last_activity_at DOUBLE PRECISION NOT NULL,
        erased_at DOUBLE PRECISION, PRIMARY KEY (tenant_id, id)
    );
    CREATE TABLE consents (
        id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, subject_id TEXT NOT NULL,
        purpose TEXT NOT NULL, text_version TEXT NOT NULL, method TEXT NOT NULL,
        granted_at DOUBLE PRECISION NOT NULL, withdrawn_at DOUBLE PRECISION,
        FOREIGN KEY (tenant_id, subject_id) REFERENCES subjects(tenant_id, id)
    );
    CREATE TABLE templates (
        seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE, tenant_id TEXT NOT NULL,
        subject_id TEXT NOT NULL, space_id TEXT NOT NULL, transform_version INTEGER NOT NULL,
        sealed_vector BYTEA NOT NULL, source TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,
        protected vector,
        FOREIGN KEY (tenant_id, subject_id) REFERENCES subjects(tenant_id, id)
    );
    CREATE INDEX templates_by_subject ON templates (tenant_id, subject_id);
    CREATE TABLE template_log (
        seq BIGSERIAL PRIMARY KEY, tenant_id TEXT NOT NULL, template_id TEXT NOT NULL,
        op TEXT NOT NULL CHECK (op IN ('add', 'remove'))
    );
    CREATE TABLE spent_challenges (
        tenant_id TEXT NOT NULL, id TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (tenant_id, id)
    );
    CREATE TABLE liveness_sessions (
        tenant_id TEXT NOT NULL, id TEXT NOT NULL, live INTEGER NOT NULL, space_id TEXT,
        sealed_vector BYTEA, summary TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL,
        used_at DOUBLE PRECISION, PRIMARY KEY (tenant_id, id)
    );
    CREATE TABLE verify_failures (
        tenant_id TEXT NOT NULL, subject_id TEXT NOT NULL, at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX verify_failures_by_subject ON verify_failures (tenant_id, subject_id, at);
    CREATE TABLE audit (
        seq BIGINT PRIMARY KEY, at DOUBLE PRECISION NOT NULL, tenant_id TEXT, actor TEXT NOT NULL,
        action TEXT NOT NULL, subject_id TEXT, outcome TEXT NOT NULL, details TEXT NOT NULL,
        prev_hash TEXT NOT NULL, hash TEXT NOT NULL
    );
    CREATE FUNCTION audit_append_only() RETURNS trigger AS $$
        BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$ LANGUAGE plpgsql;
    CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
        FOR EACH ROW EXECUTE FUNCTION audit_append_only();
    """,
    # 2: counting a tenant's gallery must not read every vector
    """
    CREATE INDEX templates_by_space ON templates (tenant_id, space_id);
    """,
    # 3: every guess at a subject counted, locks that last (attempts, subject_locks, replacing
    # verify_failures); liveness sessions bound to a subject and purpose; capture links as rows
    # (single use for enrolment, revocable, dying with their issuing key)
    """
    DROP TABLE verify_failures;
    CREATE TABLE attempts (
        tenant_id TEXT NOT NULL,
        subject_id TEXT NOT NULL,
        id TEXT NOT NULL,
        kind TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (tenant_id, id)
    );
    CREATE INDEX attempts_by_subject ON attempts (tenant_id, subject_id, at);
    CREATE TABLE subject_locks (
        tenant_id TEXT NOT NULL,
        subject_id TEXT NOT NULL,
        locked_until DOUBLE PRECISION,
        lockouts INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (tenant_id, subject_id)
    );
    ALTER TABLE liveness_sessions ADD COLUMN subject_id TEXT;
    ALTER TABLE liveness_sessions ADD COLUMN purpose TEXT;
    CREATE TABLE capture_links (
        tenant_id TEXT NOT NULL,
        id TEXT NOT NULL,
        subject_id TEXT NOT NULL,
        flow TEXT NOT NULL,
        key_id TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        used_at DOUBLE PRECISION,
        revoked_at DOUBLE PRECISION,
        PRIMARY KEY (tenant_id, id)
    );
    """,
    # 4: the audit chain is keyed (as SQLite's migration 4)
    """
    ALTER TABLE audit ADD COLUMN key_version INTEGER;
    """,
    # 5: a template whose sealed bytes no longer open (tampered, damaged) is quarantined: out of
    # every query and index, kept for the operator to see (facegate audit verify, an admin route)
    """
    ALTER TABLE templates ADD COLUMN quarantined_at DOUBLE PRECISION;
    """,
    # 6: a capture link's outcome for the relying party (GET /v1/capture-links/{id}): passed,
    # failed or declined, and a result without biometric data (live, match, reason codes)
    """
    ALTER TABLE capture_links ADD COLUMN outcome TEXT;
    ALTER TABLE capture_links ADD COLUMN outcome_at DOUBLE PRECISION;
    ALTER TABLE capture_links ADD COLUMN result TEXT;
    """,
    # 7: Idempotency-Key: the first answer to a key is kept (sealed) and replayed to retries
    """
    CREATE TABLE idempotency (
        tenant_id TEXT NOT NULL,
        key_hash TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        status INTEGER,
        sealed_answer BYTEA,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (tenant_id, key_hash)
    );
    """,
    # 8: data keys retired by a renewal, kept (wrapped) only to open older audit details
    """
    CREATE TABLE tenant_keys (
        tenant_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        kek_version INTEGER NOT NULL,
        wrapped_dek BYTEA NOT NULL,
        retired_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (tenant_id, version)
    );
    """,
    # 9: signed webhooks: a tenant's endpoint (URL and signing secret sealed under its data key,
    # never in clear), the outbox of events (written in the transaction that makes the event;
    # claimed by one worker at a time with a lease), and whether a link's expiry was announced
    """
    CREATE TABLE webhooks (
        tenant_id TEXT PRIMARY KEY,
        sealed_config BYTEA NOT NULL,
        events TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE webhook_deliveries (
        tenant_id TEXT NOT NULL,
        id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        event_key TEXT NOT NULL,
        payload TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at DOUBLE PRECISION NOT NULL,
        claimed_until DOUBLE PRECISION,
        claim TEXT,
        last_status_code INTEGER,
        last_error TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        delivered_at DOUBLE PRECISION,
        PRIMARY KEY (tenant_id, id)
    );
    CREATE UNIQUE INDEX webhook_deliveries_by_key ON webhook_deliveries (tenant_id, event_key);
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
    CREATE INDEX webhook_deliveries_by_tenant ON webhook_deliveries (tenant_id, created_at);
    ALTER TABLE capture_links ADD COLUMN expiry_announced_at DOUBLE PRECISION;
    """,
    # 10: data-key versions and the version that sealed each row (as SQLite's migration 10)
    """
    CREATE TABLE tenant_dek_versions (
        tenant_id TEXT PRIMARY KEY,
        dek_version INTEGER NOT NULL
    );
    INSERT INTO tenant_dek_versions SELECT id, transform_version FROM tenants;
    ALTER TABLE templates ADD COLUMN dek_version INTEGER;
    UPDATE templates SET dek_version = transform_version;
    ALTER TABLE liveness_sessions ADD COLUMN dek_version INTEGER;
    UPDATE liveness_sessions SET dek_version = (SELECT dek_version FROM tenant_dek_versions v
        WHERE v.tenant_id = liveness_sessions.tenant_id);
    ALTER TABLE webhooks ADD COLUMN dek_version INTEGER;
    UPDATE webhooks SET dek_version = (SELECT dek_version FROM tenant_dek_versions v
        WHERE v.tenant_id = webhooks.tenant_id);
    CREATE INDEX templates_by_dek_version ON templates (tenant_id, dek_version);
    """,
]
