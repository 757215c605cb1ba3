"""Tests of scikit-learn's digits as a DataSource."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

from fedprompt_jax.data import digits  # noqa: E402
from fedprompt_jax.data import source  # noqa: E402


@pytest.fixture(scope="module")
def data() -> source.DataSource:
  return digits.load_digits(image_size=32)


def test_classes_counts_and_form(data):
  assert data.class_names == ("zero", "one", "two", "three", "four", "five", "six",
                              "seven", "eight", "nine")
  assert len(data.train) + len(data.test) == 1797
  assert data.domain_names is None and data.train.domains is None
  assert data.train.images.shape[1:] == (32, 32, 3) and data.train.images.dtype == np.uint8
  np.testing.assert_array_equal(data.train.images[..., 0], data.train.images[..., 2])


def test_split_is_stratified_and_disjoint(data):
  train_counts = np.bincount(data.train.labels, minlength=10)
  test_counts = np.bincount(data.test.labels, minlength=10)
  total = train_counts + test_counts
  np.testing.assert_array_equal(test_counts, np.round(total * 0.3).astype(int))
  train = {im.tobytes() for im in data.train.images}
  assert not any(im.tobytes() in train for im in data.test.images)


def test_dark_digit_on_light_background(data):
  images = data.train.images[..., 0]
  assert np.median(images) > 200  # mostly paper
  assert (images.min(axis=(1, 2)) < 60).all()  # every digit has dark ink


def test_deterministic_and_seeded(data):
  again = digits.load_digits(image_size=32)
  assert again.train.images.tobytes() == data.train.images.tobytes()
  np.testing.assert_array_equal(again.test.labels, data.test.labels)
  other = digits.load_digits(image_size=32, seed=1)
  assert other.test.images.tobytes() != data.test.images.tobytes()


@pytest.mark.parametrize("size", [8, 20, 224])
def test_image_size_honoured(size):
  data = source.load_source("digits", image_size=size, test_fraction=0.5)
  assert data.train.images.shape[1:] == (size, size, 3)
  assert abs(len(data.test) - 1797 / 2) <= 10


def test_upscale_keeps_values_at_native_size():
  grey = np.arange(64, dtype=float).reshape(1, 8, 8) * 4
  np.testing.assert_array_equal(digits.upscale(grey, 8)[0, ..., 1], grey[0])
  up = digits.upscale(grey, 16)[0, ..., 0].astype(float)
  assert up.min() == 0 and up.max() == 252 and (np.diff(up, axis=1) >= 0).all()
