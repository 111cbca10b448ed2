"""Sending one webhook: the endpoint check (SSRF), the signature, and one HTTP POST.

A tenant admin chooses the URL and the server posts to it, so the URL is a way into the
operator's network unless checked: by default only ``https`` to hosts whose every address is
public (not loopback, private, link-local, shared, multicast or reserved). The check runs when
the URL is set and again at every attempt, and the request goes to the address that was checked
(the name is kept for ``Host`` and for TLS's SNI and certificate check), so a name that resolves
to a public address when checked and to ``127.0.0.1`` a moment later (DNS rebinding) reaches
nothing inside. No proxy from the environment is used, and redirects are not followed (a
3xx is a failed attempt). ``allow_private`` (``FACEGATE_WEBHOOK_ALLOW_PRIVATE``) lifts the
address check and allows ``http``: for endpoints on the operator's own network, and the tests.

The signature: ``Facegate-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`` with
``Facegate-Timestamp`` (unix seconds) and ``Facegate-Event-Id`` (docs/webhooks.md shows a
receiver's check).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from facegate import __version__
from facegate.errors import InputError

Resolver = Callable[[str, int], list[str]]
MAX_URL_CHARS = 2000


def resolve(host: str, port: int) -> list[str]:
    """Every address the name resolves to (IPv4 and IPv6), or [] when it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    out: list[str] = []
    for info in infos:
        addr = str(info[4][0]).split("%")[0]  # drop an IPv6 scope id
        if addr not in out:
            out.append(addr)
    return out


@dataclass(frozen=True)
class Target:
    """A checked endpoint: where to connect (``address``) and what to call it (``host``)."""

    scheme: str
    host: str
    port: int
    path: str  # path and query
    address: str

    def request_url(self) -> str:
        ip = ipaddress.ip_address(self.address)
        at = f"[{ip}]" if ip.version == 6 else str(ip)
        return f"{self.scheme}://{at}:{self.port}{self.path}"

    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


def public_address(addr: str) -> bool:
    ip = ipaddress.ip_address(addr)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str, *, allow_private: bool, resolver: Resolver = resolve) -> Target:
    """The endpoint a URL names, or ``InputError``: ``webhook_url_invalid`` (not an absolute
    http(s) URL, credentials or a fragment in it), ``webhook_url_not_allowed`` (http, or an
    address that is not public, unless ``allow_private``), ``webhook_url_unresolvable``."""
    if len(url) > MAX_URL_CHARS:
        raise InputError("the webhook URL is too long", code="webhook_url_invalid")
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError:
        raise InputError("the webhook URL does not parse", code="webhook_url_invalid") from None
    if parts.scheme not in ("https", "http") or not host:
        raise InputError(
            "the webhook URL must be an absolute https URL", code="webhook_url_invalid"
        )
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise InputError(
            "the webhook URL must not carry credentials or a fragment (the signature"
            " authenticates the server)",
            code="webhook_url_invalid",
        )
    if parts.scheme == "http" and not allow_private:
        raise InputError("the webhook URL must use https", code="webhook_url_not_allowed")
    port = port or (443 if parts.scheme == "https" else 80)
    addresses = resolver(host, port)
    if not addresses:
        raise InputError("the webhook host does not resolve", code="webhook_url_unresolvable")
    if not allow_private and not all(public_address(a) for a in addresses):
        raise InputError(
            "the webhook host resolves to a loopback, private or link-local address",
            code="webhook_url_not_allowed",
        )
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, host, port, path, addresses[0])


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


def post(target: Target, body: bytes, headers: dict[str, str], timeout_s: float) -> AttemptResult:
    """One POST to the checked address; 2xx is delivered, anything else is a failed attempt
    with a code: ``http_status``, ``redirect_not_followed``, ``timeout``, ``tls_error``,
    ``connect_failed``, ``request_failed``. The response body is never read.

    httpx's transport, not its ``Client``: the client logs every request's URL at INFO (the
    URL's query may hold the receiver's token), reads proxies from the environment and may
    follow redirects; the transport does none of that."""
    extensions: dict[str, Any] = {"timeout": httpx.Timeout(timeout_s).as_dict()}
    if target.scheme == "https":
        extensions["sni_hostname"] = target.host  # and the certificate is checked for it
    request = httpx.Request(
        "POST",
        target.request_url(),
        content=body,
        headers={**headers, "Host": target.host_header(), "Connection": "close"},
        extensions=extensions,
    )
    try:
        with httpx.HTTPTransport(verify=True, retries=0) as transport:
            response = transport.handle_request(request)
            code = response.status_code
            response.close()
    except httpx.TimeoutException:
        return AttemptResult(None, "timeout")
    except httpx.ConnectError as exc:
        return AttemptResult(None, "tls_error" if _caused_by_tls(exc) else "connect_failed")
    except httpx.HTTPError:
        return AttemptResult(None, "request_failed")
    if 200 <= code < 300:
        return AttemptResult(code, None)
    return AttemptResult(code, "redirect_not_followed" if 300 <= code < 400 else "http_status")


def _caused_by_tls(exc: BaseException) -> bool:
    """httpx wraps httpcore's error, which wraps the ``ssl`` one."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
