"""The registry that loads a data set by name (`load_source`).

The types a loader returns live in dataset.py (`DataSource`, `Split`); they are
re-exported here so that `from fedprompt_jax.data.source import DataSource`
keeps working. Loaders import their module on first use and import only
dataset.py, never this module.
"""

from __future__ import annotations

from typing import Any, Callable

# Re-exported: the types and helpers of dataset.py, under their old address.
from fedprompt_jax.data.dataset import DataSource, Split, split_base_novel, subset  # noqa: F401


def _load_shapes(*, image_size: int, **kwargs: Any) -> DataSource:
  from fedprompt_jax.data import shapes  # pylint: disable=g-import-not-at-top
  return shapes.make_shapes(image_size=image_size, **kwargs)


def _load_digits(*, image_size: int, **kwargs: Any) -> DataSource:
  from fedprompt_jax.data import digits  # pylint: disable=g-import-not-at-top
  return digits.load_digits(image_size=image_size, **kwargs)


def _load_tfds(*, image_size: int, **kwargs: Any) -> DataSource:
  from fedprompt_jax.data import tfds_source  # pylint: disable=g-import-not-at-top
  return tfds_source.load_tfds(image_size=image_size, **kwargs)


# Loaders import their module on first use, so that a missing optional
# dependency (tensorflow-datasets) only matters to the source that needs it.
SOURCES: dict[str, Callable[..., DataSource]] = {
    "digits": _load_digits,
    "shapes": _load_shapes,
    "tfds": _load_tfds,
}


def load_source(name: str, /, *, image_size: int, **kwargs: Any) -> DataSource:
  """Loads the data source registered under `name`.

  `name` is positional-only so that loaders may take a `name` keyword of their
  own: `load_source("tfds", name="cifar100", data_dir=..., image_size=224)`.

  Args:
    name: a key of `SOURCES`.
    image_size: side of the square images to produce.
    **kwargs: passed on to the loader: `shapes.make_shapes`,
      `digits.load_digits` or `tfds_source.load_tfds`.

  Returns:
    The loaded DataSource.
  """
  if name not in SOURCES:
    raise ValueError(f"unknown data source {name!r}; valid: {', '.join(sorted(SOURCES))}")
  return SOURCES[name](image_size=image_size, **kwargs)
