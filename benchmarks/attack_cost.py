#!/usr/bin/env python
"""Cost of PGD-k against k forward-backward passes of the same model; prints ratios.

  python benchmarks/attack_cost.py [--batch 32] [--repeats 9] [--budget 10] [--json F]
  python benchmarks/attack_cost.py --sections round [--round-k 4 --round-steps 2 \
      --round-batch 16 --round-classes 48]           # FedAPT+PGD-2 round vs clean, vs FedVPT+AT

Model: a random-weight CLIP with the embedded tiny CLIP's vision tower (width 96,
4 layers, 4 heads, patch 4, 32x32) and a zero-shot-style head of 10 random unit
rows: logits = exp(logit_scale) * normalize(image_embeds) @ head.T. Both sides
are jitted with the frozen parameters as an argument (the attack's logits_fn
closes over them inside the jitted function, as a training step would).

fwd+bwd is one jitted call of d/dx sum CE(logits(x), y) on the batch; PGD-k is
`attacks.pgd` (L-inf, eps 8/255, random start, k steps). The ratio is
t(PGD-k) / (k * t(fwd+bwd)); target <= 1.3 (the attack adds only elementwise
work and one random draw per step). A second column divides by a jitted loop of
k dependent fwd+bwd passes (no per-call dispatch on either side). APGD-k is
printed for information. Times: compile excluded, `jax.block_until_ready`,
median of up to --repeats runs (fewer once --budget seconds per figure are
spent), the two sides of a ratio measured alternately.

Section "round" (benchmarks/round_cost.py): one federated round (configs/fedapt.py's
method settings, local label spaces, Adam clients, FedAvg) of FedAPT with PGD-AT
(2 steps at 1/255) against the same round trained clean (target <= 3.3x: 1 + 2
gradient passes over the images per step, plus slack) and against FedVPT (deep, the
preset's 32 tokens x 4 layers) + PGD-AT, on the embedded tiny CLIP.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from fedprompt_jax.attacks import apgd, losses, pgd  # noqa: E402
from fedprompt_jax.models.clip import Clip, logits_per_image  # noqa: E402
from fedprompt_jax.models.clip_config import ClipConfig, TextConfig, VisionConfig  # noqa: E402

TARGET = 1.3
CLASSES, IMAGE, EPS = 10, 32, 8 / 255


def build(seed: int = 0):
  """(logits(params, x) -> [B, C], params) for the tiny random CLIP and a random unit head."""
  config = ClipConfig(
      vision=VisionConfig(96, 384, 4, 4, image_size=IMAGE, patch_size=4),
      text=TextConfig(64, 256, 1, 4, vocab_size=256, max_position_embeddings=8,
                      eos_token_id=255, bos_token_id=254, pad_token_id=255),
      projection_dim=64)
  model = Clip(config)
  head = jax.random.normal(jax.random.key(seed + 1), (CLASSES, config.projection_dim))
  params = {"clip": model.init(jax.random.key(seed)),
            "head": head / jnp.linalg.norm(head, axis=-1, keepdims=True)}

  def logits(p, x):
    return logits_per_image(model.encode_image(p["clip"], x).embeds, p["head"],
                            p["clip"]["logit_scale"])

  return logits, params


def timed(fn, *args) -> float:
  start = time.perf_counter()
  jax.block_until_ready(fn(*args))
  return time.perf_counter() - start


def median_pair(a, b, repeats: int, budget: float) -> tuple[float, float, int]:
  """Medians of a() and b() run alternately (compile excluded: one warm-up call each)."""
  a(), b()
  ta, tb = [], []
  while len(ta) < repeats and sum(ta) + sum(tb) < 2 * budget:
    ta.append(a())
    tb.append(b())
  return statistics.median(ta), statistics.median(tb), len(ta)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--steps", default="1,5,10", help="comma-separated k values")
  parser.add_argument("--repeats", type=int, default=9)
  parser.add_argument("--budget", type=float, default=10.0, help="seconds per figure")
  parser.add_argument("--json", default=None, help="write the figures here")
  parser.add_argument("--sections", default="attack,round", help="attack, round or both")
  parser.add_argument("--round-k", type=int, default=4, help="clients in the round")
  parser.add_argument("--round-steps", type=int, default=2, help="local steps per client")
  parser.add_argument("--round-batch", type=int, default=16, help="local batch")
  parser.add_argument("--round-classes", type=int, default=48, help="classes (shapes names)")
  args = parser.parse_args(argv)
  sections = [x.strip() for x in args.sections.split(",") if x.strip()]
  bad = [x for x in sections if x not in ("attack", "round")]
  if bad or not sections:
    print(f"error: --sections={args.sections!r} is invalid; valid: attack, round "
          "(comma-separated)", file=sys.stderr)
    return 1
  if min(args.round_k, args.round_steps, args.round_batch) < 1 or not (
      2 <= args.round_classes <= 48):
    print("error: --round-k/--round-steps/--round-batch must be >= 1 and --round-classes in "
          f"[2, 48]; got {args.round_k}/{args.round_steps}/{args.round_batch}/"
          f"{args.round_classes}", file=sys.stderr)
    return 1
  figures = {}
  if "attack" in sections:
    figures.update(attack_section(args))
  if "round" in sections:
    import round_cost  # pylint: disable=import-outside-toplevel
    figures["round"] = round_cost.section(args.round_k, args.round_steps, args.round_batch,
                                          args.round_classes, args.repeats, args.budget)
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(figures, f, indent=1)
  return 0


def attack_section(args) -> dict:
  """PGD-k against k fwd+bwd passes (the table above); returns its figures."""

  logits, params = build()
  x = jax.random.uniform(jax.random.key(3), (args.batch, IMAGE, IMAGE, 3))
  y = jax.random.randint(jax.random.key(4), (args.batch,), 0, CLASSES)
  key = jax.random.key(5)
  grad_x = lambda p, v, w: jax.grad(lambda u: losses.cross_entropy(logits(p, u), w).sum())(v)
  fwd_bwd = jax.jit(grad_x)

  def loop_of(k):  # k dependent fwd+bwd passes in one jitted loop
    return jax.jit(lambda p, v, w: jax.lax.fori_loop(
        0, k, lambda _, u: u + 1e-3 * grad_x(p, u, w), v))

  print(f"device: {jax.devices()[0].device_kind}; batch {args.batch} x {IMAGE}x{IMAGE}; "
        f"tiny CLIP vision tower (96 wide, 4 layers, patch 4); {CLASSES}-way random head")
  print(f"{'attack':>8} {'t_attack ms':>12} {'k x fwd+bwd ms':>15} {'ratio':>6} "
        f"{'k-loop ms':>10} {'ratio':>6} {'n':>3}  target <= {TARGET}")
  rows, all_pass = [], True
  ks = [int(k) for k in args.steps.split(",")]
  cases = [("pgd", k) for k in ks] + [("apgd", max(ks))]
  for name, k in cases:
    fn = {"pgd": pgd, "apgd": apgd}[name]
    attack = jax.jit(lambda p, v, w, kk, fn=fn, k=k: fn(lambda u: logits(p, u), v, w, kk,
                                                         eps=EPS, steps=k))
    t_attack, t_one, n = median_pair(lambda: timed(attack, params, x, y, key),
                                     lambda: timed(fwd_bwd, params, x, y), args.repeats,
                                     args.budget)
    loop = loop_of(k)
    t_attack_loop, t_loop, _ = median_pair(lambda: timed(attack, params, x, y, key),
                                           lambda: timed(loop, params, x, y), 3, args.budget / 2)
    ratio, ratio_loop = t_attack / (k * t_one), t_attack_loop / t_loop
    verdict = ("PASS" if ratio <= TARGET else "MISS") if name == "pgd" else "(info)"
    all_pass &= verdict != "MISS"
    print(f"{name.upper() + '-' + str(k):>8} {1e3 * t_attack:12.1f} {1e3 * k * t_one:15.1f} "
          f"{ratio:6.2f} {1e3 * t_loop:10.1f} {ratio_loop:6.2f} {n:3d}  {verdict}")
    rows.append(dict(attack=name, k=k, t_attack=t_attack, t_fwd_bwd=t_one, t_loop=t_loop,
                     ratio=ratio, ratio_loop=ratio_loop, verdict=verdict))
  print(f"TARGET PGD-k / (k x fwd+bwd) <= {TARGET}: {'PASS' if all_pass else 'MISS'}")
  return dict(batch=args.batch, target=TARGET, rows=rows)


if __name__ == "__main__":
  sys.exit(main())
