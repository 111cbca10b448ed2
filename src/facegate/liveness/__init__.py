"""Liveness: signed challenges, per-frame signals, and the judge that decides."""
