"""What every command module shares: JSON on stdout, the exit codes and reading an input file.

Kept apart from ``main.py`` so the command modules can import it without importing the parser
(which imports them)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from facegate.errors import InputError

EXIT_REFUSED = 2
EXIT_FAILED = 1


def _print(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def _read_image(path: str) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise InputError("no such file", code="file_not_found", file=path)
    return p.read_bytes()
