"""The webhook SSRF filter on IP literals (no network: a literal resolves to itself), the
answer parser of the sender, and the resolver's bound."""

from __future__ import annotations

import socket
import time

import pytest

from facegate.errors import InputError
from facegate.service import webhook_targets
from facegate.service.webhook_sender import final_status
from facegate.service.webhook_targets import check_url, public_address, resolve

INSIDE = [
    "127.0.0.1",
    "10.0.0.1",
    "169.254.169.254",
    "100.64.0.1",
    "0.0.0.0",
    "::1",
    "::",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b:1::a00:1",  # local-use NAT64
    "64:ff9b:1::101:101",  # local-use NAT64, even of a public address
    "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "::127.0.0.1",  # IPv4-compatible
    "::a9fe:a9fe",
    "::ffff:0:7f00:1",  # IPv4-translated
    "fec0::1",  # site-local
    "fe80::1",
    "fc00::1",
    "ff02::1",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "2001:db8::1",  # documentation
]
PUBLIC = [
    "1.1.1.1",
    "93.184.215.14",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:1.1.1.1",
    "64:ff9b::101:101",  # NAT64 of 1.1.1.1
    "2002:101:101::1",  # 6to4 of 1.1.1.1
]


@pytest.mark.parametrize("addr", INSIDE)
def test_inside_addresses_are_refused(addr: str) -> None:
    assert not public_address(addr)
    host = f"[{addr}]" if ":" in addr else addr
    with pytest.raises(InputError) as e:
        check_url(f"https://{host}/hook", allow_private=False)
    assert e.value.code == "webhook_url_not_allowed"


@pytest.mark.parametrize("addr", PUBLIC)
def test_public_addresses_pass(addr: str) -> None:
    assert public_address(addr)
    host = f"[{addr}]" if ":" in addr else addr
    target = check_url(f"https://{host}:8443/h?x=1", allow_private=False)
    assert target.port == 8443 and target.path == "/h?x=1"


@pytest.mark.parametrize(
    "url",
    [
        "https://1.1.1.1/a\x7fb",
        "https://1.1.1.1/a\x00b",
        "https://1.1.1.1/a b",
        "https://1.1.1.1/a\tb",
        "https://1.1.1.1/a\nb",
        "https://1.1.1.1/a\u2028b",
        "https://1.1.1.1:99999/",
        "https://[::1/",
        "/relative",
        "https://1.1.1.1/#frag",
    ],
)
def test_unsendable_urls_are_invalid(url: str) -> None:
    with pytest.raises(InputError) as e:
        check_url(url, allow_private=True)
    assert e.value.code == "webhook_url_invalid"


@pytest.mark.parametrize(
    "url",
    [
        "https://[fe80::1%25eth0]/hook",  # an IPv6 zone id, percent-encoded
        "https://[fe80::1%eth0]/hook",
        "https://[2606:4700:4700::1111%251]/hook",  # even on a public address
        "https://rp.example./hook",  # a trailing dot
        "https://1.1.1.1./hook",
        "https://rp.example../hook",
        "https://rp%2eexample/hook",  # a percent-encoded name
    ],
)
def test_zone_ids_percent_signs_and_trailing_dots_are_refused(url: str) -> None:
    """Refused before any lookup, whatever the resolver says and even with ``allow_private``."""
    asked: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["1.1.1.1"]

    for allow_private in (False, True):
        with pytest.raises(InputError) as e:
            check_url(url, allow_private=allow_private, resolver=resolver)
        assert e.value.code == "webhook_url_invalid"
    assert asked == []


def test_unresolvable_and_inside_names_answer_alike() -> None:
    errors = []
    for addresses in ([], ["10.0.0.7"]):
        with pytest.raises(InputError) as e:
            check_url(
                "https://rp.example/", allow_private=False, resolver=lambda h, p, a=addresses: a
            )
        errors.append((e.value.code, str(e.value)))
    assert errors[0] == errors[1] and errors[0][0] == "webhook_url_not_allowed"


def test_international_names_are_sent_in_their_ascii_form() -> None:
    t = check_url(
        "https://bücher.example/ä?q=1", allow_private=False, resolver=lambda h, p: ["1.1.1.1"]
    )
    assert t.host == "xn--bcher-kva.example" and t.path == "/%C3%A4?q=1"


def test_a_slow_resolver_costs_its_caller_no_more_than_the_bound(monkeypatch) -> None:
    def slow(*args: object, **kwargs: object) -> list[object]:
        time.sleep(3)
        return []

    monkeypatch.setattr(webhook_targets.socket, "getaddrinfo", slow)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        resolve("slow.example", 443, timeout_s=0.3)
    assert time.monotonic() - started < 1.0
    assert resolve("1.1.1.1", 443, timeout_s=0.0) == ["1.1.1.1"]  # literals ask nobody
    assert socket.getaddrinfo is slow


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", None),
        (b"HTTP/1.1 20", None),
        (b"HTTP/1.1 204 No Content\r\n", None),  # the headers are not complete yet
        (b"HTTP/1.1 200 OK\r\nX-Slow: aaaa", None),
        (b"HTTP/1.1 204 No Content\r\n\r\n", 204),
        (b"HTTP/1.0 500\r\nContent-Length: 3\r\n\r\nab", 500),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 302 Found\r\nLoc: x\r\n\r\n", 302),
        (b"HTTP/1.1 103 Early Hints\r\nLink: x\r\n", None),
    ],
)
def test_the_status_and_headers_are_all_that_is_read(data: bytes, code: int | None) -> None:
    assert final_status(data) == code


@pytest.mark.parametrize("data", [b"SSH-2.0-x\r\n", b"HTTP/2 200\r\n", b"<html>", b"H" * 2000])
def test_other_answers_are_refused(data: bytes) -> None:
    with pytest.raises(Exception) as e:
        final_status(data)
    assert type(e.value).__name__ == "_BadAnswerError"
