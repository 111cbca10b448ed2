"""prefetch: items in order, errors re-raised in the consumer, an early stop ends the producer."""

from __future__ import annotations

import threading

import pytest

from facegate.errors import InputError
from facegate.liveness.video import prefetch


def test_items_arrive_in_order() -> None:
    assert list(prefetch(iter(range(100)), depth=2)) == list(range(100))


def test_an_error_in_the_producer_is_raised_to_the_consumer() -> None:
    def items():
        yield 1
        raise InputError("bad", code="video_too_long")

    got = []
    with pytest.raises(InputError) as exc:
        for item in prefetch(items()):
            got.append(item)
    assert got == [1] and exc.value.code == "video_too_long"


def test_stopping_early_ends_the_producer() -> None:
    produced = []

    def items():
        for k in range(10_000):
            produced.append(k)
            yield k

    for item in prefetch(items(), depth=2):
        if item == 3:
            break
    assert len(produced) < 20
    assert not any(t.name == "facegate-decode" for t in threading.enumerate())
