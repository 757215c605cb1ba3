"""StoredImages (data/stored_images.py) indexes like the numpy array it stands for, reads only
the rows asked for (each once), and refuses to be turned into an array whole."""

import numpy as np
import pytest

from fedprompt_jax.data import dataset
from fedprompt_jax.data.stored_images import StoredImages, concat


class Store:
  """Parts backed by numpy arrays, counting the reads."""

  def __init__(self, *sizes, side=4, seed=0):
    rng = np.random.default_rng(seed)
    self.arrays = [rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8) for n in sizes]
    self.reads = []
    parts = [(lambda i, p=p: self._read(p, i), n) for p, n in enumerate(sizes)]
    self.images = StoredImages(parts, (side, side, 3))
    self.full = np.concatenate(self.arrays)

  def _read(self, p, i):
    self.reads.append((p, i))
    return self.arrays[p][i].copy()


@pytest.mark.parametrize("key", [
    3, -1, np.int64(7), slice(2, 9), slice(None, None, -3), slice(0, 0),
    np.array([5, 1, 5, 5, 0]), np.array([[1, 2], [2, 10]]), np.array([], np.int64),
    (np.array([4, 2]), 0, slice(1, 3)), (slice(None), 1, 1, 0), (2, 0),
], ids=repr)
def test_indexing_equals_numpy(key):
  s = Store(6, 5)
  np.testing.assert_array_equal(s.images[key], s.full[key])


def test_bool_mask_shape_len_dtype_and_iteration():
  s = Store(6, 5)
  mask = np.arange(11) % 3 == 0
  np.testing.assert_array_equal(s.images[mask], s.full[mask])
  assert s.images.shape == (11, 4, 4, 3) and len(s.images) == 11
  assert s.images.dtype == np.uint8 and s.images.ndim == 4
  np.testing.assert_array_equal(np.stack(list(s.images)), s.full)
  with pytest.raises(IndexError):
    s.images[11]  # pylint: disable=pointless-statement
  with pytest.raises(IndexError, match="bool mask must have shape"):
    s.images[mask[:5]]  # pylint: disable=pointless-statement
  with pytest.raises(IndexError, match="rows must be ints"):
    s.images[np.array([0.5])]  # pylint: disable=pointless-statement


def test_reads_only_the_requested_rows_once_each():
  s = Store(6, 5)
  s.images[np.array([7, 0, 7, 7, 0, 10])]
  assert sorted(s.reads) == [(0, 0), (1, 1), (1, 4)]
  s.reads.clear()
  s.images[2:4]
  assert s.reads == [(0, 2), (0, 3)]


def test_whole_array_conversion_is_refused():
  s = Store(3)
  with pytest.raises(TypeError, match="would read every image into memory"):
    np.asarray(s.images)
  assert not s.reads


def test_select_and_subset_stay_stored_and_read_nothing():
  s = Store(6, 5)
  view = s.images.select(np.array([9, 1, 4]))
  split = dataset.Split(s.images, np.arange(11, dtype=np.int32) % 2)
  sub = dataset.subset(split, split.labels == 1)
  assert not s.reads
  assert isinstance(view, StoredImages) and isinstance(sub.images, StoredImages)
  np.testing.assert_array_equal(view[np.array([2, 0])], s.full[[4, 9]])
  np.testing.assert_array_equal(sub.images[:], s.full[split.labels == 1])
  np.testing.assert_array_equal(s.images.select(slice(3, None))[0], s.full[3])


def test_concat_lays_views_end_to_end():
  a, b = Store(4, seed=1), Store(3, 2, seed=2)
  both = concat([a.images.select(np.array([3, 0])), b.images])
  expected = np.concatenate([a.full[[3, 0]], b.full])
  np.testing.assert_array_equal(both[np.arange(len(both))[::-1]], expected[::-1])
  with pytest.raises(ValueError, match="different image shapes"):
    concat([a.images, Store(2, side=5).images])


def test_wrong_shape_from_a_part_is_an_error():
  images = StoredImages([(lambda i: np.zeros((4, 4, 3), np.float32), 2)], (4, 4, 3))
  with pytest.raises(ValueError, match="expected uint8"):
    images[0]  # pylint: disable=pointless-statement
