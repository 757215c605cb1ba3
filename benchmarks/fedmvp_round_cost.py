#!/usr/bin/env python
"""One federated round of FedMVP against FedVPT at the same K, S, B, with the FLOPs that explain it.

  python benchmarks/fedmvp_round_cost.py [--k 8 --steps 3 --batch 8 --classes 24] [--json F]

Rounds (embedded tiny CLIP, its trained weights; random pixels and labels; each method's
configs/*.py method section; SGD clients, FedAvg server; one device, the backend's default
client chunk; AOT-compiled, compile excluded, state chained, timed round-robin, median):

  fedmvp           configs/fedmvp.py: PromptFormer over C x J attribute features (shapes'
                   shipped sentences, J = 10), 4 prompt tokens, consistency alpha = 10.
  fedmvp_alpha0    the same without the consistency loss (no second, frozen forward).
  fedvpt_deep32    configs/fedvpt.py: 32 deep tokens in the 4 layers (the generalisation
                   comparison's FedVPT).
  fedvpt_shallow4  4 shallow tokens: the tower sees exactly FedMVP's sequence length, so
                   FedMVP's excess over it is the PromptFormer and the consistency forward.

The analytic count, per image and local step (2 FLOPs per multiply-add; LayerNorm, softmax,
GELU not counted; D width, F MLP width, L layers, Np patches, P prompt tokens, M = C x J
attribute sentences, E embedding dim, m the GEGLU multiplier):
  tower(T)      = L [2T(4D^2 + 2DF) + 4T^2 D] + 2 Np (3 p^2) D + 2DE, T tokens;
  training      = 2 x tower(T) (frozen weights: the backward computes activation gradients
                  only, about one forward);
  PromptFormer  = per image: q and out projections 4 Np D^2, attention over the M keys
                  4 Np M D, GEGLU 2 Np D (2 m D) + 2 Np (m D) D; per batch (the M keys are
                  the same for every image): kv Linear 2 M E D and k, v projections 4 M D^2;
                  trained, so x 3 (forward, activation and weight gradients);
  consistency   = tower(1 + Np) forward only (no gradient reaches it);
  logits        = 2 M E per image (FedMVP) against 2 C E (FedVPT), negligible.
XLA's own count (`cost_analysis` of one jitted training step's gradient, per image) is
printed beside it as a cross-check.

Shapes: K clients, S steps, B batch, C classes, J sentences per class.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from fedprompt_jax import train  # noqa: E402
from fedprompt_jax.data import attributes, shapes  # noqa: E402
from fedprompt_jax.fed import mesh as mesh_lib  # noqa: E402
from fedprompt_jax.fed.client import ClientBatches  # noqa: E402
from fedprompt_jax.fed.round import RoundInputs  # noqa: E402
from fedprompt_jax.methods import base, make_method  # noqa: E402
from fedprompt_jax.models.hf_loader import load_clip  # noqa: E402
from fedprompt_jax.models.tokenizer import load_tokenizer  # noqa: E402
from round_cost import CompiledRound  # noqa: E402  pylint: disable=wrong-import-position

VARIANTS = {  # name -> (config file, overrides)
    "fedmvp": ("fedmvp", ()),
    "fedmvp_alpha0": ("fedmvp", ("method.consistency_weight=0.0",)),
    "fedvpt_deep32": ("fedvpt", ()),
    "fedvpt_shallow4": ("fedvpt", ("method.depth=0", "method.num_tokens=4")),
}


def config_of(variant: str):
  import importlib  # pylint: disable=import-outside-toplevel
  name, overrides = VARIANTS[variant]
  return importlib.import_module(f"configs.{name}").get_config(",".join(overrides) or None)


def tower_flops(v, proj: int, tokens: int) -> float:
  """Forward FLOPs of the image tower per image with `tokens` tokens (CLS and prompts included)."""
  d, f = v.hidden_size, v.intermediate_size
  return (v.num_hidden_layers * (2 * tokens * (4 * d * d + 2 * d * f) + 4 * tokens ** 2 * d)
          + 2 * v.num_patches * 3 * v.patch_size ** 2 * d + 2 * d * proj)


def promptformer_flops(v, proj: int, m: int, mult: int, batch: int) -> dict[str, float]:
  """Forward FLOPs of the PromptFormer per image (the per-batch key/value work divided by B)."""
  d, n = v.hidden_size, v.num_patches
  return {"q+out projections": 4 * n * d * d,
          "attention over M keys": 4 * n * m * d,
          "GEGLU": 2 * n * d * 2 * mult * d + 2 * n * mult * d * d,
          "keys/values (per batch)": (2 * m * proj * d + 4 * m * d * d) / batch}


def analytic(variant: str, c, v, proj: int, classes: int, sentences: int, batch: int) -> dict:
  """{part: training FLOPs per image per local step} of one variant."""
  if c.method.name == "fedvpt":
    tokens = 1 + v.num_patches + c.method.num_tokens
    return {"tower fwd+bwd": 2 * tower_flops(v, proj, tokens), "logits": 2 * classes * proj}
  m = classes * sentences
  out = {"tower fwd+bwd": 2 * tower_flops(v, proj, 1 + v.num_patches + c.method.num_tokens)}
  for part, flops in promptformer_flops(v, proj, m, c.method.ff_mult, batch).items():
    out[f"PromptFormer {part} (x3)"] = 3 * flops
  if c.method.consistency_weight > 0:
    out["consistency: frozen fwd"] = tower_flops(v, proj, 1 + v.num_patches)
  out["logits"] = 2 * m * proj
  del variant
  return out


def xla_step_flops(method, frozen, aux, params, pixels, labels) -> float:
  """cost_analysis FLOPs of one training step's gradient on [B] images, per image."""
  def loss(p):
    return method.example_loss(frozen, p, aux, {}, {}, pixels, labels, jax.random.key(0)).mean()
  cost = jax.jit(jax.grad(loss)).lower(params).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return (cost or {}).get("flops", float("nan")) / pixels.shape[0]


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--k", type=int, default=8, help="clients per round (FedMVP default: 8)")
  p.add_argument("--steps", type=int, default=3, help="local steps (FedMVP default: 3)")
  p.add_argument("--batch", type=int, default=8, help="batch (FedMVP default: 8)")
  p.add_argument("--classes", type=int, default=24, help="C (FedMVP default: 24 base)")
  p.add_argument("--repeats", type=int, default=7)
  p.add_argument("--budget", type=float, default=60.0, help="seconds of timing per variant")
  p.add_argument("--json", default="")
  a = p.parse_args(argv)
  if min(a.k, a.steps, a.batch) < 1 or not 2 <= a.classes <= 48:
    print(f"error: --k/--steps/--batch must be >= 1 and --classes in [2, 48]; got "
          f"{a.k}/{a.steps}/{a.batch}/{a.classes}", file=sys.stderr)
    return 1
  model, frozen, ckpt = load_clip("embedded")
  tokenizer = load_tokenizer(ckpt, model.config.text.max_position_embeddings)
  v, proj = model.config.vision, model.config.projection_dim
  mesh = mesh_lib.make_mesh(jax.devices()[:1])
  frozen = jax.device_put(frozen, jax.devices()[0])
  chunk = train.default_chunk(jax.default_backend())
  names = shapes.CLASS_NAMES[:a.classes]
  table = attributes.load_attributes(attributes.shipped_path("shapes"), names)
  sentences = len(table[names[0]])
  ctx = base.Context(model, frozen, tokenizer, names, table)
  rng = np.random.default_rng(0)
  size = v.image_size
  labels = rng.integers(0, a.classes, (a.k, a.steps, a.batch)).astype(np.int32)
  batches = ClientBatches(rng.integers(0, 256, (a.k, a.steps, a.batch, size, size, 3), np.uint8),
                          labels, np.ones((a.k, a.steps, a.batch), bool))

  def inputs_of(method):
    clients = jax.vmap(method.init_client)(jnp.ones((a.k, a.classes), jnp.float32))
    return mesh_lib.shard_clients(mesh, RoundInputs(
        batches, np.ones((a.k,), np.float32), np.arange(a.k, dtype=np.int32), {}, clients))

  rounds, flops, xla = {}, {}, {}
  x0 = jnp.asarray(batches.pixels[0, 0], jnp.float32) / 255.0
  for name in VARIANTS:
    c = config_of(name)
    method = make_method(c.method.name, model, c.method)
    aux = method.prepare(ctx)
    rounds[name] = CompiledRound(c, method, frozen, aux, inputs_of, mesh, chunk)
    flops[name] = analytic(name, c, v, proj, a.classes, sentences, a.batch)
    xla[name] = xla_step_flops(method, frozen, aux, method.init(jax.random.key(0), aux), x0,
                               jnp.asarray(labels[0, 0]))
  for r in rounds.values():  # one warm-up each
    r()
  times = {name: [] for name in rounds}
  while len(times["fedmvp"]) < a.repeats and sum(map(sum, times.values())) < len(rounds) * a.budget:
    for name, r in rounds.items():
      times[name].append(r())
  med = {name: statistics.median(t) for name, t in times.items()}
  total = {name: sum(parts.values()) for name, parts in flops.items()}

  print(f"[FedMVP round] K={a.k} clients x S={a.steps} steps x B={a.batch}, C={a.classes} "
        f"classes x J={sentences} sentences (M={a.classes * sentences}), embedded tiny CLIP "
        f"(D={v.hidden_size}, L={v.num_hidden_layers}, Np={v.num_patches}), chunk "
        f"{chunk or 'vmap'}, {jax.devices()[0].device_kind}; median of {len(times['fedmvp'])} "
        "interleaved runs")
  print(f"{'round':>16} {'seconds':>8} {'img-steps/s':>11} {'MFLOP/img-step':>15} {'XLA':>7} "
        f"{'t / deep32':>10} {'FLOP / deep32':>13} {'t / shallow4':>12} {'FLOP / shallow4':>15}")
  for name in rounds:
    print(f"{name:>16} {med[name]:8.3f} {a.k * a.steps * a.batch / med[name]:11.1f} "
          f"{total[name] / 1e6:15.1f} {xla[name] / 1e6:7.1f} "
          f"{med[name] / med['fedvpt_deep32']:10.2f} {total[name] / total['fedvpt_deep32']:13.2f} "
          f"{med[name] / med['fedvpt_shallow4']:12.2f} "
          f"{total[name] / total['fedvpt_shallow4']:15.2f}")
  print("FedMVP's training FLOPs per image and local step, by part (analytic):")
  for part, value in flops["fedmvp"].items():
    print(f"  {part:<42} {value / 1e6:8.1f} M  {value / total['fedmvp']:6.1%}")
  if a.json:
    with open(a.json, "w", encoding="utf-8") as f:
      json.dump(dict(k=a.k, steps=a.steps, batch=a.batch, classes=a.classes, sentences=sentences,
                     chunk=chunk, runs=len(times["fedmvp"]), seconds=med, flops=flops,
                     xla_flops=xla), f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
