"""Challenges: random within bounds, signed, expiring, single use; every forgery fails alike."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from random import Random

import pytest

from facegate.liveness.actions import ACTIONS
from facegate.liveness.challenge import (
    ChallengeError,
    ChallengePolicy,
    create_challenge,
    sign,
    verify,
)
from facegate.liveness.ledger import ChallengeLedger

KEY = b"k" * 32
NOW = 1_800_000_000.0


def test_random_challenges_stay_in_bounds() -> None:
    rng = Random(3)
    seen = set()
    for _ in range(300):
        ch = create_challenge(ChallengePolicy(flash=True), now=NOW, rng=rng)
        assert 2 <= len(ch.actions) <= 4
        assert all(a in ACTIONS for a in ch.actions)
        assert all(a != b for a, b in zip(ch.actions, ch.actions[1:]))
        assert ch.flash is not None and 4 <= len(ch.flash) <= 6
        assert all(300 <= ms <= 500 for _, ms in ch.flash)
        assert ch.expires_at - ch.issued_at == 60
        seen.update(ch.actions)
    assert seen == set(ACTIONS)


def test_fixed_actions_and_no_flash_by_default() -> None:
    ch = create_challenge(ChallengePolicy(), now=NOW, actions=("blink", "turn_left"))
    assert ch.actions == ("blink", "turn_left") and ch.flash is None
    with pytest.raises(ChallengeError) as info:
        create_challenge(ChallengePolicy(), now=NOW, actions=("blink", "wave"))
    assert info.value.code == "invalid_actions"


def test_roundtrip() -> None:
    ch = create_challenge(ChallengePolicy(flash=True), now=NOW)
    assert verify(sign(ch, KEY), KEY, now=NOW + 1) == ch


def _tampered_payload(token: str) -> str:
    body, mac = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["actions"] = ["blink"]
    new = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    return new + "." + mac


@pytest.mark.parametrize(
    "forge",
    [
        _tampered_payload,
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),
        lambda t: t.replace(".", ""),
        lambda t: "garbage",
        lambda t: "",
    ],
)
def test_any_tampering_is_one_error(forge) -> None:
    token = sign(create_challenge(ChallengePolicy(), now=NOW), KEY)
    with pytest.raises(ChallengeError) as info:
        verify(forge(token), KEY, now=NOW)
    assert info.value.code == "invalid_challenge"


def test_wrong_key_and_expiry() -> None:
    token = sign(create_challenge(ChallengePolicy(ttl_s=60), now=NOW), KEY)
    with pytest.raises(ChallengeError) as info:
        verify(token, b"x" * 32, now=NOW)
    assert info.value.code == "invalid_challenge"
    with pytest.raises(ChallengeError) as info:
        verify(token, KEY, now=NOW + 61)
    assert info.value.code == "challenge_expired"


def test_single_use(tmp_path: Path) -> None:
    ledger = ChallengeLedger(tmp_path / "ledger.sqlite3")
    a = create_challenge(ChallengePolicy(), now=NOW)
    b = create_challenge(ChallengePolicy(), now=NOW)
    ledger.spend(a, now=NOW)
    ledger.spend(b, now=NOW)
    with pytest.raises(ChallengeError) as info:
        ChallengeLedger(tmp_path / "ledger.sqlite3").spend(a, now=NOW + 5)  # another process
    assert info.value.code == "challenge_used"
