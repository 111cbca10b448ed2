"""The error tree: every code raised anywhere in facegate answers with a client status (4xx) or
a deliberate 503, one status per code, and the CLI's exit status comes from the class."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import facegate.errors as errors

SRC = Path(errors.__file__).resolve().parent
CLASSES = {
    name: cls
    for name, cls in vars(errors).items()
    if inspect.isclass(cls) and issubclass(cls, errors.FacegateError)
}
# Faults of the server or its operator, never of a request: they answer 500 internal_error.
SERVER_FAULTS = {"FacegateError", "ConfigError", "ProtectionError"}


def raised_codes() -> list[tuple[str, str, str]]:
    """(file:line, class name, code) for every error of the tree constructed in src/facegate."""
    found = []
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            name = node.func.id
            if name not in CLASSES:
                continue
            code = CLASSES[name].default_code
            for kw in node.keywords:
                if kw.arg == "code" and isinstance(kw.value, ast.Constant):
                    code = str(kw.value.value)
            found.append((f"{path.relative_to(SRC)}:{node.lineno}", name, code))
    return found


def test_the_scan_sees_the_tree() -> None:
    names = {name for _, name, _ in raised_codes()}
    assert {"InputError", "NotFoundError", "ForbiddenError", "ConflictError"} <= names


def test_every_raised_code_maps_to_a_non_500_status() -> None:
    bad = [
        (where, name, code)
        for where, name, code in raised_codes()
        if CLASSES[name].status == 500 and name not in SERVER_FAULTS
    ]
    assert not bad
    bare = [(where, code) for where, name, code in raised_codes() if name == "FacegateError"]
    assert not bare, "raise a class that says what went wrong, not the base class"


def test_one_status_per_code() -> None:
    statuses: dict[str, set[int]] = {}
    for _, name, code in raised_codes():
        statuses.setdefault(code, set()).add(CLASSES[name].status)
    assert {c: s for c, s in statuses.items() if len(s) > 1} == {}


def test_exit_codes_come_from_the_class() -> None:
    assert errors.InputError("x").exit_code == 2
    assert errors.FaceError("x").exit_code == 2
    assert errors.NotFoundError("x").exit_code == 2
    assert errors.ModelError("x").exit_code == 1
    assert errors.ConfigError("x").exit_code == 1
    assert errors.ChallengeExpiredError("x").status == 410
    assert errors.TooLargeError("x", code="image_too_large").status == 413
