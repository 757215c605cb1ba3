"""The shipped Tiny-ImageNet builder prepares TF-free from a miniature of the official zip."""

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

tfds = pytest.importorskip("tensorflow_datasets")

from fedprompt_jax.data import class_names  # noqa: E402
from fedprompt_jax.data import tfds_source  # noqa: E402
from fedprompt_jax.data import tiny_imagenet  # noqa: E402

_CLASSES = ("n01443537", "n04596742", "n12267677")  # goldfish, worm fence, acorn


def _jpeg(value: int, mode: str = "RGB") -> bytes:
  out = io.BytesIO()
  Image.new(mode, (64, 64), (value, 0, 255 - value) if mode == "RGB" else value).save(
      out, format="JPEG", quality=100)
  return out.getvalue()


def _write_zip(path):
  """The official layout: wnids.txt, train/<wnid>/images, val/images + annotations, test."""
  root = "tiny-imagenet-200/"
  with zipfile.ZipFile(path, "w") as z:
    z.writestr(root + "wnids.txt", "\n".join(reversed(tiny_imagenet.WNIDS)) + "\n")
    z.writestr(root + "words.txt", "n01443537\tgoldfish, Carassius auratus\n")
    for c, wnid in enumerate(_CLASSES):
      z.writestr(f"{root}train/{wnid}/{wnid}_boxes.txt", "")
      for i in range(2):
        z.writestr(f"{root}train/{wnid}/images/{wnid}_{i}.JPEG", _jpeg(40 * c + 10 * i))
    lines = []
    for i, wnid in enumerate(("n12267677", "n01443537")):
      z.writestr(f"{root}val/images/val_{i}.JPEG", _jpeg(200, "L" if i else "RGB"))
      lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    z.writestr(root + "val/val_annotations.txt", "\n".join(lines) + "\n")
    z.writestr(root + "test/images/test_0.JPEG", _jpeg(7))


def test_prepare_and_load_miniature(tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  _write_zip(manual / tiny_imagenet.ZIP_NAME)
  data_dir = str(tmp_path / "tfds")
  builder = tfds.builder("tiny_imagenet", data_dir=data_dir, file_format="array_record")
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
  assert builder.info.splits["train"].num_examples == 6
  assert builder.info.splits["validation"].num_examples == 2
  ds = tfds_source.load_tfds("tiny_imagenet", data_dir=data_dir, image_size=64,
                             test_split="validation")
  assert ds.class_names == class_names.TINY_IMAGENET and len(ds.class_names) == 200
  wnid_label = {w: i for i, w in enumerate(sorted(tiny_imagenet.WNIDS))}
  assert sorted(ds.train.labels.tolist()) == sorted(wnid_label[w] for w in _CLASSES for _ in "ab")
  assert sorted(ds.test.labels.tolist()) == sorted([wnid_label["n12267677"],
                                                     wnid_label["n01443537"]])
  assert ds.class_names[wnid_label["n01443537"]] == "goldfish"
  assert ds.class_names[wnid_label["n12267677"]] == "acorn"
  # The grey val image comes back as RGB with equal channels; colours survive JPEG closely.
  grey = ds.test.images[ds.test.labels == wnid_label["n01443537"]][0].astype(int)
  assert np.abs(grey - 200).max() <= 2
  first = ds.train.images[ds.train.labels == wnid_label["n01443537"]].astype(int)
  np.testing.assert_allclose(np.sort(first[..., 2].mean(axis=(1, 2))), [245, 255], atol=3)


def test_wrong_wnids_rejected():
  with pytest.raises(ValueError) as error:
    tiny_imagenet.check_wnids("n01443537\nn99999999\n")
  assert str(error.value).startswith("wnids.txt lists 2 classes that are not Tiny-ImageNet's 200")
