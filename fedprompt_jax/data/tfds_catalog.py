"""What a tfds data set declares, found offline: its builder, splits and class names.

tfds only learns a data set's splits when it prepares it (`info.splits` is empty
before), but every builder names them in the code of `_split_generators`, as the
keys of the dict it returns or the `name=` of its `SplitGenerator`s. This
module reads them from that code, so a config can be checked before anything is
downloaded (tests/test_presets.py checks every preset this way).
"""

from __future__ import annotations

import ast
import inspect
import re
import tempfile
import textwrap
from typing import Any

import tensorflow_datasets as tfds

from fedprompt_jax.data import class_names as class_names_lib
from fedprompt_jax.data import tiny_imagenet  # pylint: disable=unused-import  (registers it)

_SPLIT_CONSTANTS = {"TRAIN": "train", "TEST": "test", "VALIDATION": "validation"}


def builder(name: str, config: str | None = None) -> Any:
  """The registered builder of `name` ("cifar100", "domainnet/real"), not prepared.

  Raises:
    ValueError: no such registered builder (or config).
  """
  base = name.split(":", 1)[0]
  full = base if config is None else f"{base}/{config}"
  try:
    return tfds.builder(full, data_dir=tempfile.mkdtemp(prefix="tfds_catalog_"), try_gcs=False)
  except (tfds.core.DatasetNotFoundError, ValueError) as e:
    raise ValueError(f"{full!r} is not a registered tfds builder: "
                     f"{str(e).splitlines()[0]}") from None


def declared_splits(name: str) -> tuple[str, ...]:
  """Split names that the builder's `_split_generators` declares, sorted.

  Raises:
    ValueError: the code names no split this reader can see.
  """
  cls = tfds.builder_cls(re.split(r"[/:]", name, maxsplit=1)[0])
  code = inspect.getsource(cls._split_generators)  # pylint: disable=protected-access
  tree = ast.parse(textwrap.dedent(code))
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Return) and isinstance(node.value, ast.Dict):
      found.update(filter(None, map(_split_name, node.value.keys)))
    if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "SplitGenerator":
      for kw in node.keywords:
        if kw.arg == "name":
          found.add(_split_name(kw.value))
  found.discard(None)
  if not found:
    raise ValueError(f"cannot read the splits of tfds builder {name!r} from its code")
  return tuple(sorted(found))


def _split_name(node: ast.AST | None) -> str | None:
  if isinstance(node, ast.Constant) and isinstance(node.value, str):
    return node.value
  if isinstance(node, ast.Attribute) and node.attr in _SPLIT_CONSTANTS:
    return _SPLIT_CONSTANTS[node.attr]  # tfds.Split.TRAIN and the like
  return None


def class_names(name: str, config: str | None = None,
                label_key: str = "label") -> tuple[str, ...]:
  """The prompt class names load_tfds will use, from the builder's declared features."""
  feature = builder(name, config).info.features[label_key]
  return class_names_lib.resolve(name, label_key, getattr(feature, "names", None),
                                 feature.num_classes)
