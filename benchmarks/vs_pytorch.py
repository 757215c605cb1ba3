#!/usr/bin/env python
"""Our jitted FedVPT and PromptFL rounds against the same rounds in PyTorch, in one run.

  python benchmarks/vs_pytorch.py [--k 64] [--steps 2] [--batch 32] [--repeats 5] [--json F]
  python benchmarks/vs_pytorch.py --quick      # smoke run: tiny sizes, one repeat
  python benchmarks/vs_pytorch.py --threads 1  # both on one pinned core (a loaded machine)

Needs the torch extra (`pip install -e .[torch]`). Both sides use the embedded tiny CLIP
(fedprompt_jax/assets/tiny_clip, read by our loader and by transformers' PyTorch
`CLIPModel.from_pretrained`), the first C shapes class names, the same random uint8
images and labels [K, S, B], the same initial prompt, SGD(lr, momentum 0.9) clients and a
FedAvg server (weights by examples). FedVPT: P shallow tokens before a fixed zero-shot head
(our `fedvpt`, depth 0); PromptFL: M CoOp context vectors (our `promptfl`). PyTorch:
benchmarks/torch_reference.py, clients one after another as the official repositories run
them. Ours: the engine's jitted round (fed/round.py) on one device with the backend's
default client chunk, AOT-compiled, state chained; PromptFL twice, on images and from the
frozen-feature cache (feature_cache.py: image features encoded once, outside the timed
rounds; the time to encode the round's K x S x B images is printed for information).
Inputs are prepared before timing on both sides (uint8 device arrays / normalised float
tensors), so data loading is in neither. Threads: each library's default unless `--threads
N` pins the process to N cores (before jax starts) and gives torch N threads. On a machine
that other jobs load, torch's default OpenMP threads wait on each other at every barrier
and its rounds slow down many times over (measured here: 13 s against 2.9 s with one
thread for the same K = 4 round), so there only `--threads 1` compares the two fairly.

After one warm-up round each (compile excluded), the rounds run round-robin `--repeats`
times; each ratio is computed per repeat (PyTorch time / ours in the same repeat) and
printed as median [min, max]. The warm-up rounds start from the same prompt on the same
data, so their results are compared too: the largest difference of the new global prompt
between PyTorch and ours (float rounding only, if both compute the same round).

Shapes: K clients, S local steps, B batch, C classes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


def _early_threads(argv: list[str]) -> int | None:
  parser = argparse.ArgumentParser(add_help=False)
  parser.add_argument("--threads", type=int, default=None)
  return parser.parse_known_args(argv)[0].threads


if __name__ == "__main__" and _early_threads(sys.argv[1:]):  # before jax sizes its thread pool
  os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:_early_threads(sys.argv[1:])])
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import round_cost  # noqa: E402
import torch_reference as ref  # noqa: E402
from fedprompt_jax import config as config_lib  # noqa: E402
from fedprompt_jax import feature_cache, train  # noqa: E402
from fedprompt_jax.fed import mesh as mesh_lib  # noqa: E402
from fedprompt_jax.fed.client import ClientBatches  # noqa: E402
from fedprompt_jax.fed.round import RoundInputs  # noqa: E402
from fedprompt_jax.methods import make_method  # noqa: E402
from fedprompt_jax.models.hf_loader import resolve_checkpoint_dir  # noqa: E402

TARGETS = {"fedvpt": 1.3, "promptfl+cache": 3.0}  # PyTorch time / ours
MOMENTUM = 0.9


def config(lr: float):
  c = config_lib.default_config()
  c.optim.name, c.optim.lr, c.optim.momentum = "sgd", lr, MOMENTUM
  c.fed.server_optimizer = "fedavg"
  return c


class TorchRound:
  """One PyTorch round per call, its global prompt state chained."""

  def __init__(self, model, images, labels, lr):
    self.model, self.images, self.labels, self.lr = model, images, labels, lr
    self.state = {k: v.clone() for k, v in model.prompt.state_dict().items()}

  def __call__(self) -> float:
    start = time.perf_counter()
    self.state = ref.federated_round(self.model, self.state, self.images, self.labels, self.lr,
                                     MOMENTUM)
    return time.perf_counter() - start


def build(args) -> tuple[dict, dict, float]:
  """(rounds by name, (ours, PyTorch) prompt leaf names by method, cache fill seconds)."""
  model, frozen, mesh, chunk, ctx = round_cost.embedded_setup(args.classes)
  k, s, b, size = args.k, args.steps, args.batch, model.config.vision.image_size
  rng = np.random.default_rng(0)
  pixels = rng.integers(0, 256, (k, s, b, size, size, 3), np.uint8)
  labels = rng.integers(0, args.classes, (k, s, b)).astype(np.int32)
  c = config(args.lr)

  def inputs_of(rows):
    batches = ClientBatches(rows, labels, np.ones((k, s, b), bool))
    weights = np.full((k,), s * b, np.float32)
    return lambda method: mesh_lib.shard_clients(mesh, RoundInputs(
        batches, weights, np.arange(k, dtype=np.int32), {}, {}))

  fedvpt = make_method("fedvpt", model, {"num_tokens": args.num_tokens, "depth": 0})
  promptfl = make_method("promptfl", model, {"num_ctx": args.num_ctx})
  aux = {"fedvpt": fedvpt.prepare(ctx), "promptfl": promptfl.prepare(ctx)}
  init = {name: m.init(jax.random.key(0), aux[name])  # what CompiledRound starts from
          for name, m in (("fedvpt", fedvpt), ("promptfl", promptfl))}
  encoder = feature_cache.make_encoder(promptfl)
  flat = pixels.reshape((-1,) + pixels.shape[3:])
  feature_cache.encode_images(encoder, frozen, flat, args.cache_batch)  # compile
  start = time.perf_counter()
  features = feature_cache.encode_images(encoder, frozen, flat, args.cache_batch)
  fill = time.perf_counter() - start
  features = features.reshape((k, s, b, -1))

  clip = ref.load_clip(resolve_checkpoint_dir("embedded"))
  images = ref.pixel_values(pixels, model.config.image_mean, model.config.image_std)
  y = torch.from_numpy(labels).long()
  rounds = {
      "fedvpt/torch": TorchRound(ref.VPTCLIP(clip, np.asarray(init["fedvpt"]["shallow"]),
                                             np.asarray(aux["fedvpt"]["head"])), images, y,
                                 args.lr),
      "fedvpt/ours": round_cost.CompiledRound(c, fedvpt, frozen, aux["fedvpt"],
                                              inputs_of(pixels), mesh, chunk),
      "promptfl/torch": TorchRound(ref.CoOpCLIP(clip, np.asarray(aux["promptfl"]["ids"]),
                                                args.num_ctx, np.asarray(init["promptfl"]["ctx"])),
                                   images, y, args.lr),
      "promptfl/ours": round_cost.CompiledRound(c, promptfl, frozen, aux["promptfl"],
                                                inputs_of(pixels), mesh, chunk),
      "promptfl+cache/ours": round_cost.CompiledRound(
          c, feature_cache.on_features(promptfl), frozen, aux["promptfl"], inputs_of(features),
          mesh, chunk),
  }
  leaves = {"fedvpt": ("shallow", "tokens"), "promptfl": ("ctx", "ctx"),
            "promptfl+cache": ("ctx", "ctx")}
  return rounds, leaves, fill


def ratio_stats(num: list[float], den: list[float]) -> dict:
  per = [a / b for a, b in zip(num, den)]
  return dict(median=statistics.median(per), min=min(per), max=max(per))


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--k", type=int, default=64, help="K clients per round")
  p.add_argument("--steps", type=int, default=2, help="S local steps")
  p.add_argument("--batch", type=int, default=32, help="B local batch")
  p.add_argument("--classes", type=int, default=48, help="C classes (first C shapes names)")
  p.add_argument("--num-tokens", type=int, default=8, help="FedVPT's shallow tokens P")
  p.add_argument("--num-ctx", type=int, default=4, help="PromptFL's context vectors M")
  p.add_argument("--lr", type=float, default=0.05)
  p.add_argument("--repeats", type=int, default=5, help="timed rounds of each, round-robin")
  p.add_argument("--cache-batch", type=int, default=256, help="batch of the cache's encoder")
  p.add_argument("--threads", type=int, default=None,
                 help="pin to this many cores, torch threads too (default: library defaults)")
  p.add_argument("--quick", action="store_true", help="smoke run: K=2, S=1, B=4, C=6, 1 repeat")
  p.add_argument("--json", default=None, help="also write every figure to this JSON file")
  args = p.parse_args(argv)
  if args.quick:
    args.k, args.steps, args.batch, args.classes, args.repeats = 2, 1, 4, 6, 1
  if args.threads:
    torch.set_num_threads(args.threads)
  rounds, leaves, fill = build(args)
  drift = {}
  for name in ("fedvpt", "promptfl", "promptfl+cache"):  # warm-up: the same first round
    ours, torch_round = rounds[f"{name}/ours"], rounds[f"{name.split('+')[0]}/torch"]
    ours()
    if name != "promptfl+cache":
      torch_round()
    ours_leaf, torch_leaf = leaves[name]
    drift[name] = float(np.abs(np.asarray(ours.state.shared[ours_leaf])
                               - torch_round.state[torch_leaf].numpy()).max())
  times = {name: [] for name in rounds}
  for _ in range(args.repeats):
    for name, r in rounds.items():
      times[name].append(r())
  ratios = {"fedvpt": ratio_stats(times["fedvpt/torch"], times["fedvpt/ours"]),
            "promptfl": ratio_stats(times["promptfl/torch"], times["promptfl/ours"]),
            "promptfl+cache": ratio_stats(times["promptfl/torch"], times["promptfl+cache/ours"]),
            "cache_speedup": ratio_stats(times["promptfl/ours"], times["promptfl+cache/ours"])}
  print(f"K={args.k} clients x S={args.steps} steps x B={args.batch}, C={args.classes} classes, "
        f"embedded tiny CLIP; FedVPT {args.num_tokens} shallow tokens, PromptFL {args.num_ctx} "
        f"context vectors; SGD({args.lr:g}, momentum {MOMENTUM}), FedAvg; {args.repeats} "
        f"interleaved repeats; {len(os.sched_getaffinity(0))} cores; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), "
        f"jax {jax.__version__} ({jax.default_backend()}, chunk "
        f"{train.default_chunk(jax.default_backend()) or 'vmap'})")
  print(f"{'round':>20} {'median s':>9} {'min s':>8} {'max s':>8}")
  for name, t in times.items():
    print(f"{name:>20} {statistics.median(t):9.3f} {min(t):8.3f} {max(t):8.3f}")
  print(f"cache fill: {args.k * args.steps * args.batch} images encoded once in {fill:.3f} s "
        "(per split, not per round; not in the rounds above)")
  print("same first round, max |global prompt, PyTorch - ours|: "
        + ", ".join(f"{n} {d:.1e}" for n, d in drift.items()))
  print("ratios per repeat, median [min, max]:")
  for name, what in (("fedvpt", "FedVPT: PyTorch / ours"),
                     ("promptfl", "PromptFL: PyTorch / ours without the cache"),
                     ("promptfl+cache", "PromptFL: PyTorch / ours with the cache"),
                     ("cache_speedup", "PromptFL ours: without / with the cache")):
    r = ratios[name]
    target = TARGETS.get(name)
    verdict = "" if target is None else (f"  (target >= {target}) "
                                         f"{'PASS' if r['median'] >= target else 'MISS'}")
    print(f"  {what:<44} {r['median']:5.2f}x [{r['min']:.2f}, {r['max']:.2f}]{verdict}")
  figures = dict(args=vars(args), seconds=times, ratios=ratios, cache_fill_seconds=fill,
                 first_round_max_abs_diff=drift, targets=TARGETS)
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(figures, f, indent=1)
  return figures


if __name__ == "__main__":
  main()
