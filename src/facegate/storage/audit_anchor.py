"""The audit chain's head (sequence number and hash), anchored outside the database.

A keyed chain stops a database writer from forging or re-chaining records, but not from cutting
off the newest ones: the shortened log is still a valid chain. So the head is also written to a
small file outside the data folder (``FACEGATE_AUDIT_ANCHOR``, by default next to the key file),
at most a couple of seconds after each append and at exit; ``facegate audit verify`` reads it and
requires the log to still hold that record with that hash. The file carries an HMAC under the
chain key, and it only moves forward: each process advances it after verifying the records
appended since (under a file lock, so that workers never move it back), and never past a log that
no longer holds the anchored head. The operator can copy the file elsewhere, or store the signed
checkpoint ``facegate audit checkpoint`` prints.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from facegate.errors import ProtectionError
from facegate.protection.audit_keys import AuditKey, chain_key
from facegate.protection.crypto import MasterKeys
from facegate.storage.audit import AuditHead, verify_audit_chain

log = logging.getLogger(__name__)


def key_lookup(ring: MasterKeys) -> Any:
    """Chain keys by master-key version; a version this process has not seen (another process
    rotated the master key) makes the ring re-read its file or token once."""

    def lookup(version: int) -> AuditKey:
        if version not in ring.versions():
            ring.refresh()
        return chain_key(ring, version)

    return lookup


def _anchor_mac(ring: MasterKeys, version: int, head: AuditHead, at: float) -> str:
    return key_lookup(ring)(version).mac(f"anchor|{head.seq}|{head.hash}|{at!r}".encode())


def read_anchor(path: Path, ring: MasterKeys) -> AuditHead | None:
    """The anchored head, None when there is no anchor file; ``ProtectionError`` when the file
    was altered or cannot be read."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        head = AuditHead(int(data["seq"]), str(data["hash"]))
        expected = _anchor_mac(ring, int(data["key_version"]), head, float(data["at"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ProtectionError("the audit anchor cannot be read") from exc
    if expected != data.get("mac"):
        raise ProtectionError("the audit anchor was altered")
    return head


def write_anchor(path: Path, head: AuditHead, ring: MasterKeys) -> None:
    at = time.time()
    data = {
        "seq": head.seq,
        "hash": head.hash,
        "at": at,
        "key_version": ring.current,
        "mac": _anchor_mac(ring, ring.current, head, at),
    }
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


class AuditAnchor:
    """Keeps the anchor file up with the log: told of each append (``note``), it advances the
    file from a background thread at most ``interval_s`` later, and once more at exit."""

    def __init__(self, path: Path, store: Any, ring: MasterKeys, interval_s: float = 2.0) -> None:
        self.path = path
        self.store = store
        self.ring = ring
        self.interval_s = interval_s
        self._dirty = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def note(self) -> None:
        self._dirty.set()
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="audit-anchor", daemon=True
                    )
                    self._thread.start()
                    atexit.register(self.close)

    def _run(self) -> None:
        while not self._closed:
            self._dirty.wait()
            time.sleep(self.interval_s)  # coalesce a burst of appends into one write
            self._dirty.clear()
            try:
                self.flush()
            except Exception:  # never take the service down; the next append retries
                log.exception("the audit anchor could not be updated")

    def close(self) -> None:
        """At exit: anchor what this process appended."""
        self._closed = True
        if self._dirty.is_set():
            self._dirty.clear()
            try:
                self.flush()
            except Exception:
                log.exception("the audit anchor could not be updated at exit")

    def flush(self) -> AuditHead | None:
        """Advance the anchor to the log's head after verifying the records appended since the
        anchored one; returns the anchored head. Refuses (logs, leaves the file) when the log no
        longer holds the anchored head or the new records do not verify."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._lock, open(lock_path, "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                anchored = read_anchor(self.path, self.ring)
            except ProtectionError:
                log.error("the audit anchor at its configured path is unreadable or altered")
                return None
            if anchored is None:
                records = self.store.audit_records()
                ok, _ = verify_audit_chain(records, key_lookup(self.ring))
            else:
                records = self.store.audit_records_since(anchored.seq)
                first = records[0] if records else None
                if first is None or (first.seq, first.hash) != (anchored.seq, anchored.hash):
                    log.error("the audit log no longer holds its anchored head: run audit verify")
                    return anchored
                ok, _ = verify_audit_chain(records[1:], key_lookup(self.ring), start=anchored)
            if not ok:
                log.error("new audit records do not verify: the anchor is not advanced")
                return anchored
            if not records or (anchored is not None and records[-1].seq <= anchored.seq):
                return anchored
            head = AuditHead(records[-1].seq, records[-1].hash)
            write_anchor(self.path, head, self.ring)
            return head
