"""The in-memory form of a data set: a `DataSource` of two `Split`s, and helpers on them.

Every loader (shapes.py, digits.py, tfds_source.py) returns a `DataSource`:
natural-language class names plus a train and a test `Split` of uint8 RGB
images. Federated partitioning, batching and CLIP preprocessing all start from
this form. This module imports no loader and no registry (source.py), so every
data module can import it without an import circle.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fedprompt_jax.data.stored_images import StoredImages


@dataclasses.dataclass(frozen=True)
class Split:
  """One split of a data set.

  Attributes:
    images: [N, H, W, 3] uint8 RGB images: a numpy array, or `StoredImages` that reads
      the rows it is indexed with from files (data.storage='array_record').
    labels: [N] int32 class indices.
    domains: [N] int32 domain indices, or None for single-domain data.
  """

  images: np.ndarray | StoredImages
  labels: np.ndarray
  domains: np.ndarray | None = None

  def __post_init__(self):
    images, labels, domains = self.images, self.labels, self.domains
    if (not isinstance(images, (np.ndarray, StoredImages)) or images.ndim != 4
        or images.shape[-1] != 3):
      raise ValueError(
          f"images must be a [N, H, W, 3] array, got shape {getattr(images, 'shape', None)}")
    if images.dtype != np.uint8:
      raise ValueError(f"images must have dtype uint8, got {images.dtype}")
    if not isinstance(labels, np.ndarray) or labels.shape != (images.shape[0],):
      raise ValueError(
          f"labels must have shape ({images.shape[0]},), got {getattr(labels, 'shape', None)}")
    if labels.dtype != np.int32:
      raise ValueError(f"labels must have dtype int32, got {labels.dtype}")
    if domains is not None:
      if not isinstance(domains, np.ndarray) or domains.shape != (images.shape[0],):
        raise ValueError(
            f"domains must have shape ({images.shape[0]},), "
            f"got {getattr(domains, 'shape', None)}")
      if domains.dtype != np.int32:
        raise ValueError(f"domains must have dtype int32, got {domains.dtype}")

  def __len__(self) -> int:
    return int(self.images.shape[0])


@dataclasses.dataclass(frozen=True)
class DataSource:
  """A labelled image data set with a train and a test split.

  Attributes:
    name: short identifier, e.g. "shapes" or "tfds:cifar100".
    class_names: C unique natural-language names; label i means class_names[i].
    train: training split, labels in [0, C).
    test: test split, labels in [0, C).
    domain_names: D names of visual domains when the splits carry `domains`
      (indices in [0, D)), else None.
    attributes: optional map from class name to descriptive sentences about
      that class (used by attribute-prompted methods such as FedMVP).
  """

  name: str
  class_names: tuple[str, ...]
  train: Split
  test: Split
  domain_names: tuple[str, ...] | None = None
  attributes: dict[str, tuple[str, ...]] | None = None

  def __post_init__(self):
    names = self.class_names
    if not isinstance(names, tuple) or not names:
      raise ValueError(f"class_names must be a non-empty tuple, got {names!r}")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
      raise ValueError(f"class_names must be unique; repeated: {duplicates}")
    for split_name in ("train", "test"):
      split = getattr(self, split_name)
      if not isinstance(split, Split):
        raise ValueError(f"{split_name} must be a Split, got {type(split).__name__}")
      _check_range(split.labels, len(names), f"{split_name} labels")
      if (split.domains is None) != (self.domain_names is None):
        raise ValueError(
            f"{split_name}.domains and domain_names must both be set or both be None")
      if split.domains is not None:
        _check_range(split.domains, len(self.domain_names), f"{split_name} domains")
    if self.domain_names is not None:
      if not isinstance(self.domain_names, tuple) or len(set(self.domain_names)) != len(
          self.domain_names):
        raise ValueError(f"domain_names must be a tuple of unique names, got {self.domain_names!r}")
    if self.attributes is not None:
      unknown = sorted(set(self.attributes) - set(names))
      if unknown:
        raise ValueError(f"attributes name classes that do not exist: {unknown}")

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


def _check_range(values: np.ndarray, upper: int, what: str) -> None:
  if values.size and (values.min() < 0 or values.max() >= upper):
    raise ValueError(
        f"{what} must lie in [0, {upper}), got min {values.min()} max {values.max()}")


def subset(split: Split, mask: np.ndarray) -> Split:
  """Returns the examples of `split` selected by `mask`.

  Args:
    split: the split to select from, N examples.
    mask: [N] bool mask, or [K] int indices into the split.

  Returns:
    A new Split holding copies of the selected examples, in mask order (stored images
    stay stored: a view of the selected rows, nothing read).
  """
  mask = np.asarray(mask)
  if mask.dtype == bool and mask.shape != (len(split),):
    raise ValueError(f"bool mask must have shape ({len(split)},), got {mask.shape}")
  domains = None if split.domains is None else split.domains[mask]
  images = (split.images.select(mask) if isinstance(split.images, StoredImages)
            else split.images[mask])
  return Split(images=images, labels=split.labels[mask], domains=domains)



def split_base_novel(src: DataSource) -> tuple[DataSource, DataSource]:
  """Base-to-novel protocol: the first ceil(C/2) classes are base, the rest novel.

  Returns (base, novel): base keeps labels 0..Cb-1 with its train and test
  examples; novel holds only test examples of the other classes, relabelled
  0..Cn-1 (its train split is empty: novel classes are never trained on).
  """
  num_base = -(-src.num_classes // 2)

  def restrict(split: Split, lo: int, hi: int) -> Split:
    sel = (split.labels >= lo) & (split.labels < hi)
    out = subset(split, sel)
    return Split(out.images, (out.labels - lo).astype(np.int32), out.domains)

  attrs = lambda names: None if src.attributes is None else {n: src.attributes[n] for n in names}
  base_names, novel_names = src.class_names[:num_base], src.class_names[num_base:]
  base = DataSource(f"{src.name}:base", base_names, restrict(src.train, 0, num_base),
                    restrict(src.test, 0, num_base), src.domain_names, attrs(base_names))
  empty = restrict(src.train, num_base, num_base)
  novel = DataSource(f"{src.name}:novel", novel_names, empty,
                     restrict(src.test, num_base, src.num_classes), src.domain_names,
                     attrs(novel_names))
  return base, novel
