"""Tests of reading tfds data sets without TensorFlow.

The data come from tfds itself: `tfds.testing.mock_data`, and a small builder
defined here that tfds prepares as ArrayRecord files in a temporary data_dir.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
import pytest

tfds = pytest.importorskip("tensorflow_datasets")
pytest.importorskip("array_record")

from fedprompt_jax.data import class_names  # noqa: E402
from fedprompt_jax.data import source  # noqa: E402
from fedprompt_jax.data import tfds_source  # noqa: E402

_H, _W = 10, 12  # stored image size; load_tfds crops the centre 10x10
_LABELS = ("hot_air_balloon", "sea_lion", "maple_tree")
_SPLIT_SIZES = {"train": 12, "test": 6}


def _example(index: int) -> dict[str, np.ndarray | int | bytes]:
  """The stored example number `index`; its id sits inside the centre crop."""
  image = np.random.default_rng(index).integers(0, 256, (_H, _W, 3), dtype=np.uint8)
  image[0, 1, 0] = index
  png = io.BytesIO()
  Image.fromarray(image[:, :, 0].T).save(png, format="PNG")  # grey, 12 x 10
  return {"image": image, "photo": png.getvalue(), "label": index % 3,
          "code": (index + 1) % 3, "domain": np.int64((index // 3) % 2)}


class FedpromptTinyDomains(tfds.core.GeneratorBasedBuilder):
  """Three classes in two domains, stored with a plain integer domain feature."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(_H, _W, 3), dtype=np.uint8),
            # Encoded images, as in real data sets: PNG bytes are stored as
            # given (encoding arrays would need TensorFlow), decoded with PIL.
            "photo": tfds.features.Image(shape=(None, None, 1)),
            "label": tfds.features.ClassLabel(names=list(_LABELS)),
            "code": tfds.features.ClassLabel(num_classes=3),  # names "0".."2"
            "domain": tfds.features.Tensor(shape=(), dtype=np.int64),
        }))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(0, _SPLIT_SIZES["train"]),
            "test": self._generate_examples(100, _SPLIT_SIZES["test"])}

  def _generate_examples(self, start, count):
    for index in range(start, start + count):
      yield index, _example(index)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> str:
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  # The builder kwarg (or download_and_prepare(file_format=...)) selects
  # ArrayRecord; TFRecord writing would need TensorFlow.
  FedpromptTinyDomains(data_dir=data_dir, file_format="array_record").download_and_prepare()
  return data_dir


def test_prepared_builder_round_trip(tiny_dir):
  ds = source.load_source("tfds", name="fedprompt_tiny_domains", data_dir=tiny_dir,
                          image_size=_H, domain_key="domain")
  assert ds.name == "tfds:fedprompt_tiny_domains"
  assert ds.class_names == ("hot air balloon", "sea lion", "maple tree")
  assert ds.domain_names == ("domain 0", "domain 1")
  for split, start in ((ds.train, 0), (ds.test, 100)):
    ids = split.images[:, 0, 0, 0].astype(int)
    assert sorted(ids) == list(range(start, start + len(split)))
    assert len(split) == _SPLIT_SIZES["train" if start == 0 else "test"]
    for row, index in enumerate(ids):
      expected = _example(index)
      np.testing.assert_array_equal(split.images[row], expected["image"][:, 1:11])
      assert split.labels[row] == expected["label"]
      assert split.domains[row] == expected["domain"]
    assert split.labels.dtype == np.int32 and split.domains.dtype == np.int32


def test_encoded_grey_images_are_decoded_cropped_and_made_rgb(tiny_dir):
  ds = tfds_source.load_tfds("fedprompt_tiny_domains", data_dir=tiny_dir, image_size=_H,
                             image_key="photo")
  assert sorted(ds.test.images[:, 0, 0, 0]) == list(range(100, 100 + _SPLIT_SIZES["test"]))
  for row, image in enumerate(ds.test.images):
    index = int(image[0, 0, 0])
    expected = _example(index)["image"][:, 1:11, 0].T
    np.testing.assert_array_equal(image, np.repeat(expected[..., None], 3, axis=-1))
    assert ds.test.labels[row] == index % 3


def test_resize_max_examples_and_overrides(tiny_dir):
  ds = tfds_source.load_tfds(
      "fedprompt_tiny_domains", data_dir=tiny_dir, image_size=20, max_examples=5,
      domain_key="domain", domain_names=("real", "sketch"), class_names=("a", "b", "c"))
  assert ds.train.images.shape == (5, 20, 20, 3) and ds.test.images.shape == (5, 20, 20, 3)
  assert ds.domain_names == ("real", "sketch") and ds.class_names == ("a", "b", "c")
  assert ds.train.domains is not None
  no_domains = tfds_source.load_tfds(
      "fedprompt_tiny_domains", data_dir=tiny_dir, image_size=8, max_examples=2)
  assert no_domains.domain_names is None and no_domains.train.domains is None


def test_numeric_label_names_need_class_names(tiny_dir):
  with pytest.raises(ValueError, match="pass class_names="):
    tfds_source.load_tfds("fedprompt_tiny_domains", data_dir=tiny_dir, image_size=8,
                          label_key="code")
  with pytest.raises(ValueError, match="has 3 classes"):
    tfds_source.load_tfds("fedprompt_tiny_domains", data_dir=tiny_dir, image_size=8,
                          label_key="code", class_names=("x", "y"))


def test_mock_cifar100_uses_shipped_names(tmp_path):
  with tfds.testing.mock_data(num_examples=7):
    ds = tfds_source.load_tfds("cifar100", data_dir=tmp_path, image_size=32)
    raw = tfds.data_source("cifar100", split="test", data_dir=tmp_path)
    expected = [raw[i] for i in range(len(raw))]
    small = tfds_source.load_tfds("cifar100", data_dir=tmp_path, image_size=16,
                                  max_examples=3, label_key="coarse_label")
  assert raw.dataset_info.features["label"].names[:3] == ["0", "1", "2"]  # mocked
  assert ds.class_names == class_names.CIFAR100
  assert len(set(ds.class_names)) == 100 and "aquarium fish" in ds.class_names
  assert len(ds.train) == 7 and len(ds.test) == 7 and ds.domain_names is None
  np.testing.assert_array_equal(ds.test.images, np.stack([e["image"] for e in expected]))
  np.testing.assert_array_equal(ds.test.labels, [e["label"] for e in expected])
  assert small.train.images.shape == (3, 16, 16, 3)
  assert small.class_names == class_names.CIFAR100_COARSE


def test_mock_domain_configs_crop_variable_sizes(tmp_path):
  with tfds.testing.mock_data(num_examples=4):
    ds = tfds_source.load_tfds("domainnet", data_dir=tmp_path, image_size=24,
                               domain_configs=("real", "sketch"))
    raw = tfds.data_source("domainnet/sketch", split="train", data_dir=tmp_path)
    sketch = [raw[i]["image"] for i in range(4)]
  assert ds.domain_names == ("real", "sketch")
  np.testing.assert_array_equal(ds.train.domains, [0, 0, 0, 0, 1, 1, 1, 1])
  assert len(ds.class_names) == 345 and "aircraft carrier" in ds.class_names
  assert len({s.shape for s in sketch}) > 1  # mocked images vary in size
  for image, stored in zip(ds.train.images[4:], sketch):
    np.testing.assert_array_equal(image, tfds_source.square_resize(stored, 24))


def test_square_resize_crops_centre():
  image = np.zeros((6, 10, 1), np.uint8)
  image[:, 2:8] = 200
  out = tfds_source.square_resize(image, 6)
  assert out.shape == (6, 6, 3) and (out == 200).all()
  with pytest.raises(ValueError, match="uint8"):
    tfds_source.square_resize(image.astype(np.float32), 6)


@pytest.mark.parametrize("name", ["cifar10", "no_such_data_set_xyz"])
def test_missing_data_set_is_one_line_error(tmp_path, name):
  data_dir = str(tmp_path / "empty")
  with pytest.raises(FileNotFoundError) as info:
    tfds_source.load_tfds(name, data_dir=data_dir, image_size=32)
  message = str(info.value)
  assert "\n" not in message
  assert f"data_dir={data_dir!r}" in message
  assert f"tfds.builder('{name}'" in message and "file_format='array_record'" in message


def test_readability_rules():
  assert class_names.is_readable(["cat", "sea_lion"])
  assert not class_names.is_readable(["0", "1"])
  assert not class_names.is_readable(["n01440764"])
  assert not class_names.is_readable([])
  assert class_names.tidy(" maple__tree ") == "maple tree"
  assert len(class_names.CIFAR10) == 10 and len(set(class_names.CIFAR100)) == 100
  assert all("_" not in n for n in class_names.CIFAR100)
  assert class_names.resolve("cifar10:3.0.2", "label", None, 10) == class_names.CIFAR10
