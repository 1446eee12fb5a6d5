"""Builds and runs the Temporal worker (not built yet)."""
