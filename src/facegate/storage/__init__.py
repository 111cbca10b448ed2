"""Persistence. ``Store`` is the one interface; ``SQLiteStore`` is the embedded default."""
