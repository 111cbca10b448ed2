"""Shared fixtures and the test tiers. Real data comes from ../shared/data (never copied into
the repository); helpers live in ``tests/helpers``.

Tiers are markers applied here by directory, so no test file has to remember them:

| directory      | markers                                  | needs                          |
|----------------|------------------------------------------|--------------------------------|
| tests/unit     | ``unit``                                 | nothing but the package (a few |
|                |                                          | read one photo of shared data) |
| tests/data     | ``data``                                 | ../shared/data                 |
| tests/service  | ``service`` (+ ``postgres`` by param id) | ../shared/data, pgserver       |
| tests/web      | ``browser``                              | Chromium, ../shared/data       |

``slow`` marks the few longest tests (listed in ``SLOW``, measured with ``--durations``); they
run under ``CI=true`` or when ``-m`` names them (``-m slow``), and are skipped otherwise.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from tests.helpers import encode, in_ci, load_rgb, require_shared_data

__all__ = ["encode", "load_rgb"]  # still imported from here by tests/data/test_engine_faces.py

TESTS = Path(__file__).resolve().parent
TIER_MARKERS = {
    "unit": ("unit",),
    "data": ("data",),
    "service": ("service",),
    "web": ("browser",),
}
# node ids (without parameters) of the longest tests: `pytest -m "data or unit" --durations=25`
SLOW = {
    "tests/data/test_dlib_agreement.py::test_onnx_embeddings_agree_with_dlib_on_every_face",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run_slow = in_ci() or "slow" in (config.getoption("markexpr", "") or "")
    skip_slow = pytest.mark.skip(reason="slow: runs under CI=true or with -m slow")
    for item in items:
        path = Path(str(item.path)).resolve()
        if TESTS not in path.parents:
            continue
        tier = path.relative_to(TESTS).parts[0]
        for name in TIER_MARKERS.get(tier, ()):
            item.add_marker(name)
        if tier == "service" and "postgres" in item.name:  # the [postgres] parameter, or by name
            item.add_marker("postgres")
        if item.nodeid.split("[")[0] in SLOW:
            item.add_marker("slow")
        if "slow" in item.keywords and not run_slow:
            item.add_marker(skip_slow)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return require_shared_data()


@pytest.fixture(scope="session")
def face_rows(shared_data: Path) -> list[dict[str, str]]:
    with (shared_data / "faces" / "labels.csv").open() as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="session")
def engine():
    from facegate.engine.pipeline import FaceEngine

    return FaceEngine()
