"""SQLite's migrations (see storage/migrations.py): entry N is migration N, recorded in
``PRAGMA user_version``."""

SQLITE: list[str] = [
    # 1: the whole first schema
    """
    CREATE TABLE tenants (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        kek_version INTEGER NOT NULL,
        wrapped_dek BLOB NOT NULL,
        sealed_transform_seed BLOB NOT NULL,
        transform_version INTEGER NOT NULL,
        settings TEXT NOT NULL
    );
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL REFERENCES tenants(id),
        secret_hash TEXT NOT NULL,
        roles TEXT NOT NULL,
        label TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE TABLE subjects (
        tenant_id TEXT NOT NULL REFERENCES tenants(id),
        id TEXT NOT NULL,
        external_ref TEXT,
        created_at REAL NOT NULL,
        last_activity_at REAL NOT NULL,
        erased_at REAL,
        PRIMARY KEY (tenant_id, id)
    );
    CREATE TABLE consents (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        subject_id TEXT NOT NULL,
        purpose TEXT NOT NULL,
        text_version TEXT NOT NULL,
        method TEXT NOT NULL,
        granted_at REAL NOT NULL,
        withdrawn_at REAL,
        FOREIGN KEY (tenant_id, subject_id) REFERENCES subjects(tenant_id, id)
    );
    CREATE TABLE templates (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        tenant_id TEXT NOT NULL,
        subject_id TEXT NOT NULL,
        space_id TEXT NOT NULL,
        transform_version INTEGER NOT NULL,
        sealed_vector BLOB NOT NULL,
        source TEXT NOT NULL,
        created_at REAL NOT NULL,
        FOREIGN KEY (tenant_id, subject_id) REFERENCES subjects(tenant_id, id)
    );
    CREATE INDEX templates_by_subject ON templates (tenant_id, subject_id);
    -- every insert and delete of a template, so that each worker's in-memory index can catch up
    CREATE TABLE template_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant_id TEXT NOT NULL,
        template_id TEXT NOT NULL,
        op TEXT NOT NULL CHECK (op IN ('add', 'remove'))
    );
    CREATE TABLE spent_challenges (
        tenant_id TEXT NOT NULL,
        id TEXT NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (tenant_id, id)
    );
    CREATE TABLE liveness_sessions (
        tenant_id TEXT NOT NULL,
        id TEXT NOT NULL,
        live INTEGER NOT NULL,
        space_id TEXT,
        sealed_vector BLOB,
        summary TEXT NOT NULL,
        expires_at REAL NOT NULL,
        used_at REAL,
        PRIMARY KEY (tenant_id, id)
    );
    CREATE TABLE verify_failures (
        tenant_id TEXT NOT NULL,
        subject_id TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX verify_failures_by_subject ON verify_failures (tenant_id, subject_id, at);
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        tenant_id TEXT,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        subject_id TEXT,
        outcome TEXT NOT NULL,
        details TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    -- the audit log is append-only: the database itself refuses edits and deletions
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    """,
    # 2: counting a tenant's gallery by its index (as PostgreSQL's migration 2)
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
        at REAL NOT NULL,
        PRIMARY KEY (tenant_id, id)
    );
    CREATE INDEX attempts_by_subject ON attempts (tenant_id, subject_id, at);
    CREATE TABLE subject_locks (
        tenant_id TEXT NOT NULL,
        subject_id TEXT NOT NULL,
        locked_until REAL,
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
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        used_at REAL,
        revoked_at REAL,
        PRIMARY KEY (tenant_id, id)
    );
    """,
    # 4: the audit chain is keyed (HMAC under a key derived from the master key); each record
    # names the master-key version that keyed it (NULL: an unkeyed record from before)
    """
    ALTER TABLE audit ADD COLUMN key_version INTEGER;
    """,
    # 5: a template whose sealed bytes no longer open (tampered, damaged) is quarantined: out of
    # every query and index, kept for the operator to see (facegate audit verify, an admin route)
    """
    ALTER TABLE templates ADD COLUMN quarantined_at REAL;
    """,
    # 6: a capture link's outcome for the relying party (GET /v1/capture-links/{id}): passed,
    # failed or declined, and a result without biometric data (live, match, reason codes)
    """
    ALTER TABLE capture_links ADD COLUMN outcome TEXT;
    ALTER TABLE capture_links ADD COLUMN outcome_at REAL;
    ALTER TABLE capture_links ADD COLUMN result TEXT;
    """,
    # 7: Idempotency-Key: the first answer to a key is kept (sealed) and replayed to retries
    """
    CREATE TABLE idempotency (
        tenant_id TEXT NOT NULL,
        key_hash TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        status INTEGER,
        sealed_answer BLOB,
        created_at REAL NOT NULL,
        PRIMARY KEY (tenant_id, key_hash)
    );
    """,
    # 8: data keys retired by a renewal, kept (wrapped) only to open older audit details
    """
    CREATE TABLE tenant_keys (
        tenant_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        kek_version INTEGER NOT NULL,
        wrapped_dek BLOB NOT NULL,
        retired_at REAL NOT NULL,
        PRIMARY KEY (tenant_id, version)
    );
    """,
    # 9: signed webhooks: a tenant's endpoint (URL and signing secret sealed under its data key,
    # never in clear), the outbox of events (written in the transaction that makes the event;
    # claimed by one worker at a time with a lease), and whether a link's expiry was announced
    """
    CREATE TABLE webhooks (
        tenant_id TEXT PRIMARY KEY,
        sealed_config BLOB NOT NULL,
        events TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE webhook_deliveries (
        tenant_id TEXT NOT NULL,
        id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        event_key TEXT NOT NULL,
        payload TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        claimed_until REAL,
        claim TEXT,
        last_status_code INTEGER,
        last_error TEXT,
        created_at REAL NOT NULL,
        delivered_at REAL,
        PRIMARY KEY (tenant_id, id)
    );
    CREATE UNIQUE INDEX webhook_deliveries_by_key ON webhook_deliveries (tenant_id, event_key);
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
    CREATE INDEX webhook_deliveries_by_tenant ON webhook_deliveries (tenant_id, created_at);
    ALTER TABLE capture_links ADD COLUMN expiry_announced_at REAL;
    """,
    # 10: data-key versions (facegate keys rotate-data-key): each tenant's current one (none
    # listed: 1; read with the tenant's row in one statement; each renewal so far made a fresh
    # key, so existing tenants start at their transform version), and on every template,
    # liveness session and webhook endpoint the version of the key that sealed it, written by
    # the code that sealed it (NULL: unknown, re-sealed by the next rotation)
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
