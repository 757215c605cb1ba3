"""Attribute sentences as data: shipped JSON files, an explicit file, and the errors."""

import json
import os

import numpy as np
import pytest

from fedprompt_jax.data import attributes, digits, shapes, source


def _tiny_source(names, attrs=None, name="tfds:toy"):
  split = source.Split(np.zeros((len(names), 8, 8, 3), np.uint8),
                       np.arange(len(names), dtype=np.int32))
  return source.DataSource(name, tuple(names), split, split, attributes=attrs)


def _write(tmp_path, table, name="attrs.json"):
  path = os.path.join(tmp_path, name)
  with open(path, "w") as f:
    json.dump(table, f)
  return path


def test_shipped_files_cover_the_embedded_data_sets():
  for name, classes in (("shapes", shapes.CLASS_NAMES), ("digits", digits.CLASS_NAMES)):
    with open(attributes.shipped_path(name)) as f:
      table = json.load(f)
    assert sorted(table) == sorted(classes)
    for c, sentences in table.items():
      assert len(sentences) == 10 and len(set(sentences)) == 10 and all(c in s for s in sentences)
  # The shapes sentences are the ones the tiny CLIP was pretrained on (five shape facts, then
  # five colour facts), copied here by hand from the generator they replaced.
  heart = shapes.attribute_sentences("blue heart")
  assert heart[1] == "a photo of a blue heart, which has a point at the bottom."
  assert heart[5] == "a photo of a blue heart, which is the colour of a clear sky."
  assert shapes.attribute_sentences("orange star")[0] == (
      "a photo of an orange star, which has five points.")
  data = digits.load_digits(image_size=8)
  assert data.attributes["seven"][0].startswith("a handwritten digit seven, which ")


def test_load_restricts_to_the_class_set_and_keeps_order(tmp_path):
  path = _write(tmp_path, {"cat": ["a cat, which purrs.", "a cat, which has whiskers."],
                           "dog": ["a dog, which barks."], "owl": ["an owl, which hoots."]})
  out = attributes.load_attributes(path, ("dog", "cat"))
  assert out == {"dog": ("a dog, which barks.",),
                 "cat": ("a cat, which purrs.", "a cat, which has whiskers.")}


def test_missing_class_names_the_class_and_the_file(tmp_path):
  path = _write(tmp_path, {"cat": ["a cat."]})
  with pytest.raises(ValueError) as e:
    attributes.load_attributes(path, ("cat", "dog"))
  message = str(e.value)
  assert "'dog'" in message and path in message and "\n" not in message


@pytest.mark.parametrize("table,needle", [
    (["a cat."], "must hold a JSON object"),
    ({"cat": []}, "non-empty list"),
    ({"cat": "a cat."}, "non-empty list"),
    ({"cat": ["a cat.", 3]}, "non-empty list"),
])
def test_malformed_files_are_refused(tmp_path, table, needle):
  path = _write(tmp_path, table)
  with pytest.raises(ValueError, match=needle):
    attributes.load_attributes(path, ("cat",))


def test_absent_file_is_reported(tmp_path):
  with pytest.raises(FileNotFoundError, match="nothing.json"):
    attributes.load_attributes(os.path.join(tmp_path, "nothing.json"), ("cat",))


def test_with_attributes_explicit_file_shipped_file_or_none(tmp_path):
  path = _write(tmp_path, {"cat": ["a cat."], "dog": ["a dog."]})
  bare = _tiny_source(("cat", "dog"))
  assert attributes.with_attributes(bare).attributes is None  # no shipped toy.json
  assert attributes.with_attributes(bare, path).attributes == {"cat": ("a cat.",),
                                                                "dog": ("a dog.",)}
  # An explicit file replaces what the source shipped with.
  own = _tiny_source(("cat", "dog"), {"cat": ("x",), "dog": ("y",)})
  assert attributes.with_attributes(own, path).attributes["cat"] == ("a cat.",)
  assert attributes.with_attributes(own).attributes["cat"] == ("x",)
  # A source named like a shipped file takes it.
  named = _tiny_source(("zero", "one"), name="digits")
  got = attributes.with_attributes(named).attributes
  assert set(got) == {"zero", "one"} and got["one"][0].startswith("a handwritten digit one")


def test_shipped_path_strips_source_and_config():
  assert attributes.shipped_path("tfds:domainnet/real").endswith(
      os.path.join("assets", "attributes", "domainnet.json"))
  assert attributes.shipped_path("shapes").endswith("shapes.json")


def test_run_data_takes_the_configured_file_and_names_a_missing_class(tmp_path):
  from fedprompt_jax import train  # pylint: disable=g-import-not-at-top
  from fedprompt_jax.config import default_config  # pylint: disable=g-import-not-at-top
  c = default_config()
  c.data.domains = ("photo",)
  c.data.train_per_class_domain, c.data.test_per_class_domain = 1, 1
  table = {n: [f"a {n}, which is a shape."] for n in shapes.CLASS_NAMES}
  c.data.attributes_file = _write(tmp_path, table)
  assert train.load_data(c, 16).attributes["red circle"] == ("a red circle, which is a shape.",)
  del table["blue star"]
  c.data.attributes_file = _write(tmp_path, table, "partial.json")
  with pytest.raises(ValueError, match=r"class 'blue star' has no attribute sentences in .*"
                                       r"partial\.json"):
    train.load_data(c, 16)
