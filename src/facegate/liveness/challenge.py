"""Random, signed, expiring, single-use liveness challenges (pure: time and randomness are inputs).

A challenge is a small JSON payload signed with HMAC-SHA256 under a server key:
``token = base64url(payload) + "." + base64url(mac)``. Every way a token can be wrong (bad
encoding, bad MAC, bad fields) raises the same ``ChallengeError("invalid_challenge")``, so a
forger learns nothing from the error. Expiry is checked after the MAC, and single use is the
ledger's job (``facegate.liveness.ledger``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from random import Random

from facegate.errors import ChallengeError, ChallengeExpiredError
from facegate.liveness.actions import ACTIONS
from facegate.liveness.flash import FLASH_PALETTE
from facegate.protection.tokens import open_token, sign_token

FLASH_COLOURS = FLASH_PALETTE  # what the page can show and the judge can read back
TOKEN_VERSION = 1


@dataclass(frozen=True)
class ChallengePolicy:
    min_actions: int = 2
    max_actions: int = 4
    ttl_s: float = 60.0
    flash: bool = False
    flash_colours_min: int = 4
    flash_colours_max: int = 6
    flash_ms_min: int = 300
    flash_ms_max: int = 500

    def __post_init__(self) -> None:
        if not 1 <= self.min_actions <= self.max_actions <= 6:
            raise ValueError("need 1 <= min_actions <= max_actions <= 6")


@dataclass(frozen=True)
class Challenge:
    id: str
    nonce: str
    actions: tuple[str, ...]
    issued_at: float
    expires_at: float
    flash: tuple[tuple[str, int], ...] | None = None  # (colour, duration ms) shown in order
    # what it was issued for: the answer can be used for this subject and purpose only
    subject_id: str | None = None
    purpose: str | None = None

    def payload(self) -> dict[str, object]:
        return {
            "v": TOKEN_VERSION,
            "id": self.id,
            "nonce": self.nonce,
            "actions": list(self.actions),
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "flash": [list(step) for step in self.flash] if self.flash else None,
            "subject_id": self.subject_id,
            "purpose": self.purpose,
        }


def random_actions(policy: ChallengePolicy, rng: Random) -> tuple[str, ...]:
    """2-4 actions, no action twice in a row (two consecutive blinks read as one long one)."""
    n = rng.randint(policy.min_actions, policy.max_actions)
    out: list[str] = []
    while len(out) < n:
        action = rng.choice(ACTIONS)
        if not out or out[-1] != action:
            out.append(action)
    return tuple(out)


def random_flash(policy: ChallengePolicy, rng: Random) -> tuple[tuple[str, int], ...]:
    n = rng.randint(policy.flash_colours_min, policy.flash_colours_max)
    out: list[tuple[str, int]] = []
    while len(out) < n:
        colour = rng.choice(FLASH_COLOURS)
        if not out or out[-1][0] != colour:
            out.append((colour, rng.randint(policy.flash_ms_min, policy.flash_ms_max)))
    return tuple(out)


def create_challenge(
    policy: ChallengePolicy,
    *,
    now: float,
    rng: Random | None = None,
    actions: tuple[str, ...] | None = None,
    subject_id: str | None = None,
    purpose: str | None = None,
) -> Challenge:
    """A fresh challenge. ``actions`` fixes the sequence (evaluation, tests); still signed and
    single-use like any other."""
    rng = rng or secrets.SystemRandom()
    if actions is not None:
        unknown = [a for a in actions if a not in ACTIONS]
        if unknown or not actions or len(actions) > 6:
            raise ChallengeError(
                f"actions must be 1 to 6 of {', '.join(ACTIONS)}",
                code="invalid_actions",
                unknown=unknown,
            )
    chosen = tuple(actions) if actions is not None else random_actions(policy, rng)
    return Challenge(
        id=secrets.token_hex(16),
        nonce=secrets.token_hex(16),
        actions=chosen,
        issued_at=round(now, 3),
        expires_at=round(now + policy.ttl_s, 3),
        flash=random_flash(policy, rng) if policy.flash else None,
        subject_id=subject_id,
        purpose=purpose,
    )


def sign(challenge: Challenge, key: bytes) -> str:
    return sign_token(key, "facegate-challenge", challenge.payload())


def verify(token: str, key: bytes, *, now: float) -> Challenge:
    """The challenge inside a token, or ``ChallengeError``: invalid (any tampering) or expired."""
    try:
        p = open_token(key, "facegate-challenge", token)
        if p.get("v") != TOKEN_VERSION:
            raise ValueError("version")
        actions = tuple(str(a) for a in p["actions"])
        if not actions or any(a not in ACTIONS for a in actions):
            raise ValueError("actions")
        flash = tuple((str(c), int(ms)) for c, ms in p["flash"]) if p.get("flash") else None
        challenge = Challenge(
            id=str(p["id"]),
            nonce=str(p["nonce"]),
            actions=actions,
            issued_at=float(p["issued_at"]),
            expires_at=float(p["expires_at"]),
            flash=flash,
            subject_id=None if p.get("subject_id") is None else str(p["subject_id"]),
            purpose=None if p.get("purpose") is None else str(p["purpose"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ChallengeError("the challenge token is not valid") from exc
    if now > challenge.expires_at:
        raise ChallengeExpiredError("the challenge has expired")
    if now < challenge.issued_at - 5:
        raise ChallengeError("the challenge token is not valid")
    return challenge
