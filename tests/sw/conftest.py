"""Shared fixtures of the sw tests: torch on one thread, small digits networks trained once per session."""

import pytest


@pytest.fixture(scope="session", autouse=True)
def _torch_one_thread():
    try:
        import torch
    except ImportError:  # energy tests do not need torch
        return
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits():
    from qjoule.sw import data
    return data.load("digits")


@pytest.fixture(scope="session")
def trained_digits(digits):
    """`trained_digits(q, blocks)` -> a QNN trained 3·blocks epochs on digits (width 16), cached per session."""
    from qjoule.sw.train import TrainConfig, fit
    cache = {}

    def get(q, blocks=1):
        if (q, blocks) not in cache:
            cache[q, blocks] = fit(TrainConfig(q=q, blocks=blocks, width=16, epochs=3 * blocks, seed=0), digits, progress=False)
        return cache[q, blocks]
    return get
