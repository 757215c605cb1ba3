"""The `regression` table: the committed bands of the shortened main comparison.

It tabulates results/regression/expected.json, which `python scripts/regression_expected.py`
writes (seeds 0-4 of launch/compare.py's default comparison shortened by its SHORT, in the
tests' setting of 8 CPU devices; tests/test_regression.py re-runs seed 0 against it). The
table is generated from that file, not re-run: regenerate the file first after a change
meant to move the numbers.
"""

from __future__ import annotations

import json
import os

from fedprompt_jax.reproduce import results_io
from fedprompt_jax.reproduce.runs import label
from fedprompt_jax.reproduce.tables import REPO, Options, Produced, ProducerError, settings

EXPECTED = os.path.join(REPO, "results", "regression", "expected.json")


def produce(options: Options) -> Produced:
  s = settings("regression", options.overrides, {"expected": EXPECTED})
  if not os.path.exists(s["expected"]):
    raise ProducerError(f"{s['expected']} does not exist; write it with "
                        "`python scripts/regression_expected.py`")
  with open(s["expected"], encoding="utf-8") as f:
    exp = json.load(f)
  rows = []
  for method, keys in exp["metrics"].items():
    for key, b in keys.items():
      rows.append((method, label(key), b["mean"], b["std"], b["half_width"],
                   f"{100 * b['band'][0]:.1f} - {100 * b['band'][1]:.1f}",
                   " / ".join(f"{100 * v:.1f}" for v in b["values"])))
  seeds = ", ".join(map(str, exp["seeds"]))
  table = results_io.Table(
      name="regression",
      title="Regression bands of the shortened main comparison, in %",
      columns=("method", "metric", "mean", "std", "half-width", "band",
               f"seeds {seeds}"),
      rows=tuple(rows),
      formats=("g", "g", "pct", "pct", "pct", "g", "g"),
      notes=(f"`{exp['command']}`: launch/compare.py's default comparison shortened by "
             f"{', '.join('`' + o + '`' for o in exp['overrides'])}, seeds {seeds}, "
             f"{exp['devices']} CPU devices, matmul precision {exp['matmul_precision']}; band = "
             f"mean +- max({exp['k']:g} std (ddof=1), {100 * exp['floor']:g} points). "
             "tests/test_regression.py re-runs seed 0 and fails when a metric leaves its band "
             "or a config or partition hash changed (results/regression/expected.json)."))
  meta = dict(expected=os.path.relpath(s["expected"], REPO), seeds=exp["seeds"],
              config_hash=exp["config_hash"], partition_hash=exp["partition_hash"])
  return Produced(table, None, meta)
