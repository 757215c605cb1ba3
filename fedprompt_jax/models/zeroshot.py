"""Zero-shot classifier weights: class names x templates -> normalised text features."""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fedprompt_jax.models.clip import Clip, normalize
from fedprompt_jax.models.tokenizer import Tokenizer

DEFAULT_TEMPLATES = ("a photo of a {}.",)


def render_prompts(class_names: Sequence[str], templates: Sequence[str]) -> list[str]:
  """[C * len(templates)] texts, class-major: class c, template j at c * J + j."""
  for t in templates:
    if "{}" not in t:
      raise ValueError(f"template {t!r} has no '{{}}' placeholder for the class name")
  return [t.format(name) for name in class_names for t in templates]


def class_text_features(model: Clip, params, tokenizer: Tokenizer, class_names: Sequence[str],
                        templates: Sequence[str] = DEFAULT_TEMPLATES,
                        batch_size: int = 256) -> jax.Array:
  """CLIP's zero-shot head: mean over templates of normalised text embeddings, renormalised.

  Returns:
    [C, E] float32, unit rows; logits are exp(logit_scale) * normalize(image) @ this.T.
  """
  texts = render_prompts(class_names, templates)
  ids, mask = tokenizer(texts)
  chunks = []
  for start in range(0, len(texts), batch_size):
    chunks.append(_text_embeds(model, params, ids[start:start + batch_size],
                               mask[start:start + batch_size]))
  feats = normalize(jnp.concatenate(chunks)).reshape(len(class_names), len(templates), -1)
  return normalize(feats.mean(axis=1))


@functools.partial(jax.jit, static_argnums=0)
def _text_embeds(model: Clip, params, ids, mask):
  return model.encode_text(params, ids, mask).embeds


@functools.partial(jax.jit, static_argnums=0)
def _top1(model: Clip, params, class_features, images):
  feats = normalize(model.encode_image(params, images.astype(jnp.float32) / 255.0).embeds)
  return jnp.argmax(feats @ class_features.T, axis=-1)


def predict(model: Clip, params, class_features: jax.Array, images, batch_size: int = 512):
  """Top-1 class of uint8 images [N, H, W, 3] under a zero-shot head [C, E]; returns [N] ints."""
  preds = [_top1(model, params, class_features, images[i:i + batch_size])
           for i in range(0, len(images), batch_size)]
  return np.concatenate([np.asarray(p) for p in preds]) if preds else np.zeros((0,), np.int32)
