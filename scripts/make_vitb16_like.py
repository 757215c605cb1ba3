"""Writes a random CLIP checkpoint with ViT-B/16's shapes, in transformers format (needs torch).

  python scripts/make_vitb16_like.py --out=/tmp/vitb16_like [--seed=0]

The directory is what `CLIPModel.save_pretrained` writes for
openai/clip-vit-base-patch16's architecture (vision: 224 px, patch 16, width 768,
12 layers, 12 heads; text: width 512, 12 layers, 8 heads, context 77, a 49,408-row
token embedding; projection 512; quick_gelu): 149.6M float32 parameters, about
600 MB. The weights are transformers' random initialisation under `--seed`, so
zero-shot accuracy is at chance (run with `--config.eval.check_zero_shot=False`).

Tokenizer: OpenAI's BPE vocabulary is not shipped with the project (nor with any
wheel it depends on), so the directory takes the embedded tiny CLIP's tokenizer
files (963 tokens) with a context length of 77. Its ids are a subset of the
49,408 rows of the token embedding, so memory and compute are ViT-B/16's; only
the vocabulary's coverage differs. Nothing of this is shipped: it is made where
it is needed (tests/test_vitb16_memory.py makes one in a temporary directory).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

VISION = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
              num_attention_heads=12, image_size=224, patch_size=16, hidden_act="quick_gelu")
TEXT = dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8,
            max_position_embeddings=77, vocab_size=49408, hidden_act="quick_gelu")
PROJECTION_DIM = 512


def make(out_dir: str, seed: int = 0) -> int:
  """Writes the checkpoint into `out_dir` (created or replaced); returns its parameter count."""
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  from fedprompt_jax import assets  # pylint: disable=import-outside-toplevel
  with open(os.path.join(assets.TINY_CLIP_DIR, "vocab.json")) as f:
    vocab = json.load(f)
  eos, bos = vocab["<|endoftext|>"], vocab["<|startoftext|>"]
  config = transformers.CLIPConfig(
      text_config=dict(TEXT, eos_token_id=eos, bos_token_id=bos, pad_token_id=eos),
      vision_config=VISION, projection_dim=PROJECTION_DIM)
  torch.manual_seed(seed)
  model = transformers.CLIPModel(config).eval()
  if os.path.exists(out_dir):
    shutil.rmtree(out_dir)
  model.save_pretrained(out_dir)
  for name in ("vocab.json", "merges.txt"):
    shutil.copyfile(os.path.join(assets.TINY_CLIP_DIR, name), os.path.join(out_dir, name))
  size = VISION["image_size"]
  # The tiny CLIP's files with ViT-B/16's sizes (CLIPImageProcessor itself wants torchvision).
  edits = {"tokenizer_config.json": {"model_max_length": TEXT["max_position_embeddings"]},
           "preprocessor_config.json": {"size": {"shortest_edge": size},
                                        "crop_size": {"height": size, "width": size}}}
  for name, changes in edits.items():
    with open(os.path.join(assets.TINY_CLIP_DIR, name)) as f:
      content = json.load(f)
    with open(os.path.join(out_dir, name), "w") as f:
      json.dump(dict(content, **changes), f, indent=2)
  return sum(p.numel() for p in model.parameters())


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="output directory (replaced if it exists)")
  parser.add_argument("--seed", type=int, default=0, help="torch seed of the random weights")
  args = parser.parse_args(argv)
  start = time.time()
  count = make(args.out, args.seed)
  print(f"{args.out}: CLIP with ViT-B/16's shapes, {count:,} random parameters (seed "
        f"{args.seed}), {time.time() - start:.1f} s")
  return 0


if __name__ == "__main__":
  sys.exit(main())
