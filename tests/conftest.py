"""Shared test settings: deterministic torch seed for every test (NumPy code takes Generators)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
