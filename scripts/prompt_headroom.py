"""How much room the embedded world leaves for prompts: centralised few-shot deep VPT vs zero-shot.

Per target (every base shapes domain, and digits; `--targets`), deep visual prompts
(`[L, 1, P, Dv]`, VPT-deep) are trained on s shots per class of that domain's train split
with cross-entropy over the frozen zero-shot head; with `--union=D1,D2,...` ONE prompt is
trained on the union of s shots per class from each listed domain and tested on each of
them and on the `--heldout` domains (never trained on). The protocol is
`fedprompt_jax/headroom.py`; `python launch/reproduce.py --table=headroom` writes the
README's table from it.

  python scripts/prompt_headroom.py                 # the embedded tiny CLIP, 16 shots
  python scripts/prompt_headroom.py --targets=falsecolour --seeds=0,1,2
  python scripts/prompt_headroom.py --union=tinted_photo,tinted_sketch,tinted_noisy \\
      --heldout=tinted_pattern --seeds=0,1,2      # world v2: one prompt for three domains
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fedprompt_jax import headroom  # noqa: E402
from fedprompt_jax.data import shapes  # noqa: E402
from fedprompt_jax.models.hf_loader import load_clip  # noqa: E402
from fedprompt_jax.models.tokenizer import load_tokenizer  # noqa: E402


def _print(row: headroom.Row, seconds: float) -> None:
  held = "" if row.target in row.trained_on else "  (held out)"
  print(f"{row.target:<19} {row.seed:>4} {row.zero_shot:>9.1%} {row.prompted:>9.1%} "
        f"{row.gain_points:>+6.1f}pt  {seconds:.0f}s{held}", flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--checkpoint", default="embedded")
  parser.add_argument("--shots", type=int, default=16)
  parser.add_argument("--tokens", type=int, default=8)
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--lr", type=float, default=3e-2)
  parser.add_argument("--seeds", default="0")
  parser.add_argument("--targets", default="", help="comma-separated subset, e.g. falsecolour,digits")
  parser.add_argument("--union", default="", help="train one prompt on these domains together")
  parser.add_argument("--heldout", default="", help="with --union: domains only tested")
  args = parser.parse_args()
  settings = headroom.Settings(args.shots, args.tokens, args.steps, args.batch, args.lr)
  model, params, ckpt = load_clip(args.checkpoint)
  tok = load_tokenizer(ckpt, model.config.text.max_position_embeddings)
  union = [d for d in args.union.split(",") if d]
  heldout = [d for d in args.heldout.split(",") if d]
  if heldout and not union:
    sys.exit("error: --heldout needs --union (the domains the prompt is trained on)")
  targets = [t for t in args.targets.split(",") if t] or list(shapes.BASE_DOMAINS) + ["digits"]
  print(f"{'target':<19} {'seed':>4} {'zero-shot':>9} {'deep VPT':>9} {'gain':>7}  time")
  try:
    for seed in (int(s) for s in args.seeds.split(",")):
      start = time.time()
      if union:
        for row in headroom.measure_union(model, params, tok, union, heldout, seed, settings):
          _print(row, time.time() - start)
        continue
      for target in targets:
        start = time.time()
        _print(headroom.measure_target(model, params, tok, target, seed, settings),
               time.time() - start)
  except ValueError as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  main()
