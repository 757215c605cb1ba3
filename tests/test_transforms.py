"""On-device image transforms (data/transforms.py): the resize against PIL's bicubic, the
identity at the model's side, random resized crops and flips, and bad values.

Tolerance of the resize against PIL (stated in README "Images at storage size"): on rendered
images, mean |ours - PIL| <= 0.3 and 99th percentile <= 1.0 in [0, 255] units. The rest is
PIL's own rounding: it resizes in two passes (width, then height) through an 8-bit image,
clipping the overshoot of the first pass. Doing the same with our kernel lands within 1 of
PIL everywhere, even on uniform noise (where the clipping moves single pixels by up to ~20).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from fedprompt_jax import config as config_lib
from fedprompt_jax.data import shapes, transforms
from fedprompt_jax.methods import base

STORED = 96
SIZES = (32, 50, 64, 224)  # down by 3, by a non-integer factor, by 1.5; up by 2.33


@pytest.fixture(scope="module")
def images():
  src = shapes.make_shapes(image_size=STORED, num_train_per_class_domain=1,
                           num_test_per_class_domain=0, seed=3, classes=shapes.CLASS_NAMES[:4])
  noise = np.random.default_rng(0).integers(0, 256, (2, STORED, STORED, 3), dtype=np.uint8)
  return src.train.images[::2][:10], noise  # 10 rendered images over the five domains


def pil_resize(batch: np.ndarray, size: int) -> np.ndarray:
  return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC))
                   for im in batch]).astype(np.float64)


@pytest.mark.parametrize("size", SIZES)
def test_resize_matches_pil_bicubic(images, size):
  rendered, _ = images
  ours = np.asarray(jax.jit(transforms.Preprocess(size))(jnp.asarray(rendered)), np.float64)
  assert ours.shape == (len(rendered), size, size, 3)
  assert 0 <= ours.min() and ours.max() <= 1
  diff = np.abs(ours * 255 - pil_resize(rendered, size))
  assert diff.mean() <= 0.3, diff.mean()
  assert np.percentile(diff, 99) <= 1.0, np.percentile(diff, 99)


@pytest.mark.parametrize("size", SIZES)
def test_the_kernel_is_pils_up_to_its_8bit_intermediate(images, size):
  batch = np.concatenate(images).astype(np.float32)
  first = jnp.clip(jnp.round(transforms.resize_to(jnp.asarray(batch), STORED, size)), 0, 255)
  two_pass = jnp.clip(jnp.round(transforms.resize_to(first, size, size)), 0, 255)
  assert np.abs(np.asarray(two_pass) - pil_resize(np.concatenate(images), size)).max() <= 1


def test_model_side_images_are_only_scaled(images):
  rendered = jnp.asarray(images[0])
  expected = rendered.astype(jnp.float32) / 255.0
  for pre in (transforms.Preprocess(STORED), transforms.Preprocess(STORED, "crop_flip")):
    np.testing.assert_array_equal(jax.jit(pre)(rendered), expected)  # evaluation never crops
  np.testing.assert_array_equal(transforms.Preprocess()(rendered), expected)
  np.testing.assert_array_equal(base.as_model_input(rendered), expected)
  features = jnp.ones((4, 8), jnp.float32)
  assert transforms.Preprocess(32)(features) is features  # cached features pass through
  key = jax.random.key(0)
  np.testing.assert_array_equal(transforms.Preprocess(STORED).train(rendered, key), expected)


def ramp(h: int, w: int) -> np.ndarray:
  """[h, w, 3]: red = x, green = y of the pixel centre in [0, 1], blue = 0.5."""
  xs, ys = (np.arange(w) + 0.5) / w, (np.arange(h) + 0.5) / h
  return np.stack([np.broadcast_to(xs[None], (h, w)), np.broadcast_to(ys[:, None], (h, w)),
                   np.full((h, w), 0.5)], -1).astype(np.float32)


@pytest.mark.parametrize("scale", [(0.08, 1.0), (0.5, 0.6)])
def test_crop_flip_crops_areas_and_ratios_in_range_and_flips_half(scale):
  h, w, size, n = 48, 40, 32, 512
  out = np.asarray(jax.jit(lambda k: transforms.crop_flip(
      jnp.broadcast_to(ramp(h, w), (n, h, w, 3)), k, size, scale))(jax.random.key(0)))
  assert out.shape == (n, size, size, 3) and 0 <= out.min() and out.max() <= 1
  np.testing.assert_allclose(out[..., 2], 0.5, atol=1e-6)  # a constant stays constant
  # Bicubic keeps a ramp linear away from the image's edges: the crop's side, as a fraction of
  # the image's, is the ramp's rise between output pixels 2 and S-3, times S / (S - 5).
  mid = size // 2
  width = (out[:, mid, size - 3, 0] - out[:, mid, 2, 0]) * size / (size - 5)  # < 0: flipped
  height = (out[:, size - 3, mid, 1] - out[:, 2, mid, 1]) * size / (size - 5)
  area, ratio = np.abs(width) * height, np.abs(width) * w / (height * h)
  assert (height > 0).all()  # never flipped upside down
  assert scale[0] - 0.01 <= area.min() and area.max() <= scale[1] + 0.01, (area.min(), area.max())
  assert 0.75 - 0.01 <= ratio.min() and ratio.max() <= 4 / 3 + 0.01, (ratio.min(), ratio.max())
  assert 0.4 <= (width < 0).mean() <= 0.6  # flipped with probability 1/2
  assert area.max() - area.min() > 0.5 * (scale[1] - scale[0])  # the range is used


def test_crop_flip_is_a_function_of_its_key(images):
  batch = jnp.asarray(images[0][:4], jnp.float32) / 255.0
  aug = jax.jit(lambda k: transforms.crop_flip(batch, k, 32))
  a, b = aug(jax.random.key(1)), aug(jax.random.key(1))
  np.testing.assert_array_equal(a, b)
  other = np.asarray(aug(jax.random.key(2)))
  assert all(np.abs(other[i] - np.asarray(a[i])).mean() > 1e-3 for i in range(4))
  # Each example of a batch gets its own crop: the same image four times gives four crops.
  same = np.asarray(jax.jit(lambda k: transforms.crop_flip(
      jnp.broadcast_to(batch[0], batch.shape), k, 32))(jax.random.key(1)))
  assert all(np.abs(same[i] - same[0]).mean() > 1e-3 for i in range(1, 4))


def test_preprocess_refuses_bad_values():
  with pytest.raises(ValueError, match="augment='flip' is unknown; valid: none, crop_flip"):
    transforms.Preprocess(32, "flip")
  with pytest.raises(ValueError, match="needs image_size"):
    transforms.Preprocess(None, "crop_flip")
  with pytest.raises(ValueError, match=r"crop_scale=\(0.5, 0.2\) must satisfy"):
    transforms.Preprocess(32, "crop_flip", (0.5, 0.2))
  with pytest.raises(ValueError, match="needs images, got float32 inputs"):
    transforms.Preprocess(32, "crop_flip").train(jnp.ones((2, 8)), jax.random.key(0))


@pytest.mark.parametrize("key,value,message", [
    ("storage_size", 0, "data.storage_size=0 is invalid; must be an integer >= 1 (pixels), or "
                        "None for the model's side"),
    ("storage_size", -3, "data.storage_size=-3 is invalid; must be an integer >= 1"),
    ("augment", "flip", "data.augment='flip' is invalid; valid: none, crop_flip"),
    ("crop_scale", (0.5, 0.2), "data.crop_scale=(0.5, 0.2) is invalid; must be two numbers "
                               "(low, high) with 0 < low <= high <= 1"),
    ("crop_scale", (0.0, 1.0), "data.crop_scale=(0.0, 1.0) is invalid"),
    ("crop_scale", (0.1,), "data.crop_scale=(0.1,) is invalid"),
])
def test_bad_values_give_one_line_errors(key, value, message):
  c = config_lib.default_config()
  c.data[key] = value
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(c)
  assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_defaults_keep_todays_behaviour():
  c = config_lib.default_config()
  assert (c.data.storage_size, c.data.augment, tuple(c.data.crop_scale)) == (None, "none",
                                                                            (0.08, 1.0))
  config_lib.validate(c)


def test_the_keys_change_what_is_trained_so_a_workdir_cannot_resume_with_others():
  from fedprompt_jax import workdir  # pylint: disable=import-outside-toplevel
  default = workdir.config_values(config_lib.default_config())
  new_keys = ("data.storage_size", "data.augment", "data.crop_scale")
  older = {k: v for k, v in default.items() if k not in new_keys}  # a config.json from before
  assert workdir.changed_keys(older, default, default) == []
  c = config_lib.default_config()
  c.data.storage_size, c.data.augment, c.data.crop_scale = 48, "crop_flip", (0.5, 1.0)
  assert workdir.changed_keys(default, workdir.config_values(c), default) == [
      'data.augment "none" -> "crop_flip"', "data.crop_scale [0.08, 1.0] -> [0.5, 1.0]",
      "data.storage_size null -> 48"]
