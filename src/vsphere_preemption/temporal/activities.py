"""The worker's activities (not built yet)."""
