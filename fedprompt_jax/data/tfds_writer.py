"""Writes labelled images as a tensorflow-datasets set in ArrayRecord files, without TensorFlow.

The set is what `tfds_source.load_tfds` (and `data.source='tfds'`) reads, into
memory or per batch (`storage='array_record'`). Features:

  image   [S, S, 3] uint8: encoding "raw" stores the bytes
          (`tfds.features.Tensor(..., encoding=BYTES)`: S*S*3 bytes a record, no
          decode on read); "png" stores PIL-encoded PNG (`tfds.features.Image`,
          smaller for real images, a PNG decode per read).
  label   ClassLabel with the class names.
  domain  ClassLabel with the domain names (only when domain names are given).

Rows keep the order they are given in (`disable_shuffling`), so row i of the
written split is example i. The builder class is made per call and not
registered: reading needs only the files (tfds reads a set it has no class for
from its dataset_info.json).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import io
import os

from etils import epath
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from fedprompt_jax.data import dataset

ENCODINGS = ("raw", "png")
# split name -> (count, example(i) -> (image [S, S, 3] uint8, label, domain or None)).
Examples = dict[str, tuple[int, Callable[[int], tuple[np.ndarray, int, int | None]]]]


def write(data_dir: str | os.PathLike[str], name: str, class_names: Sequence[str],
          splits: Examples, image_size: int, *, domain_names: Sequence[str] | None = None,
          encoding: str = "raw", config: str | None = None) -> str:
  """Writes `splits` as tfds set `name` (version 1.0.0) under `data_dir`; returns its directory.

  Args:
    data_dir: the tfds data directory (the set goes to data_dir/name/1.0.0).
    name: the set's tfds name (snake_case).
    class_names: C class names; labels lie in [0, C).
    splits: {split: (count, example)} with example(i) -> (image [S, S, 3] uint8,
      label, domain index or None); examples are made one at a time while writing.
    image_size: S.
    domain_names: D domain names when examples carry a domain, else None.
    encoding: "raw" or "png" (see the module docstring).
    config: a builder config name: the set is then read as "name/config" (one
      config per domain, as `load_tfds(domain_configs=...)` reads DomainNet).
  """
  if encoding not in ENCODINGS:
    raise ValueError(f"encoding={encoding!r} is invalid; valid: {', '.join(ENCODINGS)}")
  shape = (image_size, image_size, 3)
  image_feature = (tfds.features.Tensor(shape=shape, dtype=np.uint8,
                                        encoding=tfds.features.Encoding.BYTES)
                   if encoding == "raw" else tfds.features.Image(shape=shape))
  features = {"image": image_feature, "label": tfds.features.ClassLabel(names=list(class_names))}
  if domain_names is not None:
    features["domain"] = tfds.features.ClassLabel(names=list(domain_names))

  def record(image: np.ndarray, label: int, domain: int | None) -> dict:
    image = np.asarray(image)
    if image.shape != shape or image.dtype != np.uint8:
      raise ValueError(f"expected a uint8 {shape} image, got {image.dtype} {image.shape}")
    if encoding == "png":
      png = io.BytesIO()
      Image.fromarray(image).save(png, format="PNG")
      image = png.getvalue()  # stored as given: encoding arrays would need TensorFlow
    out = {"image": image, "label": int(label)}
    if domain_names is not None:
      out["domain"] = int(domain)
    return out

  builder_name = name

  class _Writer(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """The set `name`, made for this call."""

    name = builder_name
    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [] if config is None else [tfds.core.BuilderConfig(name=config)]

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):  # pylint: disable=invalid-name
      # As in tiny_imagenet.py: tfds's own lookup goes through importlib_resources for a
      # module inside a package, which need not be installed.
      return epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features),
                                   disable_shuffling=True)

    def _split_generators(self, dl_manager):
      del dl_manager
      return {split: self._generate_examples(split) for split in splits}

    def _generate_examples(self, split):
      count, example = splits[split]
      for i in range(count):
        yield i, record(*example(i))

  builder = _Writer(data_dir=os.fspath(data_dir), file_format="array_record", config=config)
  builder.download_and_prepare()
  return os.fspath(builder.data_dir)


def write_source(src: dataset.DataSource, data_dir: str | os.PathLike[str], name: str, *,
                 encoding: str = "raw", config: str | None = None) -> str:
  """Writes an in-memory DataSource's train and test splits (numpy images) as tfds set `name`."""
  splits = {}
  for split_name in ("train", "test"):
    split = getattr(src, split_name)
    domains = split.domains
    splits[split_name] = (len(split), lambda i, s=split, d=domains: (
        s.images[i], int(s.labels[i]), None if d is None else int(d[i])))
  return write(data_dir, name, src.class_names, splits, src.train.images.shape[1],
               domain_names=src.domain_names, encoding=encoding, config=config)


def noise_split(count: int, image_size: int, num_classes: int, seed: int):
  """(count, example) of a generated split, made one example at a time (nothing held):
  example i is uniform noise around a colour of its class (label i % num_classes), seeded
  by (seed, i). For sets of any size: larger than memory, or to time reads."""
  colours = np.random.default_rng(seed).integers(40, 216, (num_classes, 3))

  def example(i: int):
    rng = np.random.default_rng((seed, i))
    label = i % num_classes
    noise = rng.integers(-40, 41, (image_size, image_size, 3))
    return (colours[label] + noise).astype(np.uint8), label, None

  return count, example
