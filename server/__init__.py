"""Darkroom server: FastAPI app, batching engine, settings, CLI."""
