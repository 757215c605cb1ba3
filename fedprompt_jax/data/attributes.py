"""Attribute sentences per class, as data: one JSON file per data set.

A file is one JSON object mapping a class name to a non-empty list of
sentences about that class, e.g.

  {"red circle": ["a photo of a red circle, which is round.", ...], ...}

Names must match the data set's class names exactly (the names the prompts
use: `DataSource.class_names`). A file may hold more classes than a data set
uses (one file serves every subset, base and novel halves included); every
class of the data set must be there. Attribute-prompted methods (FedMVP)
encode each sentence with the frozen text tower.

Shipped files live in `fedprompt_jax/assets/attributes/<data set>.json`
(`shapes`, `digits`); any other data set takes a file with
`--config.data.attributes_file=PATH`, which also overrides a shipped one.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Sequence

from fedprompt_jax.data import dataset as dataset_lib

SHIPPED_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "assets", "attributes")


def shipped_path(dataset: str) -> str:
  """The shipped file of a data set key ("shapes", "cifar100", "tfds:domainnet/real")."""
  key = dataset.split(":", 1)[-1].split("/", 1)[0]
  return os.path.join(SHIPPED_DIR, f"{key}.json")


def load_attributes(path: str, class_names: Sequence[str]) -> dict[str, tuple[str, ...]]:
  """Reads `path` and returns {class: sentences} for exactly `class_names`.

  Raises:
    FileNotFoundError: no file at `path`.
    ValueError: (one line, naming the file) the file is not a JSON object of
      string lists, or a class of `class_names` is missing or has no sentence.
  """
  path = os.path.expanduser(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"attributes file {path} does not exist")
  try:
    with open(path, encoding="utf-8") as f:
      table = json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f"attributes file {path} is not valid JSON: {e}") from None
  if not isinstance(table, dict):
    raise ValueError(f"attributes file {path} must hold a JSON object (class name -> list of "
                     f"sentences), got a {type(table).__name__}")
  out = {}
  for name in class_names:
    if name not in table:
      raise ValueError(f"class {name!r} has no attribute sentences in {path} "
                       f"(it names {len(table)} classes)")
    sentences = table[name]
    if (not isinstance(sentences, list) or not sentences
        or not all(isinstance(s, str) and s.strip() for s in sentences)):
      raise ValueError(f"class {name!r} in {path} must map to a non-empty list of non-empty "
                       f"sentences, got {sentences!r}")
    out[name] = tuple(sentences)
  return out


def with_attributes(src: dataset_lib.DataSource, path: str = "") -> dataset_lib.DataSource:
  """`src` with attributes from `path`, else from its shipped file, else as it was.

  An explicit `path` always wins; without one, a data set that has no
  attributes yet takes the shipped file of its name when one exists.
  """
  if not path:
    if src.attributes is not None or not os.path.isfile(shipped_path(src.name)):
      return src
    path = shipped_path(src.name)
  return dataclasses.replace(src, attributes=load_attributes(path, src.class_names))
