"""scikit-learn's handwritten digits (1,797 real 8x8 scans) as a DataSource.

The 17 grey levels (0 = background, 16 = ink) are drawn as a dark digit on a
light background, like ink on paper: 0 -> 255 (white), 16 -> 0 (black). The
8x8 scans are upscaled with bilinear interpolation (pixel centres aligned,
edges clamped) to image_size x image_size and repeated to 3 channels. The data
ship with scikit-learn, so no download is needed.
"""

from __future__ import annotations

import numpy as np
from sklearn import datasets

from fedprompt_jax.data import attributes, dataset

CLASS_NAMES: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def load_digits(
    image_size: int = 32, test_fraction: float = 0.3, seed: int = 0,
) -> dataset.DataSource:
  """Loads the digits with a deterministic stratified train/test split.

  Args:
    image_size: side S of the square output images.
    test_fraction: share of each class that goes to the test split (rounded
      to the nearest example).
    seed: seed of the split and of the example order inside each split.

  Returns:
    A DataSource with [N, S, S, 3] uint8 images, classes "zero".."nine" and
    no domains; train and test together hold all 1,797 examples.
  """
  if not 0 < test_fraction < 1:
    raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
  raw = datasets.load_digits()
  grey = 255.0 - raw.images * (255.0 / 16.0)  # [1797, 8, 8], ink dark
  images = upscale(grey, image_size)
  labels = raw.target.astype(np.int32)
  train_idx, test_idx = stratified_split(labels, test_fraction, seed)
  def split(idx: np.ndarray) -> dataset.Split:
    return dataset.Split(images=images[idx], labels=labels[idx], domains=None)
  return dataset.DataSource(
      name="digits", class_names=CLASS_NAMES,
      train=split(train_idx), test=split(test_idx),
      attributes=attributes.load_attributes(attributes.shipped_path("digits"), CLASS_NAMES))


def upscale(grey: np.ndarray, size: int) -> np.ndarray:
  """Bilinearly resizes [N, h, w] grey images in [0, 255] to [N, S, S, 3] uint8."""
  rows = _interpolation_matrix(grey.shape[1], size)  # [S, h]
  cols = _interpolation_matrix(grey.shape[2], size)  # [S, w]
  out = np.empty((grey.shape[0], size, size, 3), np.uint8)
  for lo in range(0, grey.shape[0], 256):  # bounds the float memory at large sizes
    resized = rows @ (grey[lo:lo + 256].astype(np.float32) @ cols.T)  # [n, S, S]
    out[lo:lo + 256] = np.clip(np.rint(resized), 0, 255).astype(np.uint8)[..., None]
  return out


def _interpolation_matrix(n_in: int, n_out: int) -> np.ndarray:
  """[n_out, n_in] linear interpolation weights with half-pixel centres."""
  pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
  lo = np.floor(pos).astype(int)
  hi = np.minimum(lo + 1, n_in - 1)
  frac = pos - lo
  weights = np.zeros((n_out, n_in), np.float32)
  weights[np.arange(n_out), lo] += 1 - frac
  weights[np.arange(n_out), hi] += frac
  return weights


def stratified_split(
    labels: np.ndarray, test_fraction: float, seed: int,
) -> tuple[np.ndarray, np.ndarray]:
  """Splits example indices per class.

  Args:
    labels: [N] int class labels.
    test_fraction: share of each class sent to the test split.
    seed: seed of the per-class shuffles and of the final orders.

  Returns:
    (train_indices, test_indices), disjoint, together covering range(N), each
    in a seeded random order.
  """
  rng = np.random.default_rng(seed)
  train, test = [], []
  for c in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == c))
    n_test = int(round(len(idx) * test_fraction))
    test.append(idx[:n_test])
    train.append(idx[n_test:])
  return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))
