"""dlib's ResNet on onnxruntime computes what dlib computes, on every face of the shared data.

Every face takes ~140-240 s here (dlib's own ResNet is ~100 ms a chip), so the full check is
``slow`` (runs under CI=true or with ``-m slow``); the default run checks every 60th photo (26
photos, grayscale and colour, from four sources), the same ones each time.
"""

from __future__ import annotations

from pathlib import Path

from facegate.eval.dlib_agreement import Agreement, check_agreement


def _check(paths: list[Path], workers: int) -> list[Agreement]:
    results = check_agreement(paths, workers=workers)
    assert [r.path for r in results] == [str(p) for p in paths]
    worst = min(results, key=lambda r: r.cosine)
    assert worst.cosine >= 1 - 1e-4, worst
    # the check runs on dlib's own face chips, not only on whole photos
    assert sum(r.face_found for r in results) >= 0.95 * len(results)
    return results


def test_onnx_embeddings_agree_with_dlib_on_every_60th_face(
    shared_data: Path, face_rows: list[dict[str, str]]
) -> None:
    paths = [shared_data / row["file"] for row in face_rows[::60]]
    assert len(paths) >= 20
    _check(paths, workers=1)  # one process: spawning a second costs more than it saves here


def test_onnx_embeddings_agree_with_dlib_on_every_face(
    shared_data: Path, face_rows: list[dict[str, str]]
) -> None:
    paths = [shared_data / row["file"] for row in face_rows]
    assert len(paths) >= 1000  # every photo, not a sample
    _check(paths, workers=2)
