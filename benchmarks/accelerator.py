#!/usr/bin/env python
"""The accelerator benchmark: rounds/s, FLOP/s against peak, peak memory, round vs client loop.

The prepared command for one H200 (about 7-8 minutes of device time: start-up, then at
most --time_budget = 360 s of sweep; run from the repository root):

  XLA_PYTHON_CLIENT_MEM_FRACTION=0.95 python benchmarks/accelerator.py --out=/tmp/accel

Its default sweep: a CLIP with ViT-B/16's shapes and random weights (no checkpoint), K
clients x S=2 local steps x B=32 images, C=100 classes, one device, a "star" grid around the
base point (fedvpt, K=64, chunk 16, bfloat16, remat off), varying one list at a time, in
this order: K in {8, 64, 256}, chunk in {16, 32} (a chunk >= K is the full vmap), dtype
float32, the methods pep, promptfl, fedapt and fedmvp, remat on: 10 rounds. A row that would
start after --time_budget seconds of sweep is listed as not run, so the command ends in time
whatever the compile times; the order puts what the issue's targets need first.
`--grid=full` runs the cross product of the lists instead. CPU smoke run
(tests/test_accelerator_benchmark.py):

  python benchmarks/accelerator.py --model=tiny --reduced --methods=fedvpt,pep --clients=2 \
      --chunks=1 --dtypes=float32 --remat=off --loop=all --out=/tmp/accel_smoke

Per configuration (one round = K clients x S steps x B images, one device):
  rounds/s      1 / the median of up to --repeats timed rounds (AOT-compiled; compile and one
                warm-up round excluded; `jax.block_until_ready`); state chained and donated.
  TFLOP/s       model FLOPs / round time. Model FLOPs = K x S x XLA's cost analysis of one
                client's local update at S = 1 (its lowered HLO: `cost_analysis` counts a
                loop body once, so the whole round's count would be short by the trip
                counts), float32 and remat off: recomputation is not useful work.
  of peak       TFLOP/s over the device's dense bf16 peak (--peak_tflops, else the table
                PEAK_BF16_TFLOPS by device kind, else the measured matmul below; the header
                says which), for every dtype. `of mm`: over a measured matmul of the row's
                dtype (8192^2 on an accelerator, 1024^2 on CPU; the best of 10 runs).
  mem GB        XLA's compiled memory analysis of the round (arguments + temporaries +
                outputs - donated aliases): what fedprompt_jax/memory_plan.py plans with.
  peak GB       `device.memory_stats()['peak_bytes_in_use']` after the row (accelerators).
                It is the process's peak so far: a row's own peak when it rose in that row,
                printed "<=X" when it did not. CPU has no memory_stats: "-" (see mem GB).
  loop / round  the same K clients one by one with the round's own local update, jitted
                (compiled once per method, dtype and remat), then one jitted weighted mean,
                server step and method server update: the loop's median time over the
                round's. Measured for the base method, dtype and remat (--loop=base), for
                every row (--loop=all) or never (--loop=off).
A configuration whose compiled memory exceeds the device's memory (bytes_limit; with JAX's
default preallocation that is 75% of the device, hence the MEM_FRACTION above), or whose
estimate from a smaller chunk of the same method, dtype and remat exceeds it by 25%, is
reported "OOM" without running, and one that raises RESOURCE_EXHAUSTED is reported "OOM
(stage)"; the sweep goes on. Any other failure is an "error (stage)" row, its traceback goes
to stderr, and the exit status is 1. The table goes to stdout, and with --out to
table.md, results.csv and results.json.

Expected on an accelerator (issue 16): round >= 5x the client loop with vmapped chunks, and
>= 40% of bf16 peak for ViT-B/16; both printed as PASS/MISS under the table (accelerator_report.py)
where they apply (a chunk > 1; ViT-B/16 against a device's peak), else as information.
The parts: accelerator_setup.py (models, methods, inputs), accelerator_loop.py (the client
loop, the step FLOPs), accelerator_report.py (table, targets, files).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import traceback
from typing import Any, Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402

import accelerator_loop as loop_lib  # noqa: E402
import accelerator_report as report  # noqa: E402
import accelerator_setup as setup  # noqa: E402
from fedprompt_jax.fed import mesh as mesh_lib  # noqa: E402
from fedprompt_jax.fed.round import make_round_fn  # noqa: E402

# Dense bf16 tensor FLOP/s (no sparsity) by `device_kind` substring, TFLOP/s; the SXM parts
# (an H100 PCIe has 756: give --peak_tflops for any other part).
PEAK_BF16_TFLOPS = (("H200", 989.0), ("H100", 989.0), ("A100", 312.0), ("TPU v6", 918.0),
                    ("TPU v5p", 459.0), ("TPU v5 lite", 197.0), ("TPU v5e", 197.0),
                    ("TPU v4", 275.0))


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--methods", default=",".join(setup.METHODS))
  p.add_argument("--clients", default="8,64,256", help="K values")
  p.add_argument("--chunks", default="16,32", help="clients vmapped at once; 'vmap' = all; "
                 "the first is the base of the star grid")
  p.add_argument("--dtypes", default="bfloat16,float32")
  p.add_argument("--remat", default="off,on")
  p.add_argument("--model", default="vitb16", choices=setup.MODELS)
  p.add_argument("--grid", default="star", choices=("star", "full"),
                 help="star: each list varied alone around the base (first values, K "
                 "--base_k); full: the cross product")
  p.add_argument("--base_k", type=int, default=None,
                 help="K of the star grid's base point, one of --clients (default: the middle)")
  p.add_argument("--steps", type=int, default=2, help="S local steps")
  p.add_argument("--batch", type=int, default=32, help="B images per client and step")
  p.add_argument("--classes", type=int, default=100, help="C classes")
  p.add_argument("--loop", default="base", choices=("base", "all", "off"),
                 help="time the client loop for the base method/dtype/remat only, for all, or "
                 "never (one compile of the local update per method, dtype and remat)")
  p.add_argument("--repeats", type=int, default=3, help="most timed runs per figure")
  p.add_argument("--budget", type=float, default=20.0, help="seconds of timed runs per figure")
  p.add_argument("--time_budget", type=float, default=360.0,
                 help="no configuration starts after this many seconds of sweep")
  p.add_argument("--peak_tflops", type=float, default=None, help="the device's bf16 peak")
  p.add_argument("--memory_limit_gb", type=float, default=None,
                 help="device memory for the OOM check (default: the device's bytes_limit; "
                 "on CPU 70%% of the available RAM)")
  p.add_argument("--reduced", action="store_true",
                 help="CPU smoke sizes: S=1, B=2, C=10, 2 repeats, small matmul")
  p.add_argument("--out", default=None, help="directory for results.csv/json and table.md")
  a = p.parse_args(argv)
  split = lambda s: [x.strip() for x in s.split(",") if x.strip()]
  a.method_list, a.dtype_list = split(a.methods), split(a.dtypes)
  lists = (("--methods", a.method_list, setup.METHODS), ("--dtypes", a.dtype_list, setup.DTYPES),
           ("--remat", split(a.remat), ("off", "on")))
  for flag, values, valid in lists:
    bad = [x for x in values if x not in valid] or ([] if values else ["(empty)"])
    if bad:
      p.error(f"{flag}: {bad[0]!r} is unknown; valid: {', '.join(valid)}")
  a.remat_list = [r == "on" for r in split(a.remat)]
  try:
    a.k_list = [int(k) for k in split(a.clients)]
    a.chunk_list = [None if c == "vmap" else int(c) for c in split(a.chunks)]
  except ValueError as e:
    p.error(f"--clients and --chunks take integers (--chunks also 'vmap'): {e}")
  sizes = a.k_list + [1 if c is None else c for c in a.chunk_list]
  if not a.k_list or not a.chunk_list or min(sizes) < 1:
    p.error(f"--clients={a.clients} --chunks={a.chunks}: give positive integers")
  if a.reduced:
    a.steps, a.batch, a.classes, a.repeats, a.budget = 1, 2, 10, 2, 2.0
  if a.base_k is None:
    a.base_k = a.k_list[len(a.k_list) // 2]
  elif a.base_k not in a.k_list:
    p.error(f"--base_k={a.base_k} is not one of --clients={a.clients}")
  return a


def configs(a) -> list[tuple[str, int, int | None, str, bool]]:
  """(method, K, chunk, dtype, remat) in run order, without repeats."""
  if a.grid == "full":
    out = [(m, k, c, d, r) for m in a.method_list for d in a.dtype_list for r in a.remat_list
           for k in a.k_list for c in a.chunk_list]
  else:
    m0, c0, d0, r0, k0 = (a.method_list[0], a.chunk_list[0], a.dtype_list[0], a.remat_list[0],
                          a.base_k)
    out = ([(m0, k, c0, d0, r0) for k in a.k_list] + [(m0, k0, c, d0, r0) for c in a.chunk_list]
           + [(m0, k0, c0, d, r0) for d in a.dtype_list]
           + [(m, k0, c0, d0, r0) for m in a.method_list]
           + [(m0, k0, c0, d0, r) for r in a.remat_list])
  seen, unique = set(), []
  for cfg in out:
    key = cfg[:2] + (min(cfg[2] or cfg[1], cfg[1]),) + cfg[3:]  # chunk >= K is full vmap
    if key not in seen:
      seen.add(key)
      unique.append(cfg)
  return unique


def device_peak(a) -> tuple[float | None, str]:
  """(bf16 peak FLOP/s, where from); None when unknown."""
  if a.peak_tflops:
    return a.peak_tflops * 1e12, "--peak_tflops"
  kind = jax.devices()[0].device_kind
  for name, tflops in PEAK_BF16_TFLOPS:
    if name.lower() in kind.lower():
      return tflops * 1e12, f"table: {name} dense bf16"
  return None, f"unknown device kind {kind!r}"


def matmul_peak(dtype: str, n: int) -> float:
  """FLOP/s of an n x n matmul in `dtype`: the best of 10 runs."""
  x = jax.random.normal(jax.random.key(0), (n, n), setup.DTYPES[dtype])
  mm = jax.jit(lambda u, v: u @ v)
  jax.block_until_ready(mm(x, x))
  times = []
  for _ in range(10):
    start = time.perf_counter()
    jax.block_until_ready(mm(x, x))
    times.append(time.perf_counter() - start)
  return 2 * n ** 3 / min(times)


def median_time(fn: Callable[[], Any], repeats: int, budget: float) -> float:
  times: list[float] = []
  while len(times) < repeats and sum(times) < budget:
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def is_oom(e: BaseException) -> bool:
  text = str(e)
  return any(s in text for s in ("RESOURCE_EXHAUSTED", "Out of memory", "out of memory",
                                 "OOM"))


def memory_limit(override_gb: float | None) -> float:
  if override_gb:
    return override_gb * 1e9
  device = jax.devices()[0]
  if device.platform != "cpu":
    return float((device.memory_stats() or {}).get("bytes_limit", 2 ** 50))
  with open("/proc/meminfo") as f:
    info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
  return 0.7 * info.get("MemAvailable", 8 * 2 ** 30)


def peak_bytes() -> int | None:
  stats = jax.devices()[0].memory_stats()
  return None if not stats else stats.get("peak_bytes_in_use")


class Sweep:
  """Runs the configurations; each row's figures in `self.rows`."""

  def __init__(self, a):
    self.a, self.rows, self.errors = a, [], 0
    self.models = setup.Models(a.model, a.classes)
    self.size = self.models.config.vision.image_size
    self.mesh = mesh_lib.make_mesh(jax.devices()[:1])
    self.limit = memory_limit(a.memory_limit_gb)
    self._variants, self._loops, self.step_flops_by_method, self._host = {}, {}, {}, {}
    self._loop_s: dict[tuple, float] = {}
    self._temp: dict[tuple, list[tuple[int, float]]] = {}  # (m, d, r) -> [(chunk, bytes)]
    self.peak_seen = 0

  def variant(self, m, d, r):
    if (m, d, r) not in self._variants:
      self._variants[(m, d, r)] = self.models.variant(m, d, r)
    return self._variants[(m, d, r)]

  def host(self, k):
    if k not in self._host:
      self._host = {k: setup.client_batches(k, self.a.steps, self.a.batch, self.size,
                                            self.a.classes)}
    return self._host[k]

  def step_flops(self, m) -> float:
    """XLA's FLOPs of one client's one local step (float32, remat off; lowered, not compiled)."""
    if m not in self.step_flops_by_method:
      v = self.variant(m, "float32", False)
      batches, hist = setup.client_batches(1, 1, self.a.batch, self.size, self.a.classes)
      inputs = setup.round_inputs(v, batches, hist, 1, 1, self.mesh)
      self.step_flops_by_method[m] = loop_lib.local_step_flops(self.models.frozen, v, inputs)
    return self.step_flops_by_method[m]

  def estimated_oom(self, key, chunk: int) -> str | None:
    known = [(c, b) for c, b in self._temp.get(key, []) if c < chunk]
    if not known:
      return None
    c, b = max(known)
    estimate = b * chunk / c
    if estimate > 1.25 * self.limit:
      return f"OOM (est. {estimate / 1e9:.3g} GB from chunk {c})"
    return None

  def run(self, row: dict, m, k, chunk, d, r) -> None:
    """Fills `row` (status last); row["stage"] says how far it got if something raises."""
    a, eff = self.a, min(chunk or k, k)
    row["chunk"] = eff
    oom = self.estimated_oom((m, d, r), eff)
    if oom:
      row["status"] = oom
      return
    row["stage"] = "inputs"
    v = self.variant(m, d, r)
    batches, hist = self.host(k)
    padded = mesh_lib.padded_size(k, self.mesh, eff)
    inputs = setup.round_inputs(v, batches, hist, k, padded, self.mesh)
    frozen = jax.device_put(self.models.frozen, mesh_lib.replicated(self.mesh))
    fn = make_round_fn(v.method, v.client_tx, v.server_tx, self.mesh, chunk=eff)
    state = [setup.server_state(v)]
    key = jax.random.key(1)
    row["stage"], start = "compile", time.perf_counter()
    compiled = fn.lower(frozen, state[0], v.aux, key, inputs).compile()
    row["compile_s"] = time.perf_counter() - start
    ma = compiled.memory_analysis()
    if ma is not None:
      total = (ma.argument_size_in_bytes + ma.temp_size_in_bytes + ma.output_size_in_bytes
               - ma.alias_size_in_bytes)
      row["mem_gb"] = total / 1e9
      self._temp.setdefault((m, d, r), []).append((eff, float(ma.temp_size_in_bytes)))
      if total > self.limit:
        row["status"] = f"OOM (needs {total / 1e9:.3g} GB)"
        return

    def one_round():
      state[0], out = compiled(frozen, state[0], v.aux, key, inputs)
      jax.block_until_ready((state[0], out))
    row["stage"] = "round"
    one_round()  # warm-up
    row["round_s"] = median_time(one_round, a.repeats, a.budget)
    row["rounds_s"] = 1 / row["round_s"]
    flops = k * a.steps * self.step_flops(m)
    row["model_tflop"] = flops / 1e12
    row["tflops"] = flops / row["round_s"] / 1e12
    row["of_peak"] = row["tflops"] * 1e12 / self.peak
    row["of_matmul"] = row["tflops"] * 1e12 / self.matmul[d]
    peak = peak_bytes()
    if peak is not None:
      row["peak_gb"], row["peak_rose"] = peak / 1e9, peak > self.peak_seen
      self.peak_seen = max(self.peak_seen, peak)
    del compiled, state
    if a.loop == "all" or (a.loop == "base" and (m, d, r) == self.base):
      row["stage"] = "client loop"
      row["loop_s"] = self.loop_time(m, d, r, k, v, inputs)
      row["loop_ratio"] = row["loop_s"] / row["round_s"]
    del row["stage"]
    row["status"] = "ok"

  def loop_time(self, m, d, r, k, v, inputs) -> float:
    """The client loop's median time at K = k (once per method, dtype, remat and K)."""
    if (m, d, r, k) not in self._loop_s:
      if (m, d, r) not in self._loops:
        self._loops = {(m, d, r): loop_lib.ClientLoop(self.models.frozen, v)}  # one at a time
      run = self._loops[(m, d, r)].prepare(inputs, k)
      self._loop_s[(m, d, r, k)] = median_time(run, self.a.repeats, self.a.budget)
    return self._loop_s[(m, d, r, k)]

  def sweep(self):
    a, begin, last = self.a, time.perf_counter(), 0.0
    self.base = (a.method_list[0], a.dtype_list[0], a.remat_list[0])
    self.peak, self.peak_source = device_peak(a)
    n = 1024 if jax.default_backend() == "cpu" else 8192
    self.matmul = {d: matmul_peak(d, n) for d in a.dtype_list}
    self.peak_measured = self.peak is None
    if self.peak is None:
      self.peak, self.peak_source = self.matmul[a.dtype_list[0]], (
          f"{self.peak_source}: measured {a.dtype_list[0]} {n}^2 matmul")
    for cfg in configs(a):
      row = dict(zip(("method", "k", "chunk", "dtype", "remat"), cfg))
      if time.perf_counter() - begin + last > a.time_budget:
        row["status"] = f"not run (time budget {a.time_budget:.0f} s)"
      else:
        start = time.perf_counter()
        try:
          self.run(row, *cfg)
        except Exception as e:  # pylint: disable=broad-except
          stage = row.pop("stage", "set-up")
          if is_oom(e):
            row["status"] = f"OOM ({stage})"
          else:
            self.errors += 1
            first = str(e).splitlines()[0][:80] if str(e) else type(e).__name__
            row["status"] = f"error ({stage}): {first}"
            traceback.print_exc()
        last = time.perf_counter() - start
        gc.collect()
      self.rows.append(row)
      print(report.format_row(row), flush=True)


def run(argv=None) -> dict:
  """Runs the sweep, prints the table, writes --out; returns what results.json holds."""
  a = parse_args(argv)
  start = time.perf_counter()
  sweep = Sweep(a)
  dev = jax.devices()[0]
  print(f"device {dev.device_kind} ({jax.default_backend()}), model {a.model} (random weights,"
        f" {a.classes} classes), S={a.steps}, B={a.batch}, grid {a.grid}, "
        f"set-up {time.perf_counter() - start:.1f} s\n{report.HEADER}", flush=True)
  sweep.sweep()
  head = (f"peak {sweep.peak / 1e12:.1f} TFLOP/s ({sweep.peak_source}); measured matmul "
          + ", ".join(f"{d} {v / 1e12:.3g} TFLOP/s" for d, v in sweep.matmul.items())
          + "; model FLOPs/client-step (XLA): "
          + ", ".join(f"{m} {f / 1e9:.3g} GFLOP" for m, f in sweep.step_flops_by_method.items()))
  lines = report.targets(sweep.rows, a.model, sweep.peak_measured)
  table = report.table(sweep.rows)
  print(f"\n{head}\n\n{table}\n\nTARGETS\n" + "\n".join(lines))
  print(f"total {time.perf_counter() - start:.0f} s")
  results = dict(device=dev.device_kind, backend=jax.default_backend(), header=head,
                 args=vars(a), matmul_flops=sweep.matmul, peak_flops=sweep.peak,
                 peak_source=sweep.peak_source, step_flops=sweep.step_flops_by_method,
                 rows=sweep.rows, targets=lines, errors=sweep.errors)
  if a.out:
    report.write(a.out, results, head, table, lines)
  return results


def main(argv=None) -> int:
  """Exit status 1 when a configuration failed other than by OOM, else 0 (whatever the figures)."""
  return 1 if run(argv)["errors"] else 0


if __name__ == "__main__":
  sys.exit(main())
