#!/usr/bin/env python
"""Throughput of the jitted federated round against its references; prints ratios from one run.

  python benchmarks/round_throughput.py [--quick] [--devices 2] [--sections 1,2,3,4,5] [--json F]

Sections: 1 round vs a client-by-client Python loop of the same jitted local update, per K
and chunk; 2 round images/s vs a plain centralised step on the same total batch; 3 round
time incl. host work for N = 100 vs N = 100,000; 4 compiled memory as K grows; 5 achieved
FLOP/s over measured matmul FLOP/s. Random-weight CLIPs, FedVPT-deep, SGD(0.05, m 0.9)
clients, FedAvg server. Each figure: compile excluded, median of up to --repeats runs
(fewer once --budget seconds are spent), `jax.block_until_ready`, `time.perf_counter`;
except the matmul peak of section 5, which is a best: the fastest of 10 runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import sys
import time
from typing import Any, Callable


def _early_devices(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(add_help=False)
  parser.add_argument("--devices", type=int, default=1)
  return parser.parse_known_args(argv)[0].devices


if _early_devices(sys.argv[1:]) > 1:  # the host device count is fixed at the first jax import
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform"
                             f"_device_count={_early_devices(sys.argv[1:])}").strip()
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from fedprompt_jax.data.federated import round_batches  # noqa: E402
from fedprompt_jax.data.partition import make_partition  # noqa: E402
from fedprompt_jax.data.source import DataSource, Split  # noqa: E402
from fedprompt_jax.fed import mesh as mesh_lib, server  # noqa: E402
from fedprompt_jax.fed.client import ClientBatches, make_local_update  # noqa: E402
from fedprompt_jax.fed.round import (RoundInputs, client_key, init_server_state,  # noqa: E402
                                     make_round_fn)
from fedprompt_jax.fed.sampling import sample_clients  # noqa: E402
from fedprompt_jax.methods import make_method  # noqa: E402
from fedprompt_jax.methods.base import PromptMethod, split_params  # noqa: E402
from fedprompt_jax.models.clip import Clip  # noqa: E402
from fedprompt_jax.models.clip_config import ClipConfig, TextConfig, VisionConfig  # noqa: E402
from fedprompt_jax.train import default_chunk  # noqa: E402

Tree = Any
CLIENT_TX = optax.sgd(0.05, momentum=0.9)
SERVER_TX = server.make_server_optimizer("fedavg")
KEY = jax.random.key(7)
CLASSES, PROMPTS, IMAGE = 10, 8, 32
MATMUL_RUNS = 10  # section 5's peak: the best of this many matmul runs
MODELS = {"tiny": (96, 4, 4, 64), "mid": (384, 6, 6, 256)}  # width, layers, heads, projection


@dataclasses.dataclass(frozen=True)
class Setup:
  """A random-weight CLIP with FedVPT-deep over all its vision layers and a fixed random head."""
  name: str
  model: Clip
  frozen: Tree
  method: PromptMethod
  aux: Tree
  shared: Tree


def build_setup(name: str) -> Setup:
  width, layers, heads, proj = MODELS[name]
  config = ClipConfig(
      vision=VisionConfig(width, 4 * width, layers, heads, image_size=IMAGE, patch_size=4),
      text=TextConfig(64, 256, 1, 4, vocab_size=256, max_position_embeddings=8,
                      eos_token_id=255, bos_token_id=254, pad_token_id=255),
      projection_dim=proj)
  model = Clip(config)
  method = make_method("fedvpt", model, {"num_tokens": PROMPTS, "depth": layers})
  head = jax.random.normal(jax.random.key(1), (CLASSES, proj))
  aux = {"head": head / jnp.linalg.norm(head, axis=-1, keepdims=True)}
  shared, _ = split_params(method, method.init(jax.random.key(2), aux))
  return Setup(name, model, model.init(jax.random.key(0)), method, aux, shared)


def forward_flops(v: VisionConfig, proj: int) -> dict[str, int]:
  """Analytic forward FLOPs per image (2 per multiply-add; LayerNorm/softmax/GELU not counted)."""
  t, d, f = 1 + PROMPTS + v.num_patches, v.hidden_size, v.intermediate_size
  return {"dense": v.num_hidden_layers * 2 * t * (4 * d * d + 2 * d * f),
          "attention": v.num_hidden_layers * 4 * t * t * d,
          "patch_embed": 2 * v.num_patches * v.patch_size ** 2 * 3 * d,
          "head": 2 * d * proj + 2 * proj * CLASSES}


def median_time(fn: Callable[[], Any], repeats: int, budget: float) -> tuple[float, int]:
  """Median seconds of fn() (which blocks): up to `repeats` runs, none started after `budget` s."""
  times: list[float] = []
  while len(times) < repeats and sum(times) < budget:
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times), len(times)


def run_times(fn: Callable[[], Any], repeats: int, budget: float) -> list[float]:
  """Seconds of each fn() (which blocks): up to `repeats` runs, none started after `budget` s."""
  times: list[float] = []
  while len(times) < repeats and sum(times) < budget:
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return times


def peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def memory_limit(override_gb: float | None) -> float:
  """Bytes a compiled round may need before we skip running it (it would swap or OOM)."""
  if override_gb:
    return override_gb * 2 ** 30
  if jax.default_backend() != "cpu":
    return 0.9 * (jax.devices()[0].memory_stats() or {}).get("bytes_limit", 2 ** 40)
  with open("/proc/meminfo") as f:
    info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
  return 0.7 * info.get("MemAvailable", 8 * 2 ** 30)


def compiled_bytes(compiled) -> dict[str, float]:
  ma = compiled.memory_analysis()
  if ma is None:
    return {}
  out = {n: getattr(ma, f"{n}_size_in_bytes") / 2 ** 20 for n in ("argument", "temp", "output")}
  out["total"] = sum(out.values()) - ma.alias_size_in_bytes / 2 ** 20
  return out


def put_inputs(b: dict[str, np.ndarray], weights: np.ndarray, mesh) -> RoundInputs:
  return mesh_lib.shard_clients(mesh, RoundInputs(
      ClientBatches(b["pixels"], b["labels"], b["mask"]), weights.astype(np.float32),
      b["client_ids"].astype(np.int32), {}, {}))


def random_inputs(k: int, padded: int, steps: int, batch: int, mesh) -> RoundInputs:
  """Pre-built device inputs: random pixels/labels, masks True, weight 1 (padding: 0, False)."""
  rng = np.random.default_rng(k)
  real = np.arange(padded) < k
  b = {"pixels": rng.integers(0, 256, (padded, steps, batch, IMAGE, IMAGE, 3), np.uint8),
       "labels": rng.integers(0, CLASSES, (padded, steps, batch)).astype(np.int32),
       "mask": np.broadcast_to(real[:, None, None], (padded, steps, batch)),
       "client_ids": np.arange(padded)}
  return put_inputs(b, real.astype(np.float32), mesh)


class Round:
  """The AOT-compiled round on one mesh; each call runs one round (state chained, donated)."""

  def __init__(self, setup: Setup, mesh, chunk: int | None, inputs: RoundInputs):
    fn = make_round_fn(setup.method, CLIENT_TX, SERVER_TX, mesh, chunk=chunk)
    rep = mesh_lib.replicated(mesh)
    self.frozen, self.aux = jax.device_put((setup.frozen, setup.aux), rep)
    state = init_server_state(setup.method, SERVER_TX, setup.shared, setup.aux)
    self.state = jax.device_put(jax.tree_util.tree_map(jnp.copy, state), rep)  # it is donated
    self.compiled = fn.lower(self.frozen, self.state, self.aux, KEY, inputs).compile()
    self.memory = compiled_bytes(self.compiled)

  def __call__(self, inputs: RoundInputs) -> None:
    self.state, out = self.compiled(self.frozen, self.state, self.aux, KEY, inputs)
    jax.block_until_ready((self.state, out))


def client_loop(setup: Setup, inputs: RoundInputs, k: int) -> Callable[[], None]:
  """Client by client: the round's jitted local update, then a jitted weighted mean + FedAvg."""
  update = jax.jit(make_local_update(setup.method, CLIENT_TX))
  dev = jax.devices()[0]
  frozen, aux = jax.device_put((setup.frozen, setup.aux), dev)
  b = inputs.batches
  clients = [jax.device_put(ClientBatches(b.pixels[i], b.labels[i], b.mask[i]), dev)
             for i in range(k)]
  keys = [client_key(KEY, jnp.int32(0), jnp.int32(i)) for i in range(k)]
  weights = jnp.ones((k,), jnp.float32)

  @jax.jit
  def aggregate(deltas, weights, shared, opt_state):
    total = server.weighted_sum(weights, jax.tree_util.tree_map(lambda *d: jnp.stack(d), *deltas))
    mean = jax.tree_util.tree_map(lambda x: x / weights.sum(), total)
    return server.server_step(SERVER_TX, shared, opt_state, mean)

  # Compile both with the arguments of a steady-state round (the state an aggregate returns).
  first = update(frozen, setup.shared, {}, {}, aux, {}, clients[0], keys[0]).delta
  state = list(aggregate([first] * k, weights, setup.shared, SERVER_TX.init(setup.shared)))
  jax.block_until_ready(update(frozen, state[0], {}, {}, aux, {}, clients[0], keys[0]))

  def run():
    deltas = [update(frozen, state[0], {}, {}, aux, {}, c, key).delta
              for c, key in zip(clients, keys)]
    state[:] = aggregate(deltas, weights, *state)
    jax.block_until_ready(state)
  return run


def central_steps(setup: Setup):
  """Plain centralised training: S jitted SGD steps (one scan) of the same loss, batch K*B.

  Like the round, both functions take the frozen CLIP and aux as arguments (never
  compile-time constants): train(frozen, aux, params, pixels, labels) and
  step(frozen, aux, (params, opt_state), (pixels, labels)).
  """
  def loss(frozen, aux, params, x, y):
    return setup.method.example_loss(frozen, params, aux, {}, {}, x, y, KEY).mean()

  def step(frozen, aux, carry, batch):
    params, opt_state = carry
    grads = jax.grad(loss, argnums=2)(frozen, aux, params,
                                      batch[0].astype(jnp.float32) / 255.0, batch[1])
    updates, opt_state = CLIENT_TX.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), None

  def train(frozen, aux, params, pixels, labels):
    carry = (params, CLIENT_TX.init(params))
    return jax.lax.scan(lambda c, b: step(frozen, aux, c, b), carry, (pixels, labels))[0][0]
  return jax.jit(train), step


class Bench:
  """Runs the sections, prints their tables, collects every figure in `self.results`."""

  def __init__(self, args):
    self.a, self.results, self.rounds = args, {}, {}
    self.setups = {name: build_setup(name) for name in MODELS}
    self.mesh1 = mesh_lib.make_mesh(jax.devices()[:1])
    self.limit = memory_limit(args.max_mem_gb)
    self.default_chunk = default_chunk(jax.default_backend())
    self._data, self._inputs = None, {}

  def data(self):
    """A synthetic 120,000-example source (random 32x32 uint8) and iid partitions, N small/large."""
    if self._data is None:
      n, rng = int(1.2 * self.a.big_n), np.random.default_rng(0)
      images = np.frombuffer(rng.bytes(n * IMAGE * IMAGE * 3), np.uint8).reshape(n, IMAGE,
                                                                                 IMAGE, 3)
      src = DataSource("synthetic", tuple(f"c{i}" for i in range(CLASSES)),
                       Split(images, rng.integers(0, CLASSES, n).astype(np.int32)),
                       Split(images[:1000], rng.integers(0, CLASSES, 1000).astype(np.int32)))
      parts = {m: make_partition(src, scheme="iid", num_clients=m, seed=0, min_size=1)
               for m in (100, self.a.big_n)}
      self._data = src, parts
    return self._data

  def host_inputs(self, n: int, k: int, r: int, mesh, chunk) -> RoundInputs:
    """Host work of one round: sample K of N, assemble their batches, device_put."""
    src, parts = self.data()
    ids = sample_clients(n, k, 0, r)
    b = round_batches(src.train, [parts[n].train_of(int(i)) for i in ids], ids,
                      steps=self.a.steps, batch=self.a.batch, seed=0, round_index=r,
                      padded_k=mesh_lib.padded_size(k, mesh, chunk or 1))
    return put_inputs(b, b["num_examples"], mesh)

  def inputs(self, k: int, padded: int, mesh) -> RoundInputs:
    tag = (k, padded, mesh.devices.size)
    if tag not in self._inputs:
      self._inputs[tag] = random_inputs(k, padded, self.a.steps, self.a.batch, mesh)
    return self._inputs[tag]

  def round(self, name: str, k: int, chunk: int | None, mesh=None) -> dict[str, Any]:
    """Times (memoised) the round of model `name` at K clients; skips it past the memory limit."""
    mesh = mesh or self.mesh1
    tag = (name, k, chunk, mesh.devices.size)
    if tag not in self.rounds:
      inputs = self.inputs(k, mesh_lib.padded_size(k, mesh, chunk or 1), mesh)
      rnd = Round(self.setups[name], mesh, chunk, inputs)
      rec = {"memory_mb": rnd.memory, "inputs": inputs}
      if rnd.memory.get("total", 0) * 2 ** 20 > self.limit:
        rec["skipped"] = f"needs {rnd.memory['total'] / 1024:.1f} GB > limit"
      else:
        rec["seconds"], rec["runs"] = median_time(lambda: rnd(inputs), self.a.repeats,
                                                  self.a.budget)
        rec["peak_rss_mb"] = peak_rss_mb()
      self.rounds[tag] = rec
    return self.rounds[tag]

  def chunk(self, name: str, k: int) -> int | None:
    """--chunk: 'default' (engine default), 'vmap', an int, or 'best' (fastest of section 1)."""
    c = self.a.chunk
    if c == "best":
      timed = {t[2]: r["seconds"] for t, r in self.rounds.items()
               if t[:2] == (name, k) and t[3] == 1 and "seconds" in r}
      return min(timed, key=timed.get) if timed else self.default_chunk
    return {"default": self.default_chunk, "vmap": None}[c] if c in ("default", "vmap") else int(c)

  def section1(self):
    devices = len(jax.devices())
    meshes = [self.mesh1] + ([mesh_lib.make_mesh()] if devices > 1 else [])
    print(f"\n[1] round vs client loop (tiny, S={self.a.steps}, B={self.a.batch}); inputs "
          "pre-built on device; host = sample + round_batches + device_put at "
          f"N={self.a.big_n:,}")
    print(f"{'K':>4} {'mesh':>4} {'chunk':>6} {'round s':>8} {'steps/s':>8} {'loop s':>8} "
          f"{'steps/s':>8} {'ratio':>6} {'host ms':>8}")
    rows, _ = [], self.data()
    for k in self.a.ks:
      host, _ = median_time(lambda: jax.block_until_ready(
          self.host_inputs(self.a.big_n, k, 0, self.mesh1, 1)), 3, self.a.budget)
      inputs = self.inputs(k, k, self.mesh1)
      loop_s, _ = median_time(client_loop(self.setups["tiny"], inputs, k), self.a.repeats,
                              self.a.budget)
      for mesh in meshes:
        local = -(-k // mesh.devices.size)
        for chunk in [c for c in (1, 8, 64) if c < local] + [None]:
          r = self.round("tiny", k, chunk, mesh)
          label = str(chunk) if chunk else f"vmap{local}"
          row = dict(k=k, mesh=mesh.devices.size, chunk=chunk or local, loop_s=loop_s,
                     host_ms=host * 1e3, **{x: r.get(x) for x in ("seconds", "skipped", "runs")})
          if "seconds" in r:
            row["ratio"] = loop_s / r["seconds"]
            print(f"{k:>4} {row['mesh']:>4} {label:>6} {r['seconds']:>8.3f} "
                  f"{k * self.a.steps / r['seconds']:>8.1f} {loop_s:>8.3f} "
                  f"{k * self.a.steps / loop_s:>8.1f} {row['ratio']:>6.2f} {host * 1e3:>8.1f}")
          else:
            print(f"{k:>4} {row['mesh']:>4} {label:>6}  skipped: {r['skipped']}")
          rows.append(row)
    self.results["round_vs_loop"] = rows
    print("steps/s = client-steps per second (K*S / time); ratio = round / loop throughput")

  def section2(self):
    k, s, bsz = self.a.k, self.a.steps, self.a.batch
    chunk = self.chunk("tiny", k)
    r = self.round("tiny", k, chunk)
    print(f"\n[2] cost of federation (tiny, K={k}, chunk={chunk or 'vmap'}): {k * s * bsz} images"
          f" = K x S x B vs S centralised steps of batch K*B = {k * bsz}")
    b = r["inputs"].batches
    swap = lambda x: jnp.swapaxes(x, 0, 1).reshape((s, k * bsz) + x.shape[3:])
    pixels, labels = jax.device_put((swap(b.pixels[:k]), swap(b.labels[:k])), jax.devices()[0])
    tiny = self.setups["tiny"]
    train, _ = central_steps(tiny)
    compiled = train.lower(tiny.frozen, tiny.aux, tiny.shared, pixels, labels).compile()
    mem = compiled_bytes(compiled).get("total", 0)
    if "seconds" not in r or mem * 2 ** 20 > self.limit:
      print(f"  skipped: round {r.get('skipped') or 'fits'}, centralised needs {mem:.0f} MB "
            f"(limit {self.limit / 2 ** 20:.0f} MB)")
      return
    central, _ = median_time(lambda: jax.block_until_ready(
        compiled(tiny.frozen, tiny.aux, tiny.shared, pixels, labels)), self.a.repeats,
        self.a.budget)
    images = k * s * bsz
    out = dict(k=k, chunk=chunk, round_images_s=images / r["seconds"],
               central_images_s=images / central, ratio=central / r["seconds"])
    print(f"  round {out['round_images_s']:9.1f} img/s   centralised {out['central_images_s']:9.1f}"
          f" img/s   ratio {out['ratio']:.3f}")
    self.results["federation_cost"] = out

  def section3(self):
    k, big = self.a.k, self.a.big_n
    chunk = self.chunk("tiny", k)
    print(f"\n[3] N = 100 vs N = {big:,} (tiny, K={k}, chunk={chunk or 'vmap'}; per round: "
          "sample_clients + round_batches + device_put + round)")
    self.data()
    rnd = Round(self.setups["tiny"], self.mesh1, chunk,
                self.host_inputs(100, k, 0, self.mesh1, chunk))
    times = {n: {"host": [], "total": []} for n in (100, big)}
    begin = time.perf_counter()
    for r in range(max(self.a.repeats, 2)):  # N alternate, so drift hits both alike
      if r >= 2 and time.perf_counter() - begin > 2 * self.a.budget:
        break
      for n in (100, big):
        start = time.perf_counter()
        inputs = self.host_inputs(n, k, r, self.mesh1, chunk)
        jax.block_until_ready(inputs)
        host = time.perf_counter() - start
        rnd(inputs)
        times[n]["host"].append(host)
        times[n]["total"].append(time.perf_counter() - start)
    med = {n: {x: statistics.median(v) for x, v in t.items()} for n, t in times.items()}
    for n in (100, big):
      print(f"  N={n:>7,}  round {med[n]['total']:.3f} s   of which host {med[n]['host'] * 1e3:.1f}"
            " ms")
    ratio = med[big]["total"] / med[100]["total"]
    print(f"  ratio N={big:,} / N=100: {ratio:.3f}")
    self.results["num_clients"] = dict(k=k, chunk=chunk, big_n=big, ratio=ratio,
                                       seconds={str(n): m for n, m in med.items()})

  def section4(self):
    print(f"\n[4] memory as K grows (tiny, S={self.a.steps}, B={self.a.batch}): XLA "
          "memory_analysis of the compiled round, MB; peak RSS = process ru_maxrss after running")
    print(f"{'K':>4} {'chunk':>6} {'args':>8} {'temp':>9} {'output':>7} {'total':>9} "
          f"{'peak RSS':>9}")
    rows = []
    for k in self.a.mem_ks:
      for chunk in (1, None):
        tag = ("tiny", k, chunk, 1)
        if tag in self.rounds:
          mem, rss = self.rounds[tag]["memory_mb"], self.rounds[tag].get("peak_rss_mb")
        else:
          inputs = random_inputs(k, k, self.a.steps, self.a.batch, self.mesh1)
          mem, rss = Round(self.setups["tiny"], self.mesh1, chunk, inputs).memory, None
        rows.append(dict(k=k, chunk=chunk or k, peak_rss_mb=rss, **mem))
        print(f"{k:>4} {chunk or 'vmap':>6} {mem.get('argument', 0):>8.1f} "
              f"{mem.get('temp', 0):>9.1f} {mem.get('output', 0):>7.1f} "
              f"{mem.get('total', 0):>9.1f} {f'{rss:.0f}' if rss else 'not run':>9}")
    self.results["memory"] = rows

  def section5(self):
    n = 2048
    x = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    matmul = jax.jit(lambda a, b: a @ b)
    jax.block_until_ready(matmul(x, x))
    # A peak is a best: the fastest of MATMUL_RUNS runs (the median is printed alongside).
    mm_times = run_times(lambda: jax.block_until_ready(matmul(x, x)), MATMUL_RUNS, self.a.budget)
    peak = 2 * n ** 3 / min(mm_times)
    mm_median = 2 * n ** 3 / statistics.median(mm_times)
    k, s, bsz = self.a.flops_k, self.a.steps, self.a.batch
    print(f"\n[5] FLOP/s (K={k}, S={s}, B={bsz}): measured f32 {n}x{n} matmul = "
          f"{peak / 1e9:.1f} GFLOP/s (best of {len(mm_times)} runs; median {mm_median / 1e9:.1f})"
          "; round FLOP/s from the round's median time\n  forward/image = layers x [2T(4D^2 + 2DF) dense"
          " + 4T^2 D attention] + 2P(3p^2)D patch embedding + 2DE + 2EC head, T = 1 + "
          f"{PROMPTS} prompts + P patches;\n  training = 2x forward (headline: weights are "
          "frozen, so the backward computes activation gradients only, about one forward;\n"
          "  3x = the usual count when weights also train). XLA/fwd = cost_analysis flops of one"
          " training step / B / forward (cross-check of the multiple).")
    print(f"{'model':>5} {'K':>3} {'chunk':>5} {'fwd MFLOP':>9} {'XLA/fwd':>7} {'2x GFLOP/s':>10} "
          f"{'of mm':>6} {'3x of mm':>8}")
    rows = []
    for name in MODELS:
      setup, chunk = self.setups[name], self.chunk(name, k)
      r = self.round(name, k, chunk)
      fwd = sum(forward_flops(setup.model.config.vision, setup.model.config.projection_dim)
                .values())
      _, step = central_steps(setup)
      b = r["inputs"].batches
      cost = jax.jit(step).lower(setup.frozen, setup.aux,
                                 (setup.shared, CLIENT_TX.init(setup.shared)),
                                 (b.pixels[0, 0], b.labels[0, 0])).compile().cost_analysis()
      cost = cost[0] if isinstance(cost, (list, tuple)) else cost
      xla = (cost or {}).get("flops", float("nan")) / bsz
      if "seconds" not in r:
        print(f"{name:>5} {k:>3}  skipped: {r['skipped']}")
        continue
      achieved = 2 * fwd * k * s * bsz / r["seconds"]
      rows.append(dict(model=name, k=k, chunk=chunk, forward_flops=fwd, xla_step_flops=xla,
                       achieved=achieved, of_matmul=achieved / peak, of_matmul_3x=1.5 * achieved
                       / peak))
      print(f"{name:>5} {k:>3} {chunk or 'vmap':>5} {fwd / 1e6:>9.1f} {xla / fwd:>6.2f}x "
            f"{achieved / 1e9:>10.1f} {achieved / peak:>6.1%} {1.5 * achieved / peak:>8.1%}")
    self.results["flops"] = dict(matmul_flops_s=peak, matmul_flops_s_median=mm_median,
                                 matmul_runs=len(mm_times), rows=rows)

  def targets(self):
    """Each target of the issue against its measured figure."""
    res, lines = self.results, []
    loop = [r for r in res.get("round_vs_loop", []) if r["mesh"] == 1 and "ratio" in r
            and r["chunk"] == (self.default_chunk or r["k"])]
    if loop:
      row = next((r for r in loop if r["k"] == 64), loop[-1])
      lines.append((f"round (default chunk) / loop at K={row['k']}", ">= 1.2", row["ratio"],
                    row["ratio"] >= 1.2))
    if "federation_cost" in res:
      v = res["federation_cost"]["ratio"]
      lines.append(("round img/s / centralised img/s", ">= 0.90", v, v >= 0.9))
    if "num_clients" in res:
      v = res["num_clients"]["ratio"]
      lines.append((f"round time N={self.a.big_n:,} / N=100", "<= 1.10", v, v <= 1.1))
    mid = [r for r in res.get("flops", {}).get("rows", []) if r["model"] == "mid"]
    if mid:
      lines.append(("mid model FLOP/s / matmul FLOP/s", ">= 0.30", mid[0]["of_matmul"],
                    mid[0]["of_matmul"] >= 0.3))
    print(f"\nTARGETS ({jax.default_backend()}, {len(jax.devices())} device(s)"
          f"{', QUICK sizes' if self.a.quick else ''}, random weights)")
    if not lines:
      print("  (no targeted figure was measured)")
    for what, target, value, ok in lines:
      print(f"  {what:<42} {target:>8} {value:>8.3f}  {'PASS' if ok else 'MISS'}")
    res["targets"] = [dict(target=w, bound=t, value=v, passed=ok) for w, t, v, ok in lines]


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run under a minute")
  p.add_argument("--devices", type=int, default=1, help="host devices (sets XLA_FLAGS)")
  p.add_argument("--sections", default="1,2,3,4,5")
  p.add_argument("--steps", type=int, default=2, help="S local steps")
  p.add_argument("--batch", type=int, default=32, help="B local batch")
  p.add_argument("--repeats", type=int, default=5, help="most timed runs per figure")
  p.add_argument("--budget", type=float, default=30.0, help="seconds of timed runs per figure")
  p.add_argument("--k", type=int, default=64, help="K for sections 2 and 3")
  p.add_argument("--flops-k", type=int, default=8, help="K for section 5")
  p.add_argument("--chunk", default="default", help="sections 2, 3, 5: default|vmap|best|INT")
  p.add_argument("--max-mem-gb", type=float, default=None, help="skip rounds needing more")
  p.add_argument("--json", default=None, help="also write every figure to this JSON file")
  a = p.parse_args(argv)
  a.ks, a.mem_ks, a.big_n = [1, 8, 64, 256], [8, 64, 256], 100_000
  if a.quick:
    a.ks, a.mem_ks, a.k, a.flops_k = [1, 8], [8, 32], 8, 1
    a.steps, a.batch, a.repeats, a.budget = 2, 8, 3, 2.0
  return a


def run(args: argparse.Namespace) -> dict[str, Any]:
  """Runs the sections of `args` (parse_args) and the targets; returns every figure."""
  bench = Bench(args)
  print(f"backend {jax.default_backend()}, devices {len(jax.devices())} "
        f"(--devices {args.devices}), default chunk {bench.default_chunk or 'vmap'}, models "
        f"{', '.join(f'{n}: width {w}, {l} layers' for n, (w, l, _, _) in MODELS.items())} "
        f"(patch 4 at {IMAGE}x{IMAGE}, FedVPT-deep {PROMPTS} tokens, random weights)")
  for section in args.sections.split(","):
    getattr(bench, f"section{section.strip()}")()
  bench.targets()
  return bench.results


def main(argv=None) -> None:
  args = parse_args(argv)
  results = run(args)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(dict(results, args=vars(args)), f, indent=1, default=str)


if __name__ == "__main__":
  main()
