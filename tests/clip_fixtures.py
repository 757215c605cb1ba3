"""Shared helpers for tests that use the committed tiny CLIP checkpoints."""

import importlib.util
import os

import numpy as np

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
NAMES = ("clip_tiny_a", "clip_tiny_b")
HAS_TORCH = importlib.util.find_spec("torch") is not None


def fixture_dir(name: str) -> str:
  return os.path.join(FIXTURES, name)


def reference(name: str) -> dict[str, np.ndarray]:
  with np.load(os.path.join(fixture_dir(name), "reference.npz")) as data:
    return dict(data)
