"""Darkroom pipelines: the math and the models. No HTTP anywhere in here."""
