"""Fixtures of the loading tests: tiny random models built once per session."""

from __future__ import annotations

import pytest
from torch import nn

from tests.pipelines.loading.tiny_checkpoints import TINY_ARCHITECTURES, build_tiny


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, dict[str, nn.Module]]:
    """One set of tiny random models per family, shared by the tests of this directory."""
    return {name: build_tiny(name, seed=i) for i, name in enumerate(TINY_ARCHITECTURES)}
