"""Makes the CLIP parity fixtures with transformers' PyTorch CLIPModel (needs torch).

For each tiny config it writes, under tests/fixtures/<name>/, a transformers-format
checkpoint (`save_pretrained`: config.json + model.safetensors) with a small BPE
vocabulary, and `reference.npz`: deterministic inputs (pixels in [0, 1], token ids,
attention mask) and the reference outputs (image_embeds, text_embeds,
logits_per_image) of the PyTorch model in float32.

Run from the repo root:  python scripts/make_parity_fixtures.py
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch
import transformers

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fedprompt_jax.models import bpe_vocab  # noqa: E402
from fedprompt_jax.models.clip_config import OPENAI_MEAN, OPENAI_STD  # noqa: E402
from fedprompt_jax.models.tokenizer import load_tokenizer  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests",
                   "fixtures")
TEXTS = ["a photo of a red circle.", "a sketch of a blue star.", "a photo of the number seven.",
         "X X X X green heart.", "an outline drawing of a yellow square with a thin border.",
         "a noisy photo of a purple triangle."]

# Two configs that differ in patch size, depth, heads, widths, activation and EOS pooling.
CONFIGS = {
    "clip_tiny_a": dict(
        vision=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, image_size=32, patch_size=4, hidden_act="quick_gelu"),
        text=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=16, hidden_act="quick_gelu",
                  legacy_eos=True),
        projection_dim=32),
    "clip_tiny_b": dict(
        vision=dict(hidden_size=48, intermediate_size=192, num_hidden_layers=3,
                    num_attention_heads=2, image_size=32, patch_size=8, hidden_act="gelu"),
        text=dict(hidden_size=64, intermediate_size=160, num_hidden_layers=3,
                  num_attention_heads=8, max_position_embeddings=20, hidden_act="gelu",
                  legacy_eos=False),
        projection_dim=24),
}


def reference_outputs(model, pixels: np.ndarray, ids: np.ndarray,
                      mask: np.ndarray) -> dict[str, np.ndarray]:
  """transformers' outputs for pixels [B, H, W, 3] in [0, 1] and ids/mask [N, T]."""
  norm = (pixels - np.array(OPENAI_MEAN, np.float32)) / np.array(OPENAI_STD, np.float32)
  pixel_values = torch.from_numpy(norm.transpose(0, 3, 1, 2).copy())
  input_ids = torch.from_numpy(ids.astype(np.int64))
  attention_mask = torch.from_numpy(mask.astype(np.int64))
  with torch.no_grad():
    out = model(pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask)
    image_features = model.get_image_features(pixel_values=pixel_values).pooler_output
    text_features = model.get_text_features(input_ids=input_ids,
                                            attention_mask=attention_mask).pooler_output
  return dict(image_embeds=out.image_embeds.numpy(), text_embeds=out.text_embeds.numpy(),
              image_features=image_features.numpy(), text_features=text_features.numpy(),
              logits_per_image=out.logits_per_image.numpy())


def make(name: str, spec: dict, seed: int) -> None:
  out_dir = os.path.join(OUT, name)
  os.makedirs(out_dir, exist_ok=True)
  text_spec = dict(spec["text"])
  legacy = text_spec.pop("legacy_eos")
  vocab, merges = bpe_vocab.train_bpe(TEXTS * 4, num_merges=120)
  bpe_vocab.write_tokenizer_files(out_dir, vocab, merges, text_spec["max_position_embeddings"])
  eos, bos = vocab[bpe_vocab.EOS], vocab[bpe_vocab.BOS]
  config = transformers.CLIPConfig(
      text_config=dict(text_spec, vocab_size=len(vocab), eos_token_id=2 if legacy else eos,
                       bos_token_id=bos, pad_token_id=eos),
      vision_config=spec["vision"], projection_dim=spec["projection_dim"])
  torch.manual_seed(seed)
  model = transformers.CLIPModel(config).eval()
  with torch.no_grad():  # wider weights than the default init, so differences show
    for p in model.parameters():
      if p.ndim >= 1:
        p.add_(0.05 * torch.randn_like(p))
  model.save_pretrained(out_dir)

  rng = np.random.default_rng(seed)
  size = spec["vision"]["image_size"]
  pixels = rng.uniform(0, 1, (5, size, size, 3)).astype(np.float32)
  tok = load_tokenizer(out_dir, text_spec["max_position_embeddings"])
  ids, mask = tok(TEXTS)
  np.savez(os.path.join(out_dir, "reference.npz"), pixels=pixels, input_ids=ids,
           attention_mask=mask, **reference_outputs(model, pixels, ids, mask),
           torch_version=np.array(torch.__version__),
           transformers_version=np.array(transformers.__version__))
  print(f"{out_dir}: {sum(p.numel() for p in model.parameters()):,} params")


if __name__ == "__main__":
  for i, (fixture_name, fixture_spec) in enumerate(CONFIGS.items()):
    make(fixture_name, fixture_spec, seed=i)
