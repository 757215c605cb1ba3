"""The plain-text table of a run's final results (summary.txt and the end of a run)."""

from __future__ import annotations

import math
from typing import Any, Sequence

from fedprompt_jax import metric_keys


def format_value(key: str, value: Any) -> str:
  """A value as the table shows it: accuracies in %, small numbers in scientific notation."""
  if not metric_keys.is_number(value):
    return "-" if value is None else str(value)
  if metric_keys.is_acc_key(key):
    return f"{100.0 * value:.2f}%"
  if isinstance(value, int):
    return str(value)
  if math.isfinite(value) and value != 0 and abs(value) < 1e-3:
    return f"{value:.4e}"
  return f"{value:.4f}"


def summary_table(records: list[dict], keys: Sequence[str] | None = None) -> str:
  """A plain-text table of the final record (highest round), one row per metric.

  Accuracy-like keys (containing "acc") show as percentages with 2 decimals.
  The last column, the best value over all rounds (max for accuracies, min for
  losses, with its round), is for reference only and not used for selection.

  Args:
    records: metrics records, as from `metric_records.read_metrics`.
    keys: metrics to show; None: every numeric key of any record except "round" and the
      diagnostics other than `metric_keys.SUMMARY_DIAGNOSTICS`.
  """
  if not records:
    return "No evaluation records."
  final_index = max(range(len(records)), key=lambda i: (records[i].get("round", -1), i))
  final = records[final_index]
  if keys is None:
    keys = sorted({k for r in records for k, v in r.items()
                   if k != "round" and metric_keys.is_number(v)
                   and (not metric_keys.is_diagnostic(k)
                        or k in metric_keys.SUMMARY_DIAGNOSTICS)})

  rows = []
  for key in keys:
    value = format_value(key, final.get(key))
    best = "-"
    series = [(r[key], r.get("round")) for r in records if metric_keys.is_number(r.get(key))]
    series = [(v, rnd) for v, rnd in series if not (isinstance(v, float) and math.isnan(v))]
    if (series and (metric_keys.is_acc_key(key) or metric_keys.is_loss_key(key))
        and not metric_keys.is_diagnostic(key)):
      pick = max if metric_keys.is_acc_key(key) else min
      best_value, best_round = pick(series, key=lambda s: s[0])
      best = f"{format_value(key, best_value)} @ round {best_round}"
    rows.append((key, value, best))

  header = ("metric", "final", "best over rounds (not used for selection)")
  widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]

  def line(row: Sequence[str]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()

  out = [f"Final results (round {final.get('round', '?')}, last of {len(records)} evaluations)",
         line(header), line(tuple("-" * w for w in widths))]
  out.extend(line(row) for row in rows)
  return "\n".join(out)
