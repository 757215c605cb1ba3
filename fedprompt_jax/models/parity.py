"""Our CLIP's outputs on parity inputs, and their max abs difference to a reference.

The reference is transformers' PyTorch CLIPModel on the same weights (the committed
tests/fixtures/<name>/reference.npz, or live: scripts/make_parity_fixtures.reference_outputs).
tests/test_clip_parity.py and the `parity` table of launch/reproduce.py both use these.
"""

from __future__ import annotations

import numpy as np

from fedprompt_jax.models import hf_loader
from fedprompt_jax.models.clip import normalize

KEYS = ("image_embeds", "text_embeds", "image_features", "text_features", "logits_per_image")


def our_outputs(ckpt_dir: str, pixels: np.ndarray, input_ids: np.ndarray,
                attention_mask: np.ndarray) -> dict[str, np.ndarray]:
  """KEYS -> our outputs for pixels [B, H, W, 3] in [0, 1] and ids / mask [N, T].

  image_* are [B, E], text_* [N, E] (features unnormalised, embeds unit-norm),
  logits_per_image [B, N].
  """
  model, params, _ = hf_loader.load_clip(ckpt_dir)
  image = model.encode_image(params, pixels).embeds
  text = model.encode_text(params, input_ids, attention_mask).embeds
  return dict(
      image_features=np.asarray(image), text_features=np.asarray(text),
      image_embeds=np.asarray(normalize(image)), text_embeds=np.asarray(normalize(text)),
      logits_per_image=np.asarray(model.logits(params, pixels, input_ids, attention_mask)))


def max_diffs(ours: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict[str, float]:
  """{key: max |ours - ref|} over the keys of `ours`."""
  return {k: float(np.abs(ours[k] - ref[k]).max()) for k in ours}
