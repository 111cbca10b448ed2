"""Template protection: envelope encryption (AES-256-GCM) and per-tenant cancelable transforms."""
