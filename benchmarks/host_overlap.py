#!/usr/bin/env python
"""How long the training loop waits for round inputs, with fed.prefetch on and off.

  python benchmarks/host_overlap.py [--k 64] [--steps 2] [--batch 32] [--rounds 8]
                                    [--repeats 3] [--quick] [--json F]

Runs the engine's own loop (`train.train_rounds`) on a `train.Run` of configs/fedvpt.py's
embedded default (the shipped tiny CLIP, shapes data at its own resolution, deep prompts)
with K clients a round, S local steps of B images, evaluated (and checkpointed) once, after
the last round. Each repeat runs R rounds with fed.prefetch=0 (inputs built on the loop's
thread after the previous round is read back) and R rounds with fed.prefetch=1 (built on a
thread while the previous round runs; each round read back after the next is dispatched),
in turn, from the same initial state; one warm-up repeat (compilation) is not counted.

Printed, per setting, medians over repeats of: the loop's blocked time waiting for round
inputs over its round time (`input wait / round`, the issue's "fraction of round time the
device waits for the host"; with prefetch it is an upper bound: while the loop waits, the
device may still run the round dispatched before), the same without the first round of each
repeat (nothing can be built ahead of it), and seconds per round; then the ratio of round
times, prefetch off / on. Times are `time.perf_counter` spans of the loop's phases
(fedprompt_jax/phase_times.py), so device work is included where the loop reads it back.
Target: input wait / round < 5% with prefetch at K = 64.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from fedprompt_jax import checkpoint, phase_times, train  # noqa: E402
from fedprompt_jax import metrics as metrics_lib  # noqa: E402

TARGET = 0.05  # input wait / round, with prefetch, at K = 64
WAIT, ROUND = "round input wait", "round"


class Spans(phase_times.PhaseTimes):
  """PhaseTimes that also keeps every span, in order, per phase name, and prints nothing."""

  def __init__(self):
    super().__init__()
    self.spans: dict[str, list[float]] = {}

  @contextlib.contextmanager
  def __call__(self, name: str):
    start = time.perf_counter()
    try:
      yield
    finally:
      self.spans.setdefault(name, []).append(time.perf_counter() - start)

  def report(self, head: str) -> None:
    del head


def bench_config(a: argparse.Namespace):
  from configs import fedvpt  # pylint: disable=import-outside-toplevel
  c = fedvpt.get_config()
  c.fed.num_clients, c.fed.clients_per_round = a.num_clients, a.k
  c.fed.local_steps, c.fed.batch_size = a.steps, a.batch
  c.fed.rounds, c.eval.every, c.optim.schedule = a.rounds, a.rounds, "constant"
  c.eval.check_zero_shot, c.eval.personalized = False, False
  c.adv.eval, c.adv.sanity_attack = (), ""
  c.data.test_per_class_domain = 1  # the one evaluation after the last round stays short
  return c


def one_run(run: train.Run, prefetch: int, workdir: str) -> dict[str, list[float]]:
  """R rounds of the engine's loop from the initial state: the spans of its round phases."""
  run.c.fed.prefetch = prefetch
  run.times = Spans()
  state, personal_all = run.initial_state()
  ckpt = checkpoint.Checkpointer(workdir)
  writer = metrics_lib.MetricsWriter(workdir, run.c.fed.rounds, is_chief=False)
  try:
    train.train_rounds(run, ckpt, writer, {}, state, personal_all, 0)
  finally:
    ckpt.close()
    writer.close()
  return {name: run.times.spans[name] for name in (WAIT, ROUND)}


def summary(spans: dict[str, list[float]]) -> dict[str, float]:
  wait, rnd = spans[WAIT], spans[ROUND]
  return dict(wait_fraction=sum(wait) / sum(rnd),
              wait_fraction_after_first=sum(wait[1:]) / sum(rnd[1:]),
              seconds_per_round=sum(rnd) / len(rnd), wait_seconds=sum(wait) / len(wait))


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--k", type=int, default=64, help="K clients a round")
  p.add_argument("--num-clients", type=int, default=256, help="N clients in all")
  p.add_argument("--steps", type=int, default=2, help="S local steps")
  p.add_argument("--batch", type=int, default=32, help="B local batch")
  p.add_argument("--rounds", type=int, default=8, help="R rounds a repeat")
  p.add_argument("--repeats", type=int, default=3, help="timed repeats of each setting")
  p.add_argument("--quick", action="store_true", help="smoke run: K 8, S 1, B 8, R 3, 1 repeat")
  p.add_argument("--json", default=None, help="also write every figure to this JSON file")
  a = p.parse_args(argv)
  if a.quick:
    a.k, a.num_clients, a.steps, a.batch, a.rounds, a.repeats = 8, 16, 1, 8, 3, 1
  return a


def main(argv=None) -> dict:
  a = parse_args(argv)
  c = bench_config(a)
  with tempfile.TemporaryDirectory(prefix="host_overlap_") as tmp:
    run = train.Run(c, os.path.join(tmp, "run"))
    print(f"backend {jax.default_backend()}, {len(jax.devices())} device(s), chunk "
          f"{run.chunk or 'vmap'}; embedded tiny CLIP, FedVPT-deep, K={a.k} of N={a.num_clients}"
          f", S={a.steps}, B={a.batch}, {run.model.config.vision.image_size}px, R={a.rounds} "
          f"rounds a repeat, {a.repeats} repeat(s) after a warm-up", flush=True)
    spans = {0: [], 1: []}
    for rep in range(a.repeats + 1):  # repeat 0 compiles: not counted
      for prefetch in (0, 1):  # interleaved, so load drift hits both alike
        got = one_run(run, prefetch, os.path.join(tmp, f"p{prefetch}_r{rep}"))
        if rep:
          spans[prefetch].append(got)
  per = {p: [summary(s) for s in runs] for p, runs in spans.items()}
  med = {p: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for p, rows in per.items()}
  print(f"{'fed.prefetch':>12} {'input wait / round':>18} {'after round 1':>13} "
        f"{'wait ms':>8} {'s / round':>9}")
  for p in (0, 1):
    m = med[p]
    print(f"{p:>12} {m['wait_fraction']:>18.2%} {m['wait_fraction_after_first']:>13.2%} "
          f"{m['wait_seconds'] * 1e3:>8.1f} {m['seconds_per_round']:>9.3f}")
  ratio = med[0]["seconds_per_round"] / med[1]["seconds_per_round"]
  print(f"round time, prefetch off / on: {ratio:.3f}")
  frac = med[1]["wait_fraction"]
  print(f"TARGET input wait / round with prefetch at K={a.k}: {frac:.2%} < {TARGET:.0%}  "
        f"{'PASS' if frac < TARGET else 'MISS'}{' (K != 64: not the target setting)' if a.k != 64 else ''}")
  figures = dict(median=med, runs=per, off_over_on=ratio, args=vars(a))
  if a.json:
    with open(a.json, "w") as f:
      json.dump(figures, f, indent=1)
  return figures


if __name__ == "__main__":
  main()
