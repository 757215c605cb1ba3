"""Any tensorflow-datasets image classification set, read without TensorFlow.

`load_tfds` reads a data set that was prepared once in the ArrayRecord format
through `tfds.data_source`, which needs `tensorflow-datasets` and `array-record`
but not TensorFlow. Preparing (downloading and converting) does need
TensorFlow; the error raised for a missing data set prints the command.

Encoded images (`tfds.features.Image`) are decoded by tfds with OpenCV or PIL.
Examples are read one at a time (`source[i]`; batched `__getitems__` is not
used, it does not work under `tfds.testing.mock_data`). Each image is centre
cropped to a square and resized with PIL bicubic interpolation; grey images are
repeated to 3 channels.

With `storage="array_record"` nothing is decoded at load: the labels (and
domains) are read with the image feature skipped (`tfds.decode.SkipDecoding`),
and `Split.images` is a `stored_images.StoredImages` that reads, decodes, crops
and resizes only the rows it is indexed with, one `source[i]` at a time (the
batched `__getitems__` reads on a thread pool whose buffers grew resident memory
towards the data set's size in a measurement; one at a time stays flat). The
rows are the same bytes as the in-memory path's; host memory holds the labels
and the batches in use, not the images.

Domains come from one of two places:

  domain_key      a per-example feature holding the domain index, for sets that
                  store all domains together (a ClassLabel gives the domain
                  names, a plain integer feature gives "domain 0", ...).
  domain_configs  builder configs that each hold one domain, as in tfds
                  DomainNet ("domainnet/real", "domainnet/sketch", ...):
                  `load_tfds("domainnet", domain_configs=("real", "sketch"))`.
"""

from __future__ import annotations

from collections.abc import Sequence
import os
from typing import Any

from absl import logging as absl_logging
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from fedprompt_jax.data import class_names as class_names_lib
from fedprompt_jax.data import dataset
from fedprompt_jax.data import stored_images
from fedprompt_jax.data import tiny_imagenet  # pylint: disable=unused-import  (registers it)


STORAGES = ("memory", "array_record")


def load_tfds(
    name: str,
    *,
    data_dir: str | os.PathLike[str],
    image_size: int,
    train_split: str = "train",
    test_split: str = "test",
    image_key: str = "image",
    label_key: str = "label",
    domain_key: str | None = None,
    domain_configs: Sequence[str] | None = None,
    max_examples: int | None = None,
    class_names: Sequence[str] | None = None,
    domain_names: Sequence[str] | None = None,
    storage: str = "memory",
) -> dataset.DataSource:
  """Reads a prepared tfds data set into memory, or opens it for reading per batch.

  Args:
    name: tfds name, optionally with config and version ("cifar100",
      "domainnet/real:1.0.0").
    data_dir: the tfds data directory holding the prepared data set.
    image_size: side S of the square output images.
    train_split: tfds split read as the train split.
    test_split: tfds split read as the test split.
    image_key: feature holding the [H, W, 1 or 3] uint8 image.
    label_key: integer feature holding the class index.
    domain_key: optional integer feature holding the domain index.
    domain_configs: optional builder configs of `name`, one per domain;
      exclusive with domain_key.
    max_examples: read at most this many examples per split (and per domain
      config), the first ones in the stored order; tfds shuffles examples when
      preparing, so this is a pseudo-random subset, not a stratified one.
    class_names: overrides the class names found for the label feature.
    domain_names: overrides the domain names found for the domains.
    storage: "memory" decodes every image into a numpy array at load;
      "array_record" keeps them in the files (`StoredImages`, read per batch).

  Returns:
    A DataSource named "tfds:<name>" with [N, S, S, 3] uint8 images (numpy, or
    StoredImages).

  Raises:
    FileNotFoundError: the data set is not prepared in data_dir.
    ValueError: no readable class names can be found (pass class_names=).
  """
  if domain_key is not None and domain_configs is not None:
    raise ValueError("pass at most one of domain_key and domain_configs")
  if storage not in STORAGES:
    raise ValueError(f"storage={storage!r} is invalid; valid: {', '.join(STORAGES)}")
  variants = [name] if domain_configs is None else [f"{name}/{c}" for c in domain_configs]
  splits: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]] = {
      "train": [], "test": []}
  infos = []
  for d, variant in enumerate(variants):
    for key, split in (("train", train_split), ("test", test_split)):
      data = _open(variant, split, data_dir)
      infos.append(data.dataset_info)
      if storage == "memory":
        images, labels, domains = _read(data, image_size, image_key, label_key, domain_key,
                                        max_examples)
      else:
        images, labels, domains = _read_stored(
            data, _open(variant, split, data_dir, skip=image_key), image_size, image_key,
            label_key, domain_key, max_examples)
      if domain_configs is not None:
        domains = np.full(len(labels), d, np.int32)
      splits[key].append((images, labels, domains))
  label_feature = infos[0].features[label_key]
  if len({tuple(getattr(i.features[label_key], "names", ())) for i in infos}) > 1:
    raise ValueError(f"the configs {list(domain_configs)} of {name!r} have different classes")
  train, test = (_concat(splits[k]) for k in ("train", "test"))
  num_classes = getattr(label_feature, "num_classes", None)
  if class_names is not None:
    names = tuple(class_names)
    if num_classes is not None and len(names) != num_classes:
      raise ValueError(f"class_names has {len(names)} names; {name!r} has {num_classes} classes")
  else:
    if num_classes is None:
      raise ValueError(f"feature {label_key!r} of {name!r} is not a ClassLabel; pass class_names=")
    names = class_names_lib.resolve(name, label_key, getattr(label_feature, "names", None),
                                    num_classes)
  if domain_names is not None:
    domains_out = tuple(domain_names)
  elif domain_configs is not None:
    domains_out = tuple(class_names_lib.tidy(c) for c in domain_configs)
  elif domain_key is not None:
    domains_out = _domain_names(infos[0].features[domain_key], train, test)
  else:
    domains_out = None
  return dataset.DataSource(
      name=f"tfds:{name}", class_names=names, train=train, test=test, domain_names=domains_out)


def _open(name: str, split: str, data_dir: str | os.PathLike[str], skip: str | None = None) -> Any:
  """Opens one split as a random-access tfds data source, never downloading; the feature
  `skip` (if given) comes out undecoded (its stored bytes)."""
  level = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.ERROR)  # tfds warns about each folder it probes
  decoders = None if skip is None else {skip: tfds.decode.SkipDecoding()}
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir, download=False,
                            decoders=decoders)
  except (tfds.core.DatasetNotFoundError, NotImplementedError, FileNotFoundError):
    # NotImplementedError: tfds found no ArrayRecord files to read.
    builder = name.split(":")[0]
    raise FileNotFoundError(
        f"tfds data set '{name}' not found as array_record in data_dir={str(data_dir)!r}; "
        "prepare it once with: pip install tensorflow-cpu && python -c \"import "
        f"tensorflow_datasets as tfds; tfds.builder('{builder}', data_dir='{data_dir}')"
        ".download_and_prepare(file_format='array_record')\"") from None
  finally:
    absl_logging.set_verbosity(level)


def _read(
    data: Any, image_size: int, image_key: str, label_key: str, domain_key: str | None,
    max_examples: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
  """Reads [N, S, S, 3] images, [N] labels and [N] domains (or None)."""
  n = len(data) if max_examples is None else min(len(data), max_examples)
  images = np.empty((n, image_size, image_size, 3), np.uint8)
  labels = np.empty(n, np.int32)
  domains = None if domain_key is None else np.empty(n, np.int32)
  for i in range(n):
    example = data[i]
    images[i] = square_resize(np.asarray(example[image_key]), image_size)
    labels[i] = int(example[label_key])
    if domains is not None:
      domains[i] = int(example[domain_key])
  return images, labels, domains


def _read_stored(
    data: Any, labels_only: Any, image_size: int, image_key: str, label_key: str,
    domain_key: str | None, max_examples: int | None,
) -> tuple[stored_images.StoredImages, np.ndarray, np.ndarray | None]:
  """[N, S, S, 3] StoredImages over `data`, and [N] labels and [N] domains (or None) read
  from `labels_only` (the same split with its image feature undecoded)."""
  n = len(data) if max_examples is None else min(len(data), max_examples)
  labels = np.empty(n, np.int32)
  domains = None if domain_key is None else np.empty(n, np.int32)
  for i in range(n):
    example = labels_only[i]
    labels[i] = int(example[label_key])
    if domains is not None:
      domains[i] = int(example[domain_key])
  read = lambda i: square_resize(np.asarray(data[i][image_key]), image_size)
  return stored_images.StoredImages([(read, n)], (image_size, image_size, 3)), labels, domains


def square_resize(image: np.ndarray, size: int) -> np.ndarray:
  """Centre-crops an [H, W(, 1|3|4)] uint8 image to a square and resizes it.

  Returns:
    [size, size, 3] uint8; grey is repeated to RGB, alpha is dropped.
  """
  if image.dtype != np.uint8:
    raise ValueError(f"expected a uint8 image, got dtype {image.dtype}")
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
    raise ValueError(f"expected an [H, W, 1|3|4] image, got shape {image.shape}")
  image = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
  h, w = image.shape[:2]
  side = min(h, w)
  top, left = (h - side) // 2, (w - side) // 2
  crop = np.ascontiguousarray(image[top:top + side, left:left + side])
  if side == size:
    return crop
  return np.asarray(Image.fromarray(crop).resize((size, size), Image.BICUBIC))


def _concat(parts: list[tuple[Any, np.ndarray, np.ndarray | None]]) -> dataset.Split:
  images, labels, domains = zip(*parts)
  stored = isinstance(images[0], stored_images.StoredImages)
  return dataset.Split(
      images=stored_images.concat(images) if stored else np.concatenate(images),
      labels=np.concatenate(labels),
      domains=None if domains[0] is None else np.concatenate(domains),
  )


def _domain_names(feature: Any, train: dataset.Split, test: dataset.Split) -> tuple[str, ...]:
  """Names of the domains of a per-example domain feature."""
  names = getattr(feature, "names", None)
  if names and class_names_lib.is_readable(names):
    return tuple(class_names_lib.tidy(n) for n in names)
  count = getattr(feature, "num_classes", None)
  if count is None:
    count = int(max(train.domains.max(initial=0), test.domains.max(initial=0))) + 1
  return tuple(f"domain {i}" for i in range(count))
