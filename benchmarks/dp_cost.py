"""The cost of client-level DP (clip + noise) on one federated round: DP / no DP.

For PromptFL and FedVPT (configs/promptfl.py and configs/fedvpt.py method sections: 4 text
context tokens, 256 parameters; deep visual prompts, 32 tokens x 4 layers, 12,288), one round
of K clients x S local steps x B images over C shapes classes on the embedded tiny CLIP, one
device, the backend's default client chunk, is AOT-compiled twice: without DP, and with DP
(each client's shared delta clipped to 0.5, Gaussian noise z = 1 on the sum). The rounds are
timed in turn, round-robin, state chained, after one warm-up each; medians reported
(`jax.block_until_ready`, `time.perf_counter`). Target: DP / no DP <= 1.05.

  python benchmarks/dp_cost.py [--k 16 --steps 2 --batch 8 --classes 48 --repeats 9]

Shapes: K clients, S steps, B batch, C classes.
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
import numpy as np  # noqa: E402

from fedprompt_jax import train  # noqa: E402
from fedprompt_jax.data import shapes  # noqa: E402
from fedprompt_jax.fed import mesh as mesh_lib  # noqa: E402
from fedprompt_jax.fed import server  # noqa: E402
from fedprompt_jax.fed.client import ClientBatches  # noqa: E402
from fedprompt_jax.fed.round import RoundInputs, init_server_state, make_round_fn  # noqa: E402
from fedprompt_jax.methods import base, make_method  # noqa: E402
from fedprompt_jax.models.hf_loader import load_clip  # noqa: E402
from fedprompt_jax.models.tokenizer import load_tokenizer  # noqa: E402
from fedprompt_jax.privacy.settings import DPSpec  # noqa: E402

TARGET = 1.05


def method_config(name: str):
  from configs import fedvpt, promptfl  # pylint: disable=import-outside-toplevel
  return {"promptfl": promptfl, "fedvpt": fedvpt}[name].get_config()


class CompiledRound:
  """An AOT-compiled round on one device; each call runs one (state chained) and is timed."""

  def __init__(self, c, method, frozen, aux, inputs, mesh, chunk, dp):
    self.frozen, self.aux, self.inputs = frozen, aux, inputs
    server_tx = server.make_server_optimizer(c.fed.server_optimizer)
    fn = make_round_fn(method, train.client_optimizer(c), server_tx, mesh, chunk=chunk, dp=dp)
    shared, _ = base.split_params(method, method.init(jax.random.key(0), aux))
    self.state = init_server_state(method, server_tx, shared, aux)
    self.key = jax.random.key(1)
    self.compiled = fn.lower(frozen, self.state, aux, self.key, inputs).compile()

  def __call__(self) -> float:
    start = time.perf_counter()
    self.state, out = self.compiled(self.frozen, self.state, self.aux, self.key, self.inputs)
    jax.block_until_ready((self.state, out))
    return time.perf_counter() - start


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--k", type=int, default=16)
  p.add_argument("--steps", type=int, default=2)
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--classes", type=int, default=48)
  p.add_argument("--repeats", type=int, default=9)
  p.add_argument("--json", default="")
  a = p.parse_args(argv)
  model, frozen, ckpt = load_clip("embedded")
  tokenizer = load_tokenizer(ckpt, model.config.text.max_position_embeddings)
  mesh = mesh_lib.make_mesh(jax.devices()[:1])
  frozen = jax.device_put(frozen, jax.devices()[0])
  chunk = train.default_chunk(jax.default_backend())
  ctx = base.Context(model, frozen, tokenizer, shapes.CLASS_NAMES[:a.classes])
  size = model.config.vision.image_size
  rng = np.random.default_rng(0)
  batches = ClientBatches(
      rng.integers(0, 256, (a.k, a.steps, a.batch, size, size, 3), np.uint8),
      rng.integers(0, a.classes, (a.k, a.steps, a.batch)).astype(np.int32),
      np.ones((a.k, a.steps, a.batch), bool))
  inputs = mesh_lib.shard_clients(mesh, RoundInputs(
      batches, np.ones((a.k,), np.float32), np.arange(a.k, dtype=np.int32), {}, {}))
  rounds = {}
  for name in ("promptfl", "fedvpt"):
    c = method_config(name)
    method = make_method(name, model, c.method)
    aux = method.prepare(ctx)
    for dp in (None, DPSpec(0.5, 1.0, a.k, None)):
      rounds[(name, dp is not None)] = CompiledRound(c, method, frozen, aux, inputs, mesh,
                                                     chunk, dp)
  for r in rounds.values():  # one warm-up each
    r()
  times = {key: [] for key in rounds}
  for _ in range(a.repeats):
    for key, r in rounds.items():
      times[key].append(r())
  med = {key: statistics.median(t) for key, t in times.items()}
  print(f"\n[dp] K={a.k} clients x S={a.steps} steps x B={a.batch}, C={a.classes} classes, "
        f"embedded tiny CLIP, chunk {chunk or 'vmap'}; DP: clip 0.5, z 1; median of {a.repeats} "
        "interleaved runs")
  print(f"{'method':>9} {'no DP s':>9} {'DP s':>9} {'DP / no DP':>11}")
  out = {}
  for name in ("promptfl", "fedvpt"):
    ratio = med[(name, True)] / med[(name, False)]
    verdict = "PASS" if ratio <= TARGET else "MISS"
    print(f"{name:>9} {med[(name, False)]:9.3f} {med[(name, True)]:9.3f} {ratio:11.3f}  "
          f"(target <= {TARGET}) {verdict}")
    out[name] = dict(no_dp=med[(name, False)], dp=med[(name, True)], ratio=ratio,
                     verdict=verdict, runs_no_dp=times[(name, False)], runs_dp=times[(name, True)])
  if a.json:
    with open(a.json, "w") as f:
      json.dump(dict(vars(a), chunk=chunk, results=out), f, indent=1)
  return out


if __name__ == "__main__":
  main()
