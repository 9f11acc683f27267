"""Shared fixtures: keep this file small; tests own their data."""

from __future__ import annotations

import os

import pytest

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared")


@pytest.fixture
def celeba_mini_root() -> str:
    """The real 89x109 CelebA sample at ../shared/data/celeba-mini (skips when absent)."""
    root = os.environ.get("FACEATTR_CELEBA_MINI") or os.path.join(SHARED, "data", "celeba-mini")
    if not os.path.exists(os.path.join(root, "list_attr_celeba.txt")):
        pytest.skip("celeba-mini not present (../shared/data/celeba-mini)")
    return os.path.abspath(root)
