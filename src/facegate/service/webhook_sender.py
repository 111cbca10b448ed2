"""Sending one webhook: the signature, and one HTTP POST that cannot outlive its deadline.

The endpoint was checked first (service/webhook_targets.py: the SSRF filter); the request goes
to the checked address, with the name in ``Host`` and in TLS's SNI and certificate check. No
proxy from the environment is used, and redirects are not followed (a 3xx is a failed attempt).

Every attempt has one total deadline (``FACEGATE_WEBHOOK_TIMEOUT_S``): DNS, connect, TLS, the
request and the answer's status line together. A per-read timeout (httpx's) is not enough: a
receiver that trickles one header byte every half second keeps such an attempt alive for ever.
So the attempt runs on a plain socket, with h11 (the HTTP/1.1 state machine under httpx and
uvicorn) framing the request and parsing the answer: each step's socket timeout is the time
left, and a watchdog shuts the socket down at the deadline (which also ends a TLS handshake that
is being trickled). Only the status line and the headers are read (at most
``MAX_ANSWER_BYTES``, 1xx answers skipped; more is a failed attempt): the body is never needed.

The signature: ``Facegate-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`` with
``Facegate-Timestamp`` (unix seconds) and ``Facegate-Event-Id`` (docs/webhooks.md shows a
receiver's check).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import h11
import httpx

from facegate import __version__
from facegate.service.webhook_targets import Target

MAX_ANSWER_BYTES = 16384


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under the secret (its UTF-8 bytes)."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(
    secrets_: Sequence[str], event_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The headers of one attempt; one ``v1=`` per secret (after a rotation, the previous
    secret's signature too, for a day, so receivers can switch over without dropping events)."""
    return {
        "Content-Type": "application/json",
        "User-Agent": f"facegate-webhooks/{__version__}",
        "Facegate-Event-Id": event_id,
        "Facegate-Timestamp": str(timestamp),
        "Facegate-Signature": " ".join(f"v1={signature(s, timestamp, body)}" for s in secrets_),
    }


@dataclass(frozen=True)
class AttemptResult:
    status_code: int | None  # the receiver's answer, if any
    error: str | None  # None: delivered (2xx); else a code for the delivery log

    @property
    def delivered(self) -> bool:
        return self.error is None


class _BadAnswerError(Exception):
    """What came back is not an HTTP/1.x status line (or is too long for one)."""


class _ConnectFailedError(Exception):
    """The TCP connection was refused or unreachable."""


class Deadline:
    """An attempt's total deadline; ``hold`` names the socket the watchdog shuts at its end."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self.expired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, seconds), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def left(self) -> float:
        left = self.at - time.monotonic()
        if left <= 0 or self.expired:
            raise TimeoutError("the webhook attempt's deadline passed")
        return left

    def hold(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            if self.expired:
                _abort(sock)

    def _fire(self) -> None:
        with self._lock:
            self.expired = True
            if self._sock is not None:
                _abort(self._sock)

    def cancel(self) -> None:
        self._timer.cancel()


def _abort(sock: socket.socket) -> None:
    """Wake whatever blocks on the socket (the owner closes it). The plain socket's shutdown
    even for a TLS one: ``SSLSocket.shutdown`` would drop its TLS state under the reader."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


@functools.lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    """httpx's default verification (certifi, or SSL_CERT_FILE/SSL_CERT_DIR), made once."""
    return httpx.create_ssl_context()


def _client() -> h11.Connection:
    return h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_ANSWER_BYTES)


def _request_bytes(
    conn: h11.Connection, target: Target, body: bytes, headers: dict[str, str]
) -> bytes:
    """The request, framed by h11 (which refuses a target or header with control characters)."""
    fields = [("Host", target.host_header()), *headers.items()]
    fields += [("Content-Length", str(len(body))), ("Connection", "close")]
    events = (
        h11.Request(method="POST", target=target.path, headers=fields),
        h11.Data(data=body),
        h11.EndOfMessage(),
    )
    return b"".join(conn.send(event) or b"" for event in events)


def _plausible(start: bytes) -> None:
    """An answer whose first bytes cannot begin ``HTTP/1.`` is refused at once, rather than
    buffered up to the limit to find out."""
    if not b"HTTP/1.".startswith(start[:7]):
        raise _BadAnswerError


def _next_status(conn: h11.Connection, data: bytes) -> int | None:
    """The final status code once its header block is complete (1xx answers skipped), after
    ``data`` more bytes; None: more is needed; ``_BadAnswerError`` when it is not HTTP/1.x."""
    if data:
        conn.receive_data(data)
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                return None
            if isinstance(event, h11.Response):
                return int(event.status_code)
            if not isinstance(event, h11.InformationalResponse):
                raise _BadAnswerError
    except h11.RemoteProtocolError as exc:
        raise _BadAnswerError from exc


def final_status(data: bytes) -> int | None:
    """``_next_status`` of an answer read in one piece (the unit tests' view)."""
    conn = _client()
    _request_bytes(conn, Target("http", "x", 80, "/", "192.0.2.1"), b"", {})
    _plausible(data)
    return _next_status(conn, data)


def _exchange(
    target: Target, body: bytes, headers: dict[str, str], deadline: Deadline, timeout_s: float
) -> int:
    http = _client()
    request = _request_bytes(http, target, body, headers)
    family = socket.AF_INET6 if ":" in target.address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    conn: socket.socket = sock
    try:
        deadline.hold(sock)
        sock.settimeout(min(timeout_s, deadline.left()))
        try:
            sock.connect((target.address, target.port))
        except TimeoutError:
            raise
        except OSError as exc:
            raise _ConnectFailedError from exc
        if target.scheme == "https":
            conn = _tls_context().wrap_socket(
                sock, server_hostname=target.host, do_handshake_on_connect=False
            )
            deadline.hold(conn)
            conn.settimeout(deadline.left())
            conn.do_handshake()
        conn.settimeout(deadline.left())
        conn.sendall(request)
        read, start, chunk = 0, b"", b""
        while (code := _next_status(http, chunk)) is None:
            if read >= MAX_ANSWER_BYTES:
                raise _BadAnswerError
            conn.settimeout(deadline.left())
            chunk = conn.recv(min(1024, MAX_ANSWER_BYTES - read))
            if not chunk:
                raise _BadAnswerError  # closed before a final status
            read += len(chunk)
            start = (start + chunk)[:7]
            _plausible(start)
        return code
    finally:
        conn.close()
        if conn is not sock:
            sock.close()


def post(target: Target, body: bytes, headers: dict[str, str], timeout_s: float) -> AttemptResult:
    """One POST to the checked address, all of it within ``timeout_s``; 2xx is delivered,
    anything else is a failed attempt with a code: ``http_status``, ``redirect_not_followed``,
    ``timeout``, ``tls_error``, ``connect_failed``, ``request_failed``. Nothing is logged here
    (the URL's query may hold the receiver's token)."""
    deadline = Deadline(timeout_s)
    try:
        code = _exchange(target, body, headers, deadline, timeout_s)
    except Exception as exc:  # each kind of failure is a code; none escapes
        if deadline.expired or isinstance(exc, TimeoutError):
            return AttemptResult(None, "timeout")
        if isinstance(exc, ssl.SSLError):
            return AttemptResult(None, "tls_error")
        if isinstance(exc, _ConnectFailedError):
            return AttemptResult(None, "connect_failed")
        return AttemptResult(None, "request_failed")
    finally:
        deadline.cancel()
    if 200 <= code < 300:
        return AttemptResult(code, None)
    return AttemptResult(code, "redirect_not_followed" if 300 <= code < 400 else "http_status")
