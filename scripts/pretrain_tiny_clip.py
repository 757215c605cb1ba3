"""Pretrains the embedded tiny CLIP on shapes + digits and saves it in transformers format.

Contrastive (InfoNCE) training of a from-scratch CLIP on captions made from
class names with varied templates (`fedprompt_jax/assets/world.py`), over the
shapes domains listed there (one domain is held out, to leave room for prompts)
and scikit-learn's digits. Captions of the same class are all positives of each
other (a multi-positive InfoNCE), since a batch holds many images per class.
The tokenizer is a BPE vocabulary trained on the same captions.

Deterministic: the data, the initialisation and the batch order follow --seed.
The result goes to fedprompt_jax/assets/tiny_clip/ (config.json,
model.safetensors, vocab.json, merges.txt, preprocessor_config.json) and loads in
both our loader and transformers.CLIPModel.

  python scripts/pretrain_tiny_clip.py            # the shipped asset (see README for the time)
  python scripts/pretrain_tiny_clip.py --steps=50 --out=/tmp/tiny_clip   # a quick smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fedprompt_jax import assets, zeroshot_eval  # noqa: E402
from fedprompt_jax.assets import world  # noqa: E402
from fedprompt_jax.data import digits, shapes  # noqa: E402
from fedprompt_jax.models import bpe_vocab, hf_loader  # noqa: E402
from fedprompt_jax.models.clip import Clip, count_params, normalize  # noqa: E402
from fedprompt_jax.models.clip_config import ClipConfig, TextConfig, VisionConfig  # noqa: E402
from fedprompt_jax.models.tokenizer import load_tokenizer  # noqa: E402


def tiny_config(vocab_size: int, eos: int, bos: int) -> ClipConfig:
  return ClipConfig(
      vision=VisionConfig(hidden_size=96, intermediate_size=384, num_hidden_layers=4,
                          num_attention_heads=4, image_size=world.IMAGE_SIZE, patch_size=4),
      text=TextConfig(hidden_size=64, intermediate_size=256, num_hidden_layers=3,
                      num_attention_heads=4, vocab_size=vocab_size,
                      max_position_embeddings=world.CONTEXT_LENGTH, eos_token_id=eos,
                      bos_token_id=bos, pad_token_id=eos),
      projection_dim=64)


def build_world(seed: int, per_class_domain: int):
  """Pretraining images with (global label, template-pool id) and the caption table."""
  sh = shapes.make_shapes(per_class_domain, 0, world.IMAGE_SIZE, seed=seed,
                          domains=world.SHAPES_PRETRAIN_DOMAINS)
  dg = digits.load_digits(world.IMAGE_SIZE, seed=seed)
  class_names = list(sh.class_names) + list(dg.class_names)
  pools = [world.GENERIC_TEMPLATES + world.DOMAIN_TEMPLATES[d]
           for d in world.SHAPES_PRETRAIN_DOMAINS] + [
               world.GENERIC_TEMPLATES + world.DOMAIN_TEMPLATES["digits"]]
  images = np.concatenate([sh.train.images, dg.train.images])
  labels = np.concatenate([sh.train.labels, dg.train.labels + len(sh.class_names)])
  pool_ids = np.concatenate([sh.train.domains, np.full(len(dg.train), len(pools) - 1, np.int32)])
  # Sampling weight: digits are few, so each digit image is drawn more often.
  weights = np.concatenate([np.full(len(sh.train), 1.0), np.full(len(dg.train), 4.0)])
  return class_names, pools, images, labels.astype(np.int32), pool_ids, weights / weights.sum()


def caption_table(class_names, pools):
  """Captions [C, J, max templates] as text; pool p uses its templates, padded by repetition."""
  width = max(len(p) for p in pools)
  table = [[[p[k % len(p)].format(c) for k in range(width)] for p in pools] for c in class_names]
  return table, width


def multi_positive_infonce(image, text, labels, logit_scale):
  """Symmetric InfoNCE where every pair with the same label is a positive. [B, E], [B, E], [B]."""
  logits = jnp.exp(logit_scale) * normalize(image) @ normalize(text).T
  same = (labels[:, None] == labels[None, :]).astype(jnp.float32)
  target = same / same.sum(axis=1, keepdims=True)
  i2t = -(target * jax.nn.log_softmax(logits, axis=1)).sum(1).mean()
  t2i = -(target * jax.nn.log_softmax(logits.T, axis=1)).sum(1).mean()
  return (i2t + t2i) / 2


def evaluate(model, params, tok, seed: int, per_class_domain: int = 10):
  """Zero-shot top-1 on held-out test images: per shapes domain (all four) and digits."""
  sh = shapes.make_shapes(0, per_class_domain, world.IMAGE_SIZE, seed=seed + 1000)
  dg = digits.load_digits(world.IMAGE_SIZE, seed=seed)
  results = {}
  for src in (sh, dg):
    acc = zeroshot_eval.accuracy_by_domain(model, params, tok, src, world.ZEROSHOT_TEMPLATES)
    results.update({src.name if k == "all" else f"{src.name}/{k}": v for k, v in acc.items()})
  return results


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=2000)
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--lr", type=float, default=1e-3)
  parser.add_argument("--per_class_domain", type=int, default=300)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--eval_every", type=int, default=500)
  parser.add_argument("--out", default=assets.TINY_CLIP_DIR)
  args = parser.parse_args()
  start = time.time()

  class_names, pools, images, labels, pool_ids, weights = build_world(
      args.seed, args.per_class_domain)
  table, width = caption_table(class_names, pools)
  corpus = [t for per_class in table for pool in per_class for t in pool]
  corpus += [s for c in shapes.CLASS_NAMES for s in shapes.attribute_sentences(c)]
  corpus += [t.format(c) for c in class_names for ts in world.DOMAIN_TEMPLATES.values()
             for t in ts]
  vocab, merges = bpe_vocab.train_bpe(corpus, num_merges=600)
  tok_dir = tempfile.mkdtemp(prefix="tiny_clip_tokenizer_")
  bpe_vocab.write_tokenizer_files(tok_dir, vocab, merges, world.CONTEXT_LENGTH)
  tok = load_tokenizer(tok_dir, world.CONTEXT_LENGTH)
  config = tiny_config(len(vocab), vocab[bpe_vocab.EOS], vocab[bpe_vocab.BOS])
  model = Clip(config)
  flat = [t for per_class in table for pool in per_class for t in pool]
  ids_all, mask_all = tok(flat)
  ids_table = ids_all.reshape(len(class_names), len(pools), width, -1)
  mask_table = mask_all.reshape(len(class_names), len(pools), width, -1)
  print(f"world: {len(images):,} images, {len(class_names)} classes, vocab {len(vocab)}, "
        f"built in {time.time() - start:.0f}s", flush=True)

  params = model.init(jax.random.key(args.seed))
  print(f"tiny CLIP: {count_params(params):,} params", flush=True)
  schedule = optax.warmup_cosine_decay_schedule(0.0, args.lr, min(500, args.steps // 10 + 1),
                                                args.steps, end_value=args.lr * 0.02)
  tx = optax.chain(optax.clip_by_global_norm(1.0),
                   optax.adamw(schedule, weight_decay=0.05,
                               mask=jax.tree_util.tree_map(lambda x: x.ndim >= 2, params)))
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, pixels, ids, mask, batch_labels):
    def loss_fn(p):
      img = model.encode_image(p, pixels).embeds
      txt = model.encode_text(p, ids, mask).embeds
      return multi_positive_infonce(img, txt, batch_labels, p["logit_scale"])
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    params["logit_scale"] = jnp.clip(params["logit_scale"], 0.0, np.log(100.0))
    return params, opt_state, loss

  rng = np.random.default_rng(args.seed)
  t0, losses = time.time(), []
  for it in range(1, args.steps + 1):
    idx = rng.choice(len(images), args.batch, p=weights)
    tmpl = rng.integers(0, width, args.batch)
    x = images[idx].astype(np.float32) / 255.0
    flip = rng.random(args.batch) < 0.5
    x[flip] = x[flip, :, ::-1]
    y = labels[idx]
    ids = ids_table[y, pool_ids[idx], tmpl]
    mask = mask_table[y, pool_ids[idx], tmpl]
    params, opt_state, loss = step(params, opt_state, x, ids, mask, y)
    losses.append(float(loss))
    if it % 100 == 0:
      print(f"step {it}/{args.steps} loss {np.mean(losses[-100:]):.3f} "
            f"{(time.time() - t0) / it:.2f}s/step", flush=True)
    if it % args.eval_every == 0 or it == args.steps:
      res = evaluate(model, params, tok, args.seed)
      print(f"step {it} zero-shot: " + ", ".join(f"{k} {v:.3f}" for k, v in res.items()),
            flush=True)

  hf_loader.save_clip(args.out, config, params, tokenizer_dir=tok_dir)
  summary = dict(steps=args.steps, batch=args.batch, seed=args.seed,
                 minutes=round((time.time() - start) / 60, 1), zero_shot=res,
                 pretrain_domains=list(world.SHAPES_PRETRAIN_DOMAINS),
                 heldout_domains=list(world.SHAPES_HELDOUT_DOMAINS))
  with open(os.path.join(args.out, "pretraining.json"), "w") as f:
    json.dump(summary, f, indent=2)
  print(json.dumps(summary), flush=True)


if __name__ == "__main__":
  main()
