"""Where a webhook may be sent: the URL check and the address policy (SSRF).

A tenant admin chooses the URL and the server posts to it, so the URL is a way into the
operator's network unless checked: by default only ``https`` to hosts whose every address is
public. The check runs when the URL is set and again at every attempt, and the request goes to
the address that was checked (the name is kept for ``Host`` and for TLS's SNI and certificate
check), so a name that resolves to a public address when checked and to ``127.0.0.1`` a moment
later (DNS rebinding) reaches nothing inside. ``allow_private``
(``FACEGATE_WEBHOOK_ALLOW_PRIVATE``) lifts the address check and allows ``http``: for endpoints
on the operator's own network, and the tests.

One parser (httpx's) reads the URL for the check and for the request line, so the two cannot
disagree about the host or the path; characters that are not printable (controls, spaces) are
refused outright. A name that does not resolve and one that resolves inside answer the same
code (``webhook_url_not_allowed``), so that a tenant admin cannot map the operator's internal
names; the log says which, by a reason code only (never the host).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from facegate.errors import InputError

log = logging.getLogger(__name__)

Resolver = Callable[[str, int], list[str]]
MAX_URL_CHARS = 2000
RESOLVE_TIMEOUT_S = 10.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
_TEREDO = ipaddress.IPv6Network("2001::/32")
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the IPv4 in the last 32 bits
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215: the operator's own translator
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # ::a.b.c.d (deprecated), :: and ::1 included


def resolve(host: str, port: int, timeout_s: float = RESOLVE_TIMEOUT_S) -> list[str]:
    """Every address the name resolves to (IPv4 and IPv6), or [] when it does not resolve;
    ``TimeoutError`` when the resolver has not answered within ``timeout_s``. The system
    resolver cannot be interrupted, so it runs in a thread of its own that is left to finish
    (the system's resolver timeouts end it): a slow name costs its attempt, never its caller
    more than ``timeout_s``."""
    try:
        return [str(ipaddress.ip_address(host))]  # a literal: nothing to ask
    except ValueError:
        pass
    box: list[list[str]] = []
    done = threading.Event()

    def run() -> None:
        try:
            box.append(_getaddrinfo(host, port))
        finally:
            done.set()

    threading.Thread(target=run, name="webhook-resolve", daemon=True).start()
    if not done.wait(max(0.0, timeout_s)):
        raise TimeoutError("the webhook host did not resolve in time")
    return box[0] if box else []


def _getaddrinfo(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):
        return []
    out: list[str] = []
    for info in infos:
        addr = str(info[4][0]).split("%")[0]  # drop an IPv6 scope id
        if addr not in out:
            out.append(addr)
    return out


@dataclass(frozen=True)
class Target:
    """A checked endpoint: where to connect (``address``) and what to call it (``host``, ASCII:
    an international name in its IDNA form)."""

    scheme: str
    host: str
    port: int
    path: str  # path and query, percent-encoded ASCII
    address: str

    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


def _public_v4(ip: ipaddress.IPv4Address) -> bool:
    return ip.is_global and not ip.is_multicast


def public_address(addr: str) -> bool:
    """Whether the server may post to this address without ``allow_private``. IPv4: global and
    not multicast. IPv6: IPv4-mapped (``::ffff:a.b.c.d``) and -compatible (``::a.b.c.d``)
    forms are judged as their IPv4; otherwise only global unicast (2000::/3), and within it
    6to4 (2002::/16) only when the IPv4 it embeds is public, Teredo (2001::/32) never (its
    relays reach IPv4 hosts the filter cannot see); NAT64's well-known prefix (64:ff9b::/96)
    only when the embedded IPv4 is public, its local-use prefix (64:ff9b:1::/48) never.
    Python's ``is_global`` alone misses several of these (3.11)."""
    ip = ipaddress.ip_address(addr)
    if isinstance(ip, ipaddress.IPv4Address):
        return _public_v4(ip)
    if ip.ipv4_mapped is not None:
        return _public_v4(ip.ipv4_mapped)
    embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _V4_COMPATIBLE or ip in _NAT64_WELL_KNOWN:
        return _public_v4(embedded)
    if ip in _NAT64_LOCAL or ip in _TEREDO or ip not in _GLOBAL_UNICAST:
        return False
    if ip in _SIX_TO_FOUR:
        six_to_four = ip.sixtofour
        return six_to_four is not None and _public_v4(six_to_four)
    return ip.is_global and not ip.is_multicast


def _printable(url: str) -> bool:
    return all(ch.isprintable() and not ch.isspace() for ch in url)


def check_url(url: str, *, allow_private: bool, resolver: Resolver = resolve) -> Target:
    """The endpoint a URL names, or ``InputError``: ``webhook_url_invalid`` (not an absolute
    http(s) URL, a character that is not printable, credentials or a fragment in it, a host
    with an IPv6 zone id or any ``%``, or with a trailing dot),
    ``webhook_url_not_allowed`` (http, a host that does not resolve or resolves to an address
    that is not public, unless ``allow_private``: both the same code). ``TimeoutError`` from
    the resolver passes through (the caller decides what a slow name means)."""
    if len(url) > MAX_URL_CHARS:
        raise InputError("the webhook URL is too long", code="webhook_url_invalid")
    if not _printable(url):
        raise InputError(
            "the webhook URL holds a space or a control character", code="webhook_url_invalid"
        )
    try:
        parsed = httpx.URL(url)
        scheme, host = parsed.scheme, parsed.raw_host.decode("ascii")
        port, path = parsed.port, parsed.raw_path.decode("ascii")
    except (httpx.InvalidURL, TypeError, ValueError):
        raise InputError("the webhook URL does not parse", code="webhook_url_invalid") from None
    if scheme not in ("https", "http") or not host or not 0 < (port or 443) < 65536:
        raise InputError(
            "the webhook URL must be an absolute https URL", code="webhook_url_invalid"
        )
    if parsed.userinfo or parsed.fragment or "#" in url:
        raise InputError(
            "the webhook URL must not carry credentials or a fragment (the signature"
            " authenticates the server)",
            code="webhook_url_invalid",
        )
    if "%" in host or host.endswith("."):
        # a zone id (``fe80::1%eth0``) names an interface of the server, not a host, and a
        # percent-encoded name is read differently by resolvers; a trailing dot makes a name
        # that ``Host``, SNI and the certificate check do not match as the tenant meant it
        raise InputError(
            "the webhook host must not carry a zone id, a percent sign or a trailing dot",
            code="webhook_url_invalid",
        )
    if scheme == "http" and not allow_private:
        raise InputError("the webhook URL must use https", code="webhook_url_not_allowed")
    port = port or (443 if scheme == "https" else 80)
    addresses = resolver(host, port)
    if not addresses:
        reason = "unresolvable"
    elif not allow_private and not all(public_address(a) for a in addresses):
        reason = "not_public"
    else:
        return Target(scheme, host, port, path or "/", addresses[0])
    log.info("webhook URL refused: %s", reason)  # for the operator; the host is not logged
    raise InputError(
        "the webhook host does not resolve, or resolves to an address that is not public"
        " (loopback, private, link-local, reserved)",
        code="webhook_url_not_allowed",
    )
