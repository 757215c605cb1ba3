"""The frozen-feature cache: a method's frozen image path computed once per split, not per step.

A method whose image path has nothing trainable declares it (`PromptMethod.frozen_image`
and `logits_from_features`, methods/base.py; PromptFL: the frozen tower's image
embedding). The engine then encodes each split it trains or cleanly evaluates on once,
[N, F] float32 on the host (`FeatureCache`), and the round and the clean evaluation
gather feature rows instead of images and run `on_features(method)`. Text paths with
nothing trainable need no cache: `prepare` computes them once (FedVPT's and PEP's
zero-shot heads).

The cache is for clean training and clean evaluation only. It is off, with the reason
in one log line (`decide`), where the images a step trains on are not the split's:
adversarial training (its loss attacks the images; `adversarial(...)` also drops the
declaration) and training augmentation (`data.augment`: each step draws new crops). Robust
evaluation always attacks images through the whole model (train.Run.method), so no
gradient on the input path is ever cut.

Cached and uncached runs compute the same features with the same operations, once in
batches of `eval.batch_size` and once inside the round at the round's batch; XLA may pick
other kernels for other shapes, so they agree to float rounding, not bit for bit
(tests/test_feature_cache.py).

Shapes: N examples in a split, B batch, H x W images, F feature width, C classes.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fedprompt_jax.data.transforms import Preprocess
from fedprompt_jax.methods.base import PromptMethod

Tree = Any


def decide(c: ml_collections.ConfigDict, method: PromptMethod) -> tuple[bool, str | None]:
  """(use the cache, the log line saying so or why not; None for a method without a frozen path).

  Args:
    c: the run's config (data.cache_frozen_features, adv.train, data.augment).
    method: the method as registered, before any wrapper.
  """
  if method.frozen_image is None:
    return False, None
  if not c.data.cache_frozen_features:
    return False, (f"frozen-feature cache off: data.cache_frozen_features=False; {method.name}'s "
                   "frozen image tower runs at every local step")
  if c.adv.train != "none":
    return False, (f"frozen-feature cache off: adv.train={c.adv.train!r} trains on images the "
                   f"attack changes at every step, so {method.name}'s image features are not "
                   "those of the split")
  if c.data.augment != "none":
    return False, (f"frozen-feature cache off: data.augment={c.data.augment!r} trains on new "
                   f"random crops and flips at every step, so {method.name}'s image features "
                   "are not those of the split")
  return True, (f"frozen-feature cache on: {method.name}'s image features are computed once per "
                "split for clean training and evaluation (robust evaluation attacks images)")


def on_features(method: PromptMethod) -> PromptMethod:
  """`method` with `logits` over cached features [B, F] (its `logits_from_features`).

  Raises:
    ValueError: the method declares no frozen image path, or has a loss or client
      statistics of its own (they would receive features where they expect pixels).
  """
  if method.frozen_image is None:
    raise ValueError(f"method {method.name!r} declares no frozen image path (frozen_image)")
  if method.loss is not None or method.client_stats is not PromptMethod.client_stats:
    raise ValueError(f"method {method.name!r} has its own loss or client statistics over pixels; "
                     "the frozen-feature cache supports cross-entropy of the logits only")
  return dataclasses.replace(method, name=f"{method.name}+cached_features",
                             logits=method.logits_from_features, frozen_image=None,
                             logits_from_features=None)


def make_encoder(method: PromptMethod, preprocess: Preprocess | None = None):
  """encode(frozen, pixels uint8 [B, h, w, 3]) -> [B, F] float32, jitted (frozen an argument).

  Stored images become the model's input through `preprocess` (resized, never augmented;
  data/transforms.py), as in the round and the evaluation; None = as stored.
  """
  if method.frozen_image is None:
    raise ValueError(f"method {method.name!r} declares no frozen image path (frozen_image)")
  preprocess = Preprocess() if preprocess is None else preprocess
  return jax.jit(lambda frozen, pixels: method.frozen_image(
      frozen, preprocess(pixels)).astype(jnp.float32))


def encode_images(encoder, frozen: Tree, images: np.ndarray, batch_size: int) -> np.ndarray:
  """[N, H, W, 3] uint8 -> [N, F] float32 features, in batches of min(`batch_size`, N) (the
  last one padded to it, so one compiled shape)."""
  batch_size = max(1, min(batch_size, len(images)))
  out = []
  for start in range(0, len(images), batch_size):
    chunk = images[start:start + batch_size]
    valid = len(chunk)
    if valid < batch_size:
      chunk = np.concatenate([chunk, np.zeros((batch_size - valid,) + chunk.shape[1:],
                                              chunk.dtype)])
    out.append(np.asarray(encoder(frozen, chunk))[:valid])
  if not out:
    shape = jax.eval_shape(encoder, frozen, jax.ShapeDtypeStruct((1,) + images.shape[1:],
                                                                 images.dtype))
    return np.zeros((0,) + shape.shape[1:], np.float32)
  return np.concatenate(out)


class FeatureCache:
  """The frozen features of each split a run asks for, encoded on first use and kept."""

  def __init__(self, method: PromptMethod, frozen: Tree, batch_size: int, verbose: bool = True,
               preprocess: Preprocess | None = None):
    self._encoder = make_encoder(method, preprocess)
    self._frozen, self._batch_size, self._verbose = frozen, batch_size, verbose
    self._memo: dict[int, tuple[Any, np.ndarray]] = {}  # id(split) -> (split, features)

  def features(self, split, name: str) -> np.ndarray:
    """[N, F] features of `split` (a data.dataset.Split); `name` is for the log line."""
    hit = self._memo.get(id(split))
    if hit is not None and hit[0] is split:
      return hit[1]
    start = time.perf_counter()
    feats = encode_images(self._encoder, self._frozen, split.images, self._batch_size)
    if self._verbose:
      print(f"frozen-feature cache: {name} split, {len(split):,} images -> {feats.shape[1]} "
            f"features each in {time.perf_counter() - start:.1f} s", flush=True)
    self._memo[id(split)] = (split, feats)
    return feats
