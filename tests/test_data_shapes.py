"""Tests of the procedural shapes data set and of the DataSource form."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fedprompt_jax.data import shapes
from fedprompt_jax.data import source

_TRAIN, _TEST = 8, 4
_FEW = ("red circle", "blue star", "orange heart", "green crescent")


@pytest.fixture(scope="module")
def data() -> source.DataSource:
  return shapes.make_shapes(_TRAIN, _TEST, image_size=32, seed=0)


def _colour_of(images: np.ndarray) -> np.ndarray:
  """Predicts the colour index of each [N, S, S, 3] image.

  Averages the 30 most chromatic pixels (max - min channel) and picks the
  palette colour of nearest chromaticity.
  """
  x = images.reshape(len(images), -1, 3).astype(np.float32)
  top = np.argsort(-(x.max(-1) - x.min(-1)), axis=1)[:, :30]
  mean = np.take_along_axis(x, top[..., None], axis=1).mean(1)
  palette = np.array(list(shapes.COLOURS.values()), np.float32)
  chroma = lambda c: c / np.maximum(c.sum(-1, keepdims=True), 1)
  return ((chroma(mean)[:, None] - chroma(palette)[None]) ** 2).sum(-1).argmin(1)


def _nearest_class_mean(train: source.Split, test: source.Split, mask_train, mask_test,
                        num_classes: int) -> float:
  """Accuracy of a nearest-class-mean classifier on raw pixels."""
  x = train.images[mask_train].reshape(mask_train.sum(), -1).astype(np.float32)
  y = train.labels[mask_train]
  means = np.stack([x[y == c].mean(0) for c in range(num_classes)])
  xt = test.images[mask_test].reshape(mask_test.sum(), -1).astype(np.float32)
  dist = (xt ** 2).sum(1)[:, None] - 2 * xt @ means.T + (means ** 2).sum(1)[None]
  return float((dist.argmin(1) == test.labels[mask_test]).mean())


def test_classes_domains_and_balance(data):
  assert len(data.class_names) >= 40 and len(set(data.class_names)) == len(data.class_names)
  assert data.class_names == shapes.CLASS_NAMES and "red circle" in data.class_names
  assert data.domain_names == shapes.BASE_DOMAINS and len(shapes.BASE_DOMAINS) >= 4
  for split, n in ((data.train, _TRAIN), (data.test, _TEST)):
    d = len(shapes.BASE_DOMAINS)
    assert split.images.shape == (n * 48 * d, 32, 32, 3) and split.images.dtype == np.uint8
    counts = np.bincount(split.labels * d + split.domains, minlength=48 * d)
    np.testing.assert_array_equal(counts, n)
    assert split.images.min() < 30 and split.images.max() > 225  # full uint8 range used


def test_attribute_sentences(data):
  sets = set()
  for name in data.class_names:
    sentences = data.attributes[name]
    assert len(sentences) == 10 and len(set(sentences)) == 10
    assert all(name in s and s.endswith(".") for s in sentences)
    sets.add(frozenset(sentences))
  assert len(sets) == len(data.class_names)
  assert data.attributes["orange star"][0] == "a photo of an orange star, which has five points."


def test_same_seed_same_bytes_other_seed_differs():
  a = shapes.make_shapes(2, 1, seed=7, classes=_FEW)
  b = shapes.make_shapes(2, 1, seed=7, classes=_FEW)
  c = shapes.make_shapes(2, 1, seed=8, classes=_FEW)
  for split in ("train", "test"):
    x, y, z = (getattr(s, split) for s in (a, b, c))
    assert x.images.tobytes() == y.images.tobytes()
    np.testing.assert_array_equal(x.labels, y.labels)
    assert x.images.tobytes() != z.images.tobytes()
  # Train and test come from different streams: no test image is a train image.
  train = {im.tobytes() for im in a.train.images}
  assert not any(im.tobytes() in train for im in a.test.images)


def test_subsets_keep_the_images_of_their_classes(data):
  few = shapes.make_shapes(_TRAIN, _TEST, seed=0, classes=_FEW[::-1], domains=("noisy", "photo"))
  assert few.class_names == _FEW[::-1] and few.domain_names == ("noisy", "photo")
  for label, domain in itertools.product(range(len(_FEW)), range(2)):
    full_label = data.class_names.index(few.class_names[label])
    full_domain = data.domain_names.index(few.domain_names[domain])
    mine = few.test.images[(few.test.labels == label) & (few.test.domains == domain)]
    full = data.test.images[(data.test.labels == full_label) & (data.test.domains == full_domain)]
    assert sorted(im.tobytes() for im in mine) == sorted(im.tobytes() for im in full)


def test_colour_is_recoverable_in_every_domain(data):
  colour = data.test.labels % len(shapes.COLOURS)
  assert [n.split()[0] for n in data.class_names[:6]] == list(shapes.COLOURS)
  # falsecolour swaps the red and green channels; undoing it recovers the colour.
  undo = np.argsort(shapes._FALSE_COLOUR_CHANNELS)  # pylint: disable=protected-access
  false = data.test.domains == data.domain_names.index("falsecolour")
  images = np.where(false[:, None, None, None], data.test.images[..., undo], data.test.images)
  predicted = _colour_of(images)
  for d, domain in enumerate(data.domain_names):
    in_domain = data.test.domains == d
    accuracy = (predicted[in_domain] == colour[in_domain]).mean()
    assert accuracy >= 0.9, (domain, accuracy)
  # As rendered, most false colours name the wrong palette colour.
  assert (_colour_of(data.test.images[false]) == colour[false]).mean() <= 0.5


def test_raw_pixels_are_informative_but_not_enough(data):
  train, test, chance = data.train, data.test, 1 / 48
  everywhere = _nearest_class_mean(train, test, np.ones(len(train), bool),
                                   np.ones(len(test), bool), 48)
  assert 3 * chance < everywhere < 0.5
  sketch_train, sketch_test = train.domains == 1, test.domains == 1
  in_domain = _nearest_class_mean(train, test, sketch_train, sketch_test, 48)
  from_photo = _nearest_class_mean(train, test, train.domains == 0, sketch_test, 48)
  assert from_photo < 2 * chance < in_domain  # a real domain shift


def test_shapes_are_distinct_outlines():
  grid = np.linspace(-1.2, 1.2, 97, dtype=np.float32)
  x, y = grid[None, :], grid[::-1, None]
  masks = {s: shapes.shape_distance(s, x, y) < 0 for s in shapes.SHAPES}
  for name, mask in masks.items():
    assert 0.1 < mask.mean() < 0.7, name  # a real region inside the frame
  for a, b in itertools.combinations(shapes.SHAPES, 2):
    iou = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
    assert iou < 0.8, (a, b, iou)


@pytest.mark.parametrize("size", [32, 64, 224])
def test_sketch_shapes_span_40_to_80_percent(size):
  data = shapes.make_shapes(3 if size < 224 else 1, 0, image_size=size, domains=("sketch",),
                            classes=_FEW)
  images = data.train.images
  assert images.shape[1:] == (size, size, 3)
  drawn = np.abs(images.astype(int) - [243, 238, 225]).max(-1) > 60  # off the paper
  for mask in drawn:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    extent = max(rows[-1] - rows[0], cols[-1] - cols[0]) / size
    assert 0.3 < extent < 0.85


def test_rejects_unknown_names():
  with pytest.raises(ValueError, match="unknown shapes class names"):
    shapes.make_shapes(1, 1, classes=("red blob",))
  with pytest.raises(ValueError, match="unknown shapes domain names"):
    shapes.make_shapes(1, 1, domains=("cartoon",))


# The DataSource form itself.


def _split(n=4, classes=3, domains=None):
  return source.Split(images=np.zeros((n, 8, 8, 3), np.uint8),
                      labels=np.arange(n, dtype=np.int32) % classes, domains=domains)


def test_source_validation_names_the_bad_value():
  with pytest.raises(ValueError, match="uint8"):
    source.Split(images=np.zeros((2, 8, 8, 3), np.float32), labels=np.zeros(2, np.int32))
  with pytest.raises(ValueError, match=r"shape \(2,\)"):
    source.Split(images=np.zeros((2, 8, 8, 3), np.uint8), labels=np.zeros(3, np.int32))
  with pytest.raises(ValueError, match=r"repeated: \['cat'\]"):
    source.DataSource("x", ("cat", "dog", "cat"), _split(), _split())
  with pytest.raises(ValueError, match=r"test labels must lie in \[0, 2\), got min 0 max 2"):
    source.DataSource("x", ("cat", "dog"), _split(classes=2), _split(classes=3))
  with pytest.raises(ValueError, match="domain_names"):
    source.DataSource("x", ("a", "b", "c"), _split(domains=np.zeros(4, np.int32)), _split())


def test_subset_and_registry():
  split = _split(domains=np.array([0, 1, 0, 1], np.int32))
  picked = source.subset(split, split.domains == 1)
  np.testing.assert_array_equal(picked.labels, [1, 0])
  np.testing.assert_array_equal(source.subset(split, [3, 0]).labels, [0, 0])
  with pytest.raises(ValueError) as info:
    source.load_source("xyz", image_size=32)
  assert str(info.value) == "unknown data source 'xyz'; valid: digits, shapes, tfds"
  loaded = source.load_source("shapes", image_size=16, num_train_per_class_domain=1,
                              num_test_per_class_domain=1, classes=_FEW[:2])
  assert loaded.train.images.shape == (2 * len(shapes.BASE_DOMAINS), 16, 16, 3)


def test_base_novel_split_keeps_novel_classes_out_of_training():
  from fedprompt_jax.data.source import split_base_novel  # pylint: disable=import-outside-toplevel
  src = shapes.make_shapes(2, 1, 16, seed=0, domains=("photo",))
  base, novel = split_base_novel(src)
  assert base.class_names + novel.class_names == src.class_names
  assert base.num_classes == 24 and novel.num_classes == 24
  assert len(novel.train) == 0 and len(base.train) == 2 * 24
  assert base.train.labels.max() == 23 and novel.test.labels.max() == 23
  # Novel test images are the source's test images of classes 24..47, relabelled.
  sel = src.test.labels >= 24
  np.testing.assert_array_equal(novel.test.images, src.test.images[sel])
  np.testing.assert_array_equal(novel.test.labels, src.test.labels[sel] - 24)


def _digest(src: source.DataSource) -> str:
  import hashlib  # pylint: disable=import-outside-toplevel
  h = hashlib.sha256()
  for split in (src.train, src.test):
    for a in (split.images, split.labels, split.domains):
      h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()[:16]


def test_world_bytes_are_pinned():
  """The same seed gives the same bytes on every machine (only elementwise float32 numpy
  arithmetic renders): the five base domains are those of world v1, the tinted four pinned."""
  base = shapes.make_shapes(2, 1, image_size=32, seed=0, classes=_FEW)
  tinted = shapes.make_shapes(2, 1, image_size=32, seed=0, classes=_FEW,
                              domains=shapes.TINTED_DOMAINS)
  assert (_digest(base), _digest(tinted)) == ("e72753e3e8249ae3", "30d34e4c35eeca3d")


def test_tint_is_a_chroma_rotation_that_keeps_the_information():
  tint = shapes._TINT  # pylint: disable=protected-access
  np.testing.assert_allclose(tint, shapes.tint_matrix(), atol=1e-6)
  luma = np.array([0.299, 0.587, 0.114])
  np.testing.assert_allclose(luma @ tint, luma, atol=1e-5)  # Y (brightness) is kept
  src = shapes.make_shapes(0, 6, image_size=32, seed=3, domains=shapes.TINTED_DOMAINS)
  colour = src.test.labels % len(shapes.COLOURS)
  # Undoing the cast recovers the colour in every tinted domain (as rendered, a nearest-
  # chromaticity rule is right on 78% here: a moderate shift, to which zero-shot CLIP is brittle).
  undone = np.clip(src.test.images.astype(np.float32) @ np.linalg.inv(tint).T, 0, 255)
  predicted = _colour_of(undone)
  for d, domain in enumerate(src.domain_names):
    in_domain = src.test.domains == d
    assert (predicted[in_domain] == colour[in_domain]).mean() >= 0.9, domain
  assert (_colour_of(src.test.images) == colour).mean() <= 0.85
  # Each tinted domain is its base domain's scene through the cast: same nuisances.
  assert shapes.DOMAINS[:5] == shapes.BASE_DOMAINS
