"""Limits that apply before any route runs: the body size, authentication before a body is
read, a cap on uploads in flight per worker, and rates per client address, per API key and per
capture link, held in a store that every worker and machine shares.

The body limit is ASGI middleware because it must stop an upload as it arrives, not after
Starlette has read it. ``AuthGate`` checks the key (or capture token) from the headers alone,
because FastAPI reads a route's whole form before it runs the dependency that checks the key.
``RateLimit`` is the outermost layer, so that an anonymous flood or a key-guessing run is refused
before any body is read or any key is checked; the per-key and per-link buckets are taken by the
dependencies in ``facegate.web.deps`` once they know who is calling.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from anyio import to_thread
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facegate.errors import FacegateError, TooLargeError
from facegate.settings import Settings
from facegate.storage.ratelimit import RateStore, bucket_key
from facegate.web.problems import facegate_error_handler, problem

log = logging.getLogger(__name__)

UNLIMITED_PATHS = frozenset({"/healthz"})  # a load balancer's probe; cheaper than the check
ADDRESS_STATE = "rate_limit_address"  # request.state attribute: the address counted
CALLER_STATE = "authenticated_caller"  # request.state attribute: (token, caller) of AuthGate
CAPTURE_PREFIX = "/v1/capture/"  # the capture page's routes: a capture token, not an API key
BUSY_RETRY_S = 1


class BodyLimit:
    """Refuse bodies over the limit, by Content-Length and by counting what actually arrives
    (a chunked upload declares no length).

    A chunked body is found too large while the route reads it; FastAPI turns any exception in
    form parsing into a plain 400, so the app's answer is dropped here and a 413 problem is sent
    in its place."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    def too_large(self) -> Any:
        return problem(
            413, "body_too_large", "the request body is over the limit", limit=self.limit
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self.too_large()(scope, receive, send)
            return
        seen, exceeded, started = 0, False, False

        async def counted() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    exceeded = True
                    raise TooLargeError("the request body is over the limit", code="body_too_large")
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # the app's answer to a body cut short: replaced below
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except TooLargeError:
            if not exceeded:
                raise
        if exceeded and not started:
            await self.too_large()(scope, receive, send)


Check = Callable[[str, str], Any]  # (kind "key" or "capture", token) -> caller, or None


def credentials(scope: Scope) -> tuple[str, str]:
    """(kind, token) as the dependencies in ``facegate.web.deps`` read them: a capture token on
    the capture page's routes, else a bearer key, else ``X-API-Key``."""
    headers = Headers(scope=scope)
    if str(scope["path"]).startswith(CAPTURE_PREFIX):
        return "capture", headers.get("x-capture-token", "")
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return "key", value.strip()
    return "key", headers.get("x-api-key", "")


def has_body(scope: Scope) -> bool:
    """Whether the request declares a body (a length above zero, or a chunked one)."""
    headers = Headers(scope=scope)
    length = headers.get("content-length")
    return "transfer-encoding" in headers or (
        length is not None and length.strip() not in ("", "0")
    )


class AuthGate:
    """Authenticate from the headers before a body is read; cap the uploads a worker holds.

    Why: FastAPI parses a route's form, reading the whole body into memory, before it runs the
    dependency that checks the key, so 8 anonymous 30 MB uploads once cost a worker ~300 MB. A
    request that carries a body to ``/v1/`` is checked here first, with its API key (or, under
    ``/v1/capture/``, its capture token); without a valid one it gets 401 and its body is
    dropped chunk by chunk as it arrives, never held. The caller found is left in the request
    state for ``caller_with`` (no second lookup). An authenticated upload then holds one of the
    worker's ``max_uploads`` slots until it is answered, since its bytes stay in memory while it
    waits for and goes through analysis; with none free it gets 503 ``busy`` with
    ``Retry-After``, its body dropped the same way. This bounds a worker's upload memory (slots x
    body limit) and its queue of analyses."""

    def __init__(self, app: ASGIApp, check: Check, max_uploads: int, drain_limit: int) -> None:
        self.app, self.check, self.max_uploads = app, check, max_uploads
        self.drain_limit = drain_limit  # the body limit: more is not read, the connection closes
        self.uploads = 0  # one event loop per worker: no lock needed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not str(scope["path"]).startswith("/v1/")
            or not has_body(scope)
        ):
            await self.app(scope, receive, send)
            return
        kind, token = credentials(scope)
        try:
            # the stores are blocking (SQLite, psycopg): keep them off the event loop
            caller = await to_thread.run_sync(self.check, kind, token) if token else None
        except FacegateError as exc:
            response = await facegate_error_handler(Request(scope), exc)
            await self.refuse(response, scope, receive, send)
            return
        if caller is None:
            code = "invalid_capture_token" if kind == "capture" else "unauthenticated"
            detail = (
                "a valid capture link is required"
                if kind == "capture"
                else "a valid API key is required"
            )
            await self.refuse(problem(401, code, detail), scope, receive, send)
            return
        if kind == "key":
            scope.setdefault("state", {})[CALLER_STATE] = (token, caller)
        if self.uploads >= self.max_uploads:
            busy = problem(
                503,
                "busy",
                "this worker is at its limit of uploads; retry shortly",
                retry_after_s=BUSY_RETRY_S,
            )
            await self.refuse(busy, scope, receive, send)
            return
        self.uploads += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.uploads -= 1

    async def refuse(self, response: Any, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer without keeping the body: its chunks are read and dropped as they arrive (up
        to ``drain_limit`` bytes), then the answer is sent. Answering first and closing would
        reset the connection under a client still sending, which then sees a reset instead of
        the 401 or 503 (seen with ``Connection: close`` clients under load)."""
        drained = 0
        while drained <= self.drain_limit:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        await response(scope, receive, send)


@dataclass(frozen=True)
class Rate:
    """A token bucket's parameters: ``per_minute`` on average, bursts of ``burst``."""

    per_minute: float
    burst_minutes: float  # the burst, as a fraction of a minute's allowance

    @property
    def per_s(self) -> float:
        return self.per_minute / 60.0

    @property
    def burst(self) -> float:
        return max(1.0, self.per_minute * self.burst_minutes)


Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def parse_networks(spec: str) -> Networks:
    """``FACEGATE_TRUSTED_PROXIES``: addresses or networks, comma-separated."""
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip()
    )


def _trusted(address: str, proxies: Networks) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in proxies)


def client_address(scope: Scope, proxies: Networks = ()) -> str:
    """The address a request's limits are counted against: the TCP peer, unless the peer is one
    of the configured reverse proxies; then the right-most address in ``X-Forwarded-For`` that
    is not a trusted proxy (the left part of the header is whatever the client wrote, so it
    is never believed). Without configured proxies the header is ignored entirely."""
    client = scope.get("client")
    peer = str(client[0]) if client else "unknown"
    if not proxies or not _trusted(peer, proxies):
        return peer
    forwarded = ",".join(
        v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"x-forwarded-for"
    )
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a malformed hop: fall back to the proxy itself
        if not _trusted(hop, proxies):
            return hop
    return hops[0] if hops else peer


# The bucket-key secret is derived (HMAC-SHA256) from the oldest master key under this label, so
# that it stays the same across rotations and on every machine that shares the keys.
RATE_SECRET_LABEL = b"facegate rate-limit buckets v1"


class RateLimits:
    """The policy: which buckets a request spends, at which rates, in the shared store.

    A store that fails (a database restart) lets requests through and logs once a minute: the
    limits are protection against abuse, and the route itself reports the outage properly."""

    def __init__(
        self, settings: Settings, store: RateStore, secret: Callable[[], bytes] = lambda: b""
    ) -> None:
        self.store = store
        self.per_key = Rate(settings.rate_per_minute, 1 / 6)
        self.per_link = Rate(settings.capture_rate_per_minute, 1 / 3)
        self.per_address = Rate(settings.address_rate_per_minute, 1 / 6)
        self.auth_failures = Rate(settings.auth_failures_per_minute, 1 / 2)
        self.proxies = parse_networks(settings.trusted_proxies)
        self._secret_of = secret
        self._secret: bytes | None = None
        self._lock = threading.Lock()
        self._last_error_log = 0.0

    def _key(self, kind: str, value: str) -> str:
        if self._secret is None:
            with self._lock:
                if self._secret is None:
                    self._secret = self._secret_of()
        return bucket_key(kind, value, self._secret)

    def _take(self, kind: str, value: str, rate: Rate, cost: float = 1.0) -> float:
        if rate.per_minute <= 0:
            return 0.0
        try:
            key = self._key(kind, value)
            return self.store.take(key, rate.per_s, rate.burst, time.time(), cost)
        except Exception as exc:  # fail open: see the class docstring
            now = time.monotonic()
            if now - self._last_error_log > 60:
                self._last_error_log = now
                log.warning("rate-limit store unavailable (%s): not limiting", type(exc).__name__)
            return 0.0

    def for_key(self, key_id: str) -> float:
        """Per API key (its id, never its secret), after authentication."""
        return self._take("key", key_id, self.per_key)

    def for_capture_link(self, token: str) -> float:
        """Per capture link: the token is the link, so its hash is the bucket."""
        return self._take("link", token, self.per_link)

    def before_auth(self, address: str) -> tuple[float, str]:
        """Every request from ``address``: its address bucket, then whether its failed
        authentications have run out (asked, not spent). (seconds to wait, why)."""
        wait = self._take("addr", address, self.per_address)
        if wait:
            return wait, "too many requests from this address"
        wait = self._take("fail", address, self.auth_failures, cost=0.0)
        return wait, "too many failed authentications from this address"

    def authenticated(self, address: str) -> None:
        """A request from ``address`` carried a valid API key: give back its address token.
        The address bucket is spent before authentication (atomically, so a flood cannot
        overshoot it) but only meant for traffic without a valid key, which has its own limit:
        a busy back end behind one address is then limited per key, not per address."""
        self._take("addr", address, self.per_address, cost=-1.0)

    def auth_failed(self, address: str) -> None:
        """A request from ``address`` was answered 401: spend one failure token."""
        self._take("fail", address, self.auth_failures)


def retry_after(wait: float) -> int:
    """Whole seconds for ``Retry-After`` (rounded up, at least 1)."""
    return max(1, int(wait + 0.999))


class RateLimit:
    """Per client address, before anything else: the address's request bucket, and its
    failed-authentication bucket, which every 401 answer spends. WebSocket scopes pass through:
    the liveness stream takes the same buckets itself, where it can answer in its protocol."""

    def __init__(self, app: ASGIApp, limits: RateLimits) -> None:
        self.app, self.limits = app, limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        limits = self.limits
        address = client_address(scope, limits.proxies)
        scope.setdefault("state", {})[ADDRESS_STATE] = address  # for ``authenticated``
        # the stores are blocking (SQLite, psycopg): keep them off the event loop
        wait, why = await to_thread.run_sync(limits.before_auth, address)
        if wait:
            response = problem(429, "rate_limited", why, retry_after_s=retry_after(wait))
            await response(scope, receive, send)
            return

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                await to_thread.run_sync(limits.auth_failed, address)
            await send(message)

        await self.app(scope, receive, watched)
