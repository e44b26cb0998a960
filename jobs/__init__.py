"""Thin job entrypoints: ``python -m jobs.validate``, ``jobs.transform``, ``jobs.generate``."""
