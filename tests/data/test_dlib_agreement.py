"""dlib's ResNet on onnxruntime computes what dlib computes, on every face of the shared data."""

from __future__ import annotations

from pathlib import Path

from facegate.eval.dlib_agreement import check_agreement


def test_onnx_embeddings_agree_with_dlib_on_every_face(
    shared_data: Path, face_rows: list[dict[str, str]]
) -> None:
    paths = [shared_data / row["file"] for row in face_rows]
    assert len(paths) >= 1000  # every photo, not a sample
    results = check_agreement(paths, workers=2)
    assert [r.path for r in results] == [str(p) for p in paths]
    worst = min(results, key=lambda r: r.cosine)
    assert worst.cosine >= 1 - 1e-4, worst
    # the check runs on dlib's own face chips, not only on whole photos
    assert sum(r.face_found for r in results) >= 0.95 * len(results)
