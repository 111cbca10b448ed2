"""The address the per-address limits count: the TCP peer, and X-Forwarded-For only from
configured proxies (right-most untrusted hop; what the client itself wrote is never believed)."""

from __future__ import annotations

import pytest

from facegate.errors import ConfigError
from facegate.settings import Settings
from facegate.web.middleware import client_address, parse_networks


def scope(peer: str, forwarded: str | None = None) -> dict:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded is not None else []
    return {"type": "http", "client": (peer, 5000), "headers": headers}


PROXIES = parse_networks("127.0.0.1, 10.0.0.0/8")


def test_without_proxies_the_header_is_ignored() -> None:
    assert client_address(scope("203.0.113.7", "198.51.100.1")) == "203.0.113.7"


def test_a_trusted_proxy_passes_the_client_on() -> None:
    assert client_address(scope("127.0.0.1", "198.51.100.1"), PROXIES) == "198.51.100.1"
    # a forged left part is skipped: the right-most untrusted hop is the one the proxy saw
    forged = "1.2.3.4, 198.51.100.1, 10.1.2.3"
    assert client_address(scope("127.0.0.1", forged), PROXIES) == "198.51.100.1"


def test_an_untrusted_peer_cannot_claim_an_address() -> None:
    assert client_address(scope("203.0.113.7", "198.51.100.1"), PROXIES) == "203.0.113.7"
    assert client_address(scope("127.0.0.1", "not-an-ip"), PROXIES) == "127.0.0.1"


def test_the_setting_is_checked() -> None:
    env = {"FACEGATE_TRUSTED_PROXIES": "10.0.0.0/8,::1"}
    assert Settings.from_env(env).trusted_proxies == "10.0.0.0/8,::1"
    with pytest.raises(ConfigError):
        Settings.from_env({"FACEGATE_TRUSTED_PROXIES": "proxy.example"})
