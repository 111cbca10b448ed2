"""Key material and embeddings never show in ``repr``/``str``: a repr ends up in logs, tracebacks
(pytest's, Sentry's) and debugger output, so a key field printed once is a key leaked."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil

import numpy as np
import pytest

import facegate.protection
from facegate.protection.crypto import KeyRing
from facegate.protection.tenant import TenantSecrets
from facegate.types import Embedding

# Recognisable bytes, so a leak in any spelling (raw repr, hex, either case) is found.
KEY_A = bytes(range(0xA0, 0xC0))
KEY_B = bytes(range(0x40, 0x60))

# A field with one of these in its name holds a secret or biometric data.
SECRET_WORDS = ("key", "dek", "seed", "secret", "vector", "embedding")
# ... except these, which name a secret or a space without holding one.
NOT_SECRET = {"embedding_space", "space_id", "key_id", "kek_version", "dek_version"}


def _leaks(text: str, secret: bytes) -> bool:
    return secret.hex() in text.lower() or repr(secret)[2:-1] in text or str(secret) in text


@pytest.mark.parametrize("show", [repr, str])
def test_keyring_hides_master_keys(show: object) -> None:
    ring = KeyRing({1: KEY_A, 2: KEY_B}, current=2)
    text = show(ring)  # type: ignore[operator]
    assert "KeyRing" in text and "current=2" in text
    assert not _leaks(text, KEY_A) and not _leaks(text, KEY_B)


@pytest.mark.parametrize("show", [repr, str])
def test_tenant_secrets_hide_data_key_and_seed(show: object) -> None:
    secrets = TenantSecrets("acme", dek=KEY_A, seed=KEY_B, transform_version=3)
    text = show(secrets)  # type: ignore[operator]
    assert "acme" in text and "transform_version=3" in text
    assert not _leaks(text, KEY_A) and not _leaks(text, KEY_B)


def test_embedding_hides_its_vector() -> None:
    vector = np.full(8, 0.123456, dtype=np.float32)
    text = repr(Embedding(vector, "space-1"))
    assert "space-1" in text and "0.123" not in text


def _dataclasses_of(module_names: list[str]) -> list[type]:
    found = []
    for name in module_names:
        module = importlib.import_module(name)
        for obj in vars(module).values():
            is_class = dataclasses.is_dataclass(obj) and isinstance(obj, type)
            if is_class and obj.__module__ == name:
                found.append(obj)
    return found


def test_no_secret_field_is_in_a_repr() -> None:
    """Every dataclass field named like a key or an embedding, in the modules that hold them,
    is ``repr=False``: a new field of that kind cannot be added without deciding."""
    protection = [
        f"facegate.protection.{m.name}" for m in pkgutil.iter_modules(facegate.protection.__path__)
    ]
    classes = _dataclasses_of([*protection, "facegate.types", "facegate.api"])
    assert KeyRing in classes and TenantSecrets in classes
    shown = [
        f"{cls.__name__}.{f.name}"
        for cls in classes
        for f in dataclasses.fields(cls)
        if f.repr
        and f.name not in NOT_SECRET
        and any(word in f.name.lower() for word in SECRET_WORDS)
    ]
    assert shown == []
