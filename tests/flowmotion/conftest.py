import numpy as np
import pytest

from flowmotion.tiny import build_tiny_pipeline

from .helpers import moving_square


@pytest.fixture(scope="session")
def tiny_pipe():
    """The tiny Wan pipeline, shared: tests must not change its components."""
    return build_tiny_pipeline()


@pytest.fixture
def fresh_pipe():
    """A tiny Wan pipeline a test may change."""
    return build_tiny_pipeline()


@pytest.fixture
def source_video() -> np.ndarray:
    return moving_square()
