"""Stored images -> the model's input, on device: resize to the model's side, and augmentation.

Data sets are held on the host as uint8 [N, h, w, 3] at `data.storage_size` (None = the
model's side, so no resize happens). Everything that feeds images to a method goes
through one `Preprocess` inside its jitted code, before CLIP's mean/std normalisation
(which stays inside the model): the local step of a round (`Preprocess.train`), the
client statistics, clean and personalised evaluation, robust evaluation and the
frozen-feature encoder (`Preprocess.__call__`).

  resize     bicubic (Keys, a = -0.5, as PIL's BICUBIC), antialiased when downsampling
             (the kernel is stretched by the scale, as PIL does), edges renormalised,
             output clipped to [0, 1]. An image already at the model's side is only
             scaled to [0, 1]: bit for bit what the engine did before this module.
  crop_flip  training only: per example a random crop of area fraction U(crop_scale)
             and aspect ratio (width / height) log-uniform in [3/4, 4/3] (torchvision's
             RandomResizedCrop, CoOp's "random_resized_crop" with scale (0.08, 1)),
             resized straight from the stored image to the model's side with the same
             kernel, then a left-right flip with probability 1/2. Crop corners are
             continuous (sub-pixel), and a side that would exceed the image is clipped to
             it instead of torchvision's 10 rejection tries and centre-crop fallback.

Attacks act on the model-resolution image after the resize (eps keeps its meaning in
1/255 units of the model's input), and the resize stops no gradient.

Shapes: B batch, h x w stored images, S the model's side.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

AUGMENTS = ("none", "crop_flip")
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)  # width / height, as torchvision's RandomResizedCrop


def resize_to(x: jax.Array, height: int, width: int) -> jax.Array:
  """[..., h, w, C] float -> [..., height, width, C]: bicubic, antialiased when downsampling.

  Not clipped (bicubic overshoots near edges); `resize` clips.
  """
  shape = x.shape[:-3] + (height, width) + x.shape[-1:]
  return jax.image.resize(x, shape, "bicubic", antialias=True)


def resize(x: jax.Array, size: int) -> jax.Array:
  """[..., h, w, 3] float in [0, 1] -> [..., S, S, 3] in [0, 1]; `x` itself if already S x S."""
  if x.shape[-3:-1] == (size, size):
    return x
  return jnp.clip(resize_to(x, size, size), 0.0, 1.0)


def crop_flip(x: jax.Array, key: jax.Array, size: int,
              scale: tuple[float, float] = (0.08, 1.0)) -> jax.Array:
  """Random resized crop and left-right flip of each image.

  Args:
    x: [B, h, w, 3] float in [0, 1].
    key: one key for the batch; each example draws its own crop and flip from it.
    size: S, the output side.
    scale: (low, high) range of the crop's area as a fraction of the image's.

  Returns:
    [B, S, S, 3] float in [0, 1].
  """
  b, h, w = x.shape[0], x.shape[1], x.shape[2]
  k_area, k_ratio, k_top, k_left, k_flip = jax.random.split(key, 5)
  area = jax.random.uniform(k_area, (b,), minval=scale[0], maxval=scale[1]) * (h * w)
  log_ratio = jax.random.uniform(k_ratio, (b,), minval=math.log(CROP_RATIO[0]),
                                 maxval=math.log(CROP_RATIO[1]))
  ratio = jnp.exp(log_ratio)
  crop_w = jnp.minimum(jnp.sqrt(area * ratio), w)  # in stored pixels
  crop_h = jnp.minimum(jnp.sqrt(area / ratio), h)
  top = jax.random.uniform(k_top, (b,)) * (h - crop_h)
  left = jax.random.uniform(k_left, (b,)) * (w - crop_w)
  # Output coordinate = input coordinate * scale + translation (half-pixel centres).
  scales = jnp.stack([size / crop_h, size / crop_w], axis=-1)  # [B, 2]
  translations = -jnp.stack([top, left], axis=-1) * scales

  def one(image, s, t):
    return jax.image.scale_and_translate(image, (size, size, image.shape[-1]), (0, 1), s, t,
                                         "bicubic", antialias=True)

  out = jax.vmap(one)(x, scales, translations)
  flip = jax.random.bernoulli(k_flip, 0.5, (b,))
  out = jnp.where(flip[:, None, None, None], out[:, :, ::-1], out)
  return jnp.clip(out, 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class Preprocess:
  """What a method's `logits` receive from stored images (a static argument of jitted code).

  Attributes:
    image_size: S, the model's side; None = the images as stored (only scaled to [0, 1]).
    augment: one of AUGMENTS; applied by `train` only.
    crop_scale: crop_flip's (low, high) area fraction.
  """
  image_size: int | None = None
  augment: str = "none"
  crop_scale: tuple[float, float] = (0.08, 1.0)

  def __post_init__(self):
    if self.augment not in AUGMENTS:
      raise ValueError(f"augment={self.augment!r} is unknown; valid: {', '.join(AUGMENTS)}")
    if self.augment != "none" and self.image_size is None:
      raise ValueError(f"augment={self.augment!r} needs image_size, the model's side")
    low, high = self.crop_scale
    if not 0 < low <= high <= 1:
      raise ValueError(f"crop_scale={self.crop_scale!r} must satisfy 0 < low <= high <= 1")

  def __call__(self, x: jax.Array) -> jax.Array:
    """uint8 [..., h, w, 3] -> float32 [..., S, S, 3] in [0, 1] (evaluation, features,
    client statistics); anything else (cached float32 features) as it is."""
    if x.dtype != jnp.uint8:
      return x
    x = x.astype(jnp.float32) / 255.0
    return x if self.image_size is None else resize(x, self.image_size)

  def train(self, x: jax.Array, key: jax.Array) -> jax.Array:
    """What one local step trains on: uint8 [B, h, w, 3] -> [B, S, S, 3], augmented with
    `key` (unused without augmentation)."""
    if self.augment == "none":
      return self(x)
    if x.dtype != jnp.uint8:
      raise ValueError(f"augment={self.augment!r} needs images, got {x.dtype} inputs (the "
                       "frozen-feature cache must be off under augmentation)")
    return crop_flip(x.astype(jnp.float32) / 255.0, key, self.image_size, self.crop_scale)
