"""How much room the embedded world leaves for prompts: centralised few-shot deep VPT vs zero-shot.

For each target (every shapes domain, and digits) it trains deep visual prompts
(`[L, 1, P, Dv]`, one set for all layers, VPT-deep) on s shots per class of the
train split with cross-entropy over the frozen zero-shot head, then reports the
test accuracy of zero-shot and of the prompted model. The frozen CLIP is an
argument of the jitted step, never a closure constant.

  python scripts/prompt_headroom.py                 # the embedded tiny CLIP, 16 shots
  python scripts/prompt_headroom.py --targets=falsecolour --seeds=0,1,2
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fedprompt_jax.assets import world  # noqa: E402
from fedprompt_jax.data import digits, shapes  # noqa: E402
from fedprompt_jax.data.source import DataSource, Split, subset  # noqa: E402
from fedprompt_jax.models import zeroshot  # noqa: E402
from fedprompt_jax.models.clip import normalize  # noqa: E402
from fedprompt_jax.models.hf_loader import load_clip  # noqa: E402
from fedprompt_jax.models.tokenizer import load_tokenizer  # noqa: E402


def few_shot(split: Split, shots: int, rng: np.random.Generator) -> Split:
  idx = [rng.choice(np.flatnonzero(split.labels == c), shots, replace=False)
         for c in np.unique(split.labels)]
  return subset(split, np.concatenate(idx))


def targets(seed: int) -> dict[str, tuple[DataSource, Split, Split]]:
  """name -> (source, train split, test split) restricted to one domain where there are domains."""
  out = {}
  sh = shapes.make_shapes(40, 20, world.IMAGE_SIZE, seed=seed + 2000)
  for d, name in enumerate(sh.domain_names):
    out[f"shapes/{name}"] = (sh, subset(sh.train, sh.train.domains == d),
                             subset(sh.test, sh.test.domains == d))
  dg = digits.load_digits(world.IMAGE_SIZE, seed=seed)
  out["digits"] = (dg, dg.train, dg.test)
  return out


def train_deep_vpt(model, params, head, train: Split, *, num_tokens: int, steps: int,
                   batch: int, lr: float, seed: int):
  cfg = model.config.vision
  key = jax.random.key(seed)
  prompts = 0.02 * jax.random.normal(key, (cfg.num_hidden_layers, 1, num_tokens, cfg.hidden_size))
  tx = optax.adam(optax.cosine_decay_schedule(lr, steps))
  opt_state = tx.init(prompts)

  @jax.jit
  def step(frozen, prompts, opt_state, x, y):
    def loss_fn(p):
      feats = normalize(model.encode_image(frozen, x, deep=p).embeds)
      logits = jnp.exp(frozen["logit_scale"]) * feats @ head.T
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    loss, g = jax.value_and_grad(loss_fn)(prompts)
    updates, opt_state = tx.update(g, opt_state)
    return optax.apply_updates(prompts, updates), opt_state, loss

  rng = np.random.default_rng(seed)
  for _ in range(steps):
    idx = rng.choice(len(train), min(batch, len(train)), replace=False)
    x = train.images[idx].astype(np.float32) / 255.0
    prompts, opt_state, _ = step(params, prompts, opt_state, x, train.labels[idx])
  return prompts


def prompted_accuracy(model, params, head, prompts, test: Split, batch: int = 512) -> float:
  @jax.jit
  def pred(frozen, p, x):
    feats = normalize(model.encode_image(frozen, x.astype(jnp.float32) / 255.0, deep=p).embeds)
    return jnp.argmax(feats @ head.T, -1)
  preds = np.concatenate([np.asarray(pred(params, prompts, test.images[i:i + batch]))
                          for i in range(0, len(test), batch)])
  return float((preds == test.labels).mean())


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
  args = parser.parse_args()
  model, params, ckpt = load_clip(args.checkpoint)
  tok = load_tokenizer(ckpt, model.config.text.max_position_embeddings)
  wanted = [t for t in args.targets.split(",") if t]
  print(f"{'target':<19} {'seed':>4} {'zero-shot':>9} {'deep VPT':>9} {'gain':>7}  time")
  for seed in (int(s) for s in args.seeds.split(",")):
    for name, (src, train, test) in targets(seed).items():
      if wanted and not any(name.endswith(w) for w in wanted):
        continue
      start = time.time()
      head = zeroshot.class_text_features(model, params, tok, src.class_names,
                                          world.ZEROSHOT_TEMPLATES)
      zs = float((zeroshot.predict(model, params, head, test.images) == test.labels).mean())
      shots = few_shot(train, args.shots, np.random.default_rng(seed))
      prompts = train_deep_vpt(model, params, head, shots, num_tokens=args.tokens,
                               steps=args.steps, batch=args.batch, lr=args.lr, seed=seed)
      vpt = prompted_accuracy(model, params, head, prompts, test)
      print(f"{name:<19} {seed:>4} {zs:>9.1%} {vpt:>9.1%} {100 * (vpt - zs):>+6.1f}pt  "
            f"{time.time() - start:.0f}s", flush=True)


if __name__ == "__main__":
  main()
