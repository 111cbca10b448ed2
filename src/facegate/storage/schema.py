"""SQLite schema, applied as numbered migrations (PRAGMA user_version records the last one)."""

MIGRATIONS: list[str] = [
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
]
