"""Limits that apply before any route runs: the body size, and rates per client address, per
API key and per capture link, held in a store that every worker and machine shares.

The body limit is ASGI middleware because it must stop an upload as it arrives, not after
Starlette has read it. ``RateLimit`` is ASGI middleware too, the outermost layer, so that an
anonymous flood or a key-guessing run is refused before any body is read or any key is checked;
the per-key and per-link buckets are taken by the dependencies in ``facegate.web.deps`` once
they know who is calling.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from anyio import to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facegate.errors import TooLargeError
from facegate.settings import Settings
from facegate.storage.ratelimit import RateStore, bucket_key
from facegate.web.problems import problem

log = logging.getLogger(__name__)

UNLIMITED_PATHS = frozenset({"/healthz"})  # a load balancer's probe; cheaper than the check
ADDRESS_STATE = "rate_limit_address"  # request.state attribute: the address counted


class BodyLimit:
    """Refuse bodies over the limit, by Content-Length and by counting what actually arrives
    (a chunked upload declares no length)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await problem(
                413, "body_too_large", "the request body is over the limit", limit=self.limit
            )(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise TooLargeError("the request body is over the limit", code="body_too_large")
            return message

        await self.app(scope, counted, send)


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


def client_address(scope: Scope) -> str:
    """The address a request's limits are counted against: the TCP peer.

    The hook for trusted proxies: behind a reverse proxy the peer is the proxy, so every client
    shares one address bucket. Honouring ``X-Forwarded-For`` from configured proxies belongs here
    (and only here); until then, raise or switch off the address limits behind a proxy."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def rate_secret(key: bytes) -> bytes:
    """The bucket-key secret, derived from the oldest master key so that it stays the same
    across rotations and on every machine that shares the keys."""
    return hmac.new(key, b"facegate rate-limit buckets v1", hashlib.sha256).digest()


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
    failed-authentication bucket, which every 401 answer spends."""

    def __init__(self, app: ASGIApp, limits: RateLimits) -> None:
        self.app, self.limits = app, limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        limits, address = self.limits, client_address(scope)
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
