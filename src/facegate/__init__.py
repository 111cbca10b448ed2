"""facegate: self-hosted face verification."""
