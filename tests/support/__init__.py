"""Shared test helpers (importable as ``support`` from tests)."""
