"""One settings object, read once from the environment and passed down.

Every ``FACEGATE_*`` variable is read here and nowhere else (docs/configuration.md lists them).
Secrets (the master keys, a database URL that may carry a password) are held with
``repr=False`` so that a logged or printed ``Settings`` never shows them.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from facegate.errors import ConfigError

# "pgvector-unsealed": PostgreSQL keeps every template's transformed vector in clear for a shared
# database-side index, which a database thief who knows a few dozen enrolled faces can invert
# (bench/bench_procrustes.py); the name says so on purpose.
INDEX_KINDS = ("flat", "hnsw", "milvus", "pgvector-unsealed")
MIB = 1024 * 1024


def default_threads() -> int:
    """Interpreter threads per worker: two where there are two cores. On this 2-core machine,
    two workers with two threads each verify a photo in ~30 ms instead of ~45 ms when the
    service is not saturated, and lose ~15% throughput when it is (bench/bench_all.py)."""
    return min(2, os.cpu_count() or 1)


@dataclass(frozen=True)
class Settings:
    """What a facegate process needs to know about its deployment."""

    data_dir: Path
    key_file: Path
    master_keys: str | None = field(default=None, repr=False)
    challenge_key: str | None = field(default=None, repr=False)  # the offline CLI's only
    database_url: str | None = field(default=None, repr=False)
    index: str = "flat"
    milvus_uri: str | None = None
    models_dir: Path | None = None
    embedder: str | None = None  # None: the engine's default embedder
    max_body_bytes: int = 32 * MIB  # a 30 MB video plus form overhead
    rate_per_minute: int = 120  # per API key
    capture_rate_per_minute: int = 30  # per capture link (a capture needs a handful)
    address_rate_per_minute: int = 600  # per client address, before authentication; 0: off
    auth_failures_per_minute: int = 20  # 401 answers per client address; 0: off
    num_threads: int = 1
    trusted_proxies: str = ""  # reverse proxies whose X-Forwarded-For is believed (comma list)
    # the path prefix a reverse proxy serves facegate under ("/facegate"; "": none), stripped
    # from request paths if the proxy left it; capture links and OpenAPI's server name it
    root_path: str = ""
    api_docs: bool = False  # Swagger UI / ReDoc (scripts from a public CDN): off unless asked
    otel: bool = False  # OpenTelemetry traces (facegate[otel]; exporter from OTEL_* variables)
    liveness: bool = True
    audit_anchor: Path | None = None  # None: ``audit.anchor`` next to the key file
    # master keys in a PKCS#11 token instead of the key file (docs/keys.md): the module (.so),
    # the token's label, and the file (0600) holding the user PIN; the PIN itself is never here
    pkcs11_module: Path | None = None
    pkcs11_token: str = "facegate"
    pkcs11_pin_file: Path | None = field(default=None, repr=False)
    # per worker: requests with an upload in flight (received, waiting or analysed; beyond it:
    # 503 ``busy``), and how long one waits in line for the worker's analysis slot (then ``busy``)
    max_concurrent_uploads: int = 16
    analysis_wait_s: int = 10
    # webhooks (docs/webhooks.md): http and loopback/private targets only when allowed (SSRF);
    # each attempt's timeout, attempts before an event is failed, the first retry's delay
    # (then x4 each time, at most 6 h), how often each worker looks for due deliveries
    webhook_allow_private: bool = False
    webhook_timeout_s: float = 10.0
    webhook_max_attempts: int = 8
    webhook_backoff_s: float = 60.0
    webhook_poll_s: float = 2.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every variable once; refuse malformed values with a clear ``ConfigError``."""
        env = os.environ if env is None else env
        home = Path.home()
        data_dir = Path(
            env.get("FACEGATE_DATA_DIR")
            or Path(env.get("XDG_DATA_HOME") or home / ".local" / "share") / "facegate"
        )
        key_file = Path(
            env.get("FACEGATE_KEY_FILE")
            or Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "facegate" / "master.keys"
        )
        index = env.get("FACEGATE_INDEX", "flat")
        if index not in INDEX_KINDS:
            raise ConfigError(
                f"FACEGATE_INDEX must be one of {', '.join(INDEX_KINDS)}", code="bad_setting"
            )
        models_dir = env.get("FACEGATE_MODELS_DIR")
        proxies = env.get("FACEGATE_TRUSTED_PROXIES", "")
        for part in (p.strip() for p in proxies.split(",")):
            try:
                if part:
                    ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ConfigError(
                    "FACEGATE_TRUSTED_PROXIES must list addresses or networks (10.0.0.0/8, ::1)",
                    code="bad_setting",
                ) from None
        if index == "pgvector-unsealed" and not env.get("FACEGATE_DATABASE_URL"):
            raise ConfigError(
                "FACEGATE_INDEX=pgvector-unsealed needs FACEGATE_DATABASE_URL", code="bad_setting"
            )
        anchor = env.get("FACEGATE_AUDIT_ANCHOR")
        pkcs11_module = env.get("FACEGATE_PKCS11_MODULE")
        pin_file = env.get("FACEGATE_PKCS11_PIN_FILE")
        if pkcs11_module and env.get("FACEGATE_MASTER_KEYS"):
            raise ConfigError(
                "set FACEGATE_PKCS11_MODULE or FACEGATE_MASTER_KEYS, not both", code="bad_setting"
            )
        return cls(
            data_dir=data_dir,
            key_file=key_file,
            master_keys=env.get("FACEGATE_MASTER_KEYS") or None,
            challenge_key=env.get("FACEGATE_CHALLENGE_KEY") or None,
            database_url=env.get("FACEGATE_DATABASE_URL") or None,
            index=index,
            milvus_uri=env.get("FACEGATE_MILVUS_URI") or None,
            models_dir=Path(models_dir) if models_dir else None,
            embedder=env.get("FACEGATE_EMBEDDER") or None,
            max_body_bytes=_int(env, "FACEGATE_MAX_BODY_BYTES", 32 * MIB, low=1024),
            rate_per_minute=_int(env, "FACEGATE_RATE_PER_MINUTE", 120, low=1),
            capture_rate_per_minute=_int(env, "FACEGATE_CAPTURE_RATE_PER_MINUTE", 30, low=1),
            address_rate_per_minute=_int(env, "FACEGATE_RATE_PER_ADDRESS_PER_MINUTE", 600, low=0),
            auth_failures_per_minute=_int(env, "FACEGATE_AUTH_FAILURES_PER_MINUTE", 20, low=0),
            num_threads=_int(env, "FACEGATE_THREADS", default_threads(), low=1),
            api_docs=env.get("FACEGATE_API_DOCS", "") in ("1", "true", "yes"),
            otel=env.get("FACEGATE_OTEL", "") in ("1", "true", "yes"),
            trusted_proxies=proxies,
            root_path=_root_path(env.get("FACEGATE_ROOT_PATH", "")),
            max_concurrent_uploads=_int(env, "FACEGATE_MAX_CONCURRENT_UPLOADS", 16, low=1),
            analysis_wait_s=_int(env, "FACEGATE_ANALYSIS_WAIT_S", 10, low=1),
            webhook_allow_private=_flag(env, "FACEGATE_WEBHOOK_ALLOW_PRIVATE"),
            webhook_timeout_s=_int(env, "FACEGATE_WEBHOOK_TIMEOUT_S", 10, low=1),
            webhook_max_attempts=_int(env, "FACEGATE_WEBHOOK_MAX_ATTEMPTS", 8, low=1),
            webhook_backoff_s=_int(env, "FACEGATE_WEBHOOK_BACKOFF_S", 60, low=1),
            webhook_poll_s=_int(env, "FACEGATE_WEBHOOK_POLL_S", 2, low=1),
            audit_anchor=Path(anchor) if anchor else None,
            pkcs11_module=Path(pkcs11_module) if pkcs11_module else None,
            pkcs11_token=env.get("FACEGATE_PKCS11_TOKEN") or "facegate",
            pkcs11_pin_file=Path(pin_file) if pin_file else None,
        )

    def with_(self, **changes: object) -> Settings:
        """A copy with some fields changed (tests, the CLI's flags)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def uses_postgres(self) -> bool:
        return bool(self.database_url) and str(self.database_url).startswith(
            ("postgresql://", "postgres://")
        )

    @property
    def audit_anchor_path(self) -> Path:
        """Where the audit chain's head is anchored: outside the data folder by default (next to
        the key file), so that whoever rewrites the database cannot also move the anchor."""
        return self.audit_anchor or self.key_file.parent / "audit.anchor"

    def ensure_data_dir(self) -> Path:
        """The data folder, created on first use with mode 0700."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.data_dir


def _root_path(raw: str) -> str:
    """``/a/b`` or "": a leading slash, none at the end, only plain path characters (it is
    written into links and the OpenAPI document)."""
    value = raw.strip().rstrip("/")
    if value and (
        not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", value) or {".", ".."} & set(value.split("/"))
    ):
        raise ConfigError(
            "FACEGATE_ROOT_PATH must be a path such as /facegate (letters, digits, . _ ~ -)",
            code="bad_setting",
        )
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "") in ("1", "true", "yes")


def _int(env: Mapping[str, str], name: str, default: int, *, low: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number", code="bad_setting") from None
    if value < low:
        raise ConfigError(f"{name} must be at least {low}", code="bad_setting")
    return value
