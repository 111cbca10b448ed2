"""DET-curve plot and JSON report for a verification evaluation (file output lives here only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from facegate.errors import ConfigError
from facegate.eval.det import det_curve


def plot_det(genuine: np.ndarray, impostor: np.ndarray, path: Path, title: str) -> None:
    """The DET curve as a PNG. matplotlib is an evaluation-only dependency (``facegate[eval]``),
    imported here so that the service never loads it."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError(
            "the DET plot needs matplotlib: pip install 'facegate[eval]'",
            code="eval_extra_missing",
        ) from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, fmr, fnmr = det_curve(genuine, impostor)
    floor = 0.5 / max(len(impostor), 1)
    fig, ax = plt.subplots(figsize=(6, 5), dpi=110)
    ax.loglog(np.maximum(fmr, floor), np.maximum(fnmr, 0.5 / max(len(genuine), 1)), lw=1.6)
    for target in (1e-2, 1e-3, 1e-4):
        ax.axvline(target, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("False match rate (FMR)")
    ax.set_ylabel("False non-match rate (FNMR)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", lw=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
