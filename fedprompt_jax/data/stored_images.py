"""Images that stay in their files: a read-on-demand [N, S, S, 3] uint8 array.

`StoredImages` stands in for `Split.images` when a data set is larger than host
memory (`data.storage='array_record'`, tfds_source.py). Indexing it with rows
(an int, a slice, an int array or a bool mask, optionally followed by indices
into the image axes) reads, decodes and resizes only those rows and returns a
numpy array, so `split.images[idx]` in the round, evaluation and the feature
cache work unchanged and hold one batch, never the data set. Repeated rows in
one request (padding clients, small clients) are read once.

What it deliberately is not: a numpy array. `np.asarray(images)` raises
TypeError rather than silently reading every image; code that needs all images
goes batch by batch. `select(rows)` makes a sub-view (no reads), which
`dataset.subset` uses so that splits cut from a stored split stay stored.

Shapes: N rows in the view, S image side, P parts (one per stored file set).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

ReadOne = Callable[[int], np.ndarray]  # stored row -> [S, S, 3] uint8


class StoredImages:
  """[N, S, S, 3] uint8 images read on demand from P parts.

  Attributes:
    shape: (N, S, S, 3).
    dtype: uint8.
    ndim: 4.
  """

  def __init__(self, parts: Sequence[tuple[ReadOne, int]], image_shape: tuple[int, ...],
               rows: np.ndarray | None = None):
    """Args:
      parts: (read_one, count) per part; read_one(i) returns the part's row i, i < count,
        as an `image_shape` uint8 array. Parts are laid end to end: stored row r of part p
        is offsets[p] + i.
      image_shape: (S, S, 3).
      rows: [N] stored rows this view holds, in order; None = all of them.
    """
    self._parts = tuple(read for read, _ in parts)
    self._offsets = np.concatenate([[0], np.cumsum([int(n) for _, n in parts])]).astype(np.int64)
    self._image_shape = tuple(int(d) for d in image_shape)
    if len(self._image_shape) != 3 or self._image_shape[-1] != 3:
      raise ValueError(f"image_shape must be (H, W, 3), got {image_shape}")
    total = int(self._offsets[-1])
    self._rows = (np.arange(total, dtype=np.int64) if rows is None
                  else np.asarray(rows, np.int64).reshape(-1))
    if self._rows.size and (self._rows.min() < 0 or self._rows.max() >= total):
      raise ValueError(f"rows must lie in [0, {total})")

  @property
  def shape(self) -> tuple[int, ...]:
    return (len(self._rows),) + self._image_shape

  @property
  def dtype(self) -> np.dtype:
    return np.dtype(np.uint8)

  @property
  def ndim(self) -> int:
    return 4

  def __len__(self) -> int:
    return len(self._rows)

  def __repr__(self) -> str:
    return f"StoredImages(shape={self.shape}, parts={len(self._parts)})"

  def __array__(self, dtype=None, copy=None):
    del dtype, copy
    raise TypeError(f"StoredImages {self.shape} would read every image into memory; index "
                    "rows (images[idx], images[a:b]) batch by batch instead")

  def select(self, key) -> StoredImages:
    """The view of the rows `key` (int array, bool mask or slice) selects; reads nothing."""
    return self._view(self._rows[_row_key(key, len(self._rows))])

  def __getitem__(self, key) -> np.ndarray:
    """The selected rows as numpy: images[i] [S, S, 3], images[rows] [n, S, S, 3], and
    images[rows, ...rest] indexes the image axes of those rows afterwards."""
    rest = ()
    if isinstance(key, tuple):
      key, rest = (key[0], key[1:]) if key else (slice(None), ())
    if isinstance(key, (int, np.integer)):
      out = self._read(self._rows[int(key)].reshape(1))[0]
    else:
      out = self._read(self._rows[_row_key(key, len(self._rows))])
      rest = (slice(None),) + rest
    return out[rest] if rest else out

  def _view(self, rows: np.ndarray) -> StoredImages:
    view = StoredImages.__new__(StoredImages)
    view._parts, view._offsets, view._image_shape = self._parts, self._offsets, self._image_shape
    view._rows = rows
    return view

  def _read(self, stored: np.ndarray) -> np.ndarray:
    """Stored rows of any shape [...] -> [..., S, S, 3]; each distinct row read once."""
    stored = np.asarray(stored, np.int64)
    unique, inverse = np.unique(stored.reshape(-1), return_inverse=True)
    images = np.empty((len(unique),) + self._image_shape, np.uint8)
    part_of = np.searchsorted(self._offsets, unique, side="right") - 1
    for j, (row, p) in enumerate(zip(unique.tolist(), part_of.tolist())):
      image = self._parts[p](row - int(self._offsets[p]))
      if image.shape != self._image_shape or image.dtype != np.uint8:
        raise ValueError(f"stored row {row} read as {image.dtype} {image.shape}; expected uint8 "
                         f"{self._image_shape}")
      images[j] = image
    if stored.ndim == 1 and np.array_equal(unique, stored):
      return images
    return images[inverse.reshape(-1)].reshape(stored.shape + self._image_shape)


def concat(views: Sequence[StoredImages]) -> StoredImages:
  """The views end to end, as one [sum N, S, S, 3] view."""
  if not views:
    raise ValueError("concat needs at least one view")
  shapes = {v.shape[1:] for v in views}
  if len(shapes) > 1:
    raise ValueError(f"views have different image shapes: {sorted(shapes)}")
  parts, rows, base = [], [], 0
  for v in views:
    for p, read in enumerate(v._parts):  # pylint: disable=protected-access
      parts.append((read, int(v._offsets[p + 1] - v._offsets[p])))  # pylint: disable=protected-access
    rows.append(v._rows + base)  # pylint: disable=protected-access
    base += int(v._offsets[-1])  # pylint: disable=protected-access
  return StoredImages(parts, views[0].shape[1:], np.concatenate(rows))


def _row_key(key, n: int):
  """A row key (slice, int array or [n] bool mask) checked for use on an [n] row array."""
  if isinstance(key, slice):
    return key
  key = np.asarray(key)
  if key.dtype == bool:
    if key.shape != (n,):
      raise IndexError(f"bool mask must have shape ({n},), got {key.shape}")
    return key
  if not np.issubdtype(key.dtype, np.integer):
    raise IndexError(f"rows must be ints, a slice or a bool mask, got dtype {key.dtype}")
  return key
