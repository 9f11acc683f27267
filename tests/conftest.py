"""Shared fixtures: keep this file small; tests own their data."""

from __future__ import annotations

import os
import sys

import pytest

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared")


@pytest.fixture
def celeba_mini_root() -> str:
    """The real 89x109 CelebA sample at ../shared/data/celeba-mini (skips when absent)."""
    root = os.environ.get("FACEATTR_CELEBA_MINI") or os.path.join(SHARED, "data", "celeba-mini")
    if not os.path.exists(os.path.join(root, "list_attr_celeba.txt")):
        pytest.skip("celeba-mini not present (../shared/data/celeba-mini)")
    return os.path.abspath(root)


@pytest.fixture(scope="module")
def local_ray():
    """The local Ray of the tests that need one, shared between modules (each start costs ~8 s
    on 2 cores): started here unless one is up (a CLI test may have shut it down), with 4 logical
    CPUs on a 2-core machine so decode tasks and actors never wait on each other (the 2-core
    trap); shut down when the session ends."""
    import ray

    os.environ["RAY_DATA_DISABLE_PROGRESS_BARS"] = "1"
    if not ray.is_initialized():
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    return ray


@pytest.fixture(scope="session", autouse=True)
def _ray_down_at_the_end():
    yield
    if "ray" in sys.modules:
        sys.modules["ray"].shutdown()
