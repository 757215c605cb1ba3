"""PNG curves of a run's evaluation records (accuracy and training loss vs round)."""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

from fedprompt_jax import atomic
from fedprompt_jax.metrics import is_diagnostic


def _is_number(value: Any) -> bool:
  return (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value))


def _series(records: list[dict], key: str) -> tuple[list[float], list[float]]:
  """(rounds, values) of the records that have a finite number for `key`."""
  points = [(r["round"], r[key]) for r in records
            if _is_number(r.get("round")) and _is_number(r.get(key))]
  points.sort(key=lambda p: p[0])
  return [p[0] for p in points], [p[1] for p in points]


def save_curves(records: list[dict], path: str,
                keys: Sequence[str] | None = None) -> str | None:
  """Plots accuracy-like metrics (and "train_loss", if any) against the round.

  Args:
    records: metrics records with a "round" key, as from `metrics.read_metrics`.
    path: the PNG file to write; its directory is created if missing.
    keys: accuracy metrics to plot; None: every key containing "acc" but the diagnostics
      (`metrics.is_diagnostic`).

  Returns:
    `path`, or None if there are no records. Keys missing from some records are
    plotted only where present.
  """
  if len(records) < 1:
    return None
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  if keys is None:
    keys = sorted({k for r in records for k, v in r.items()
                   if "acc" in k.lower() and _is_number(v) and not is_diagnostic(k)})
  has_loss = any(_is_number(r.get("train_loss")) for r in records)
  nrows = 2 if has_loss else 1
  fig, axes = plt.subplots(nrows, 1, figsize=(8, 4 * nrows), sharex=True, squeeze=False)
  try:
    ax = axes[0, 0]
    for key in keys:
      rounds, values = _series(records, key)
      if rounds:
        ax.plot(rounds, values, marker="o", markersize=3, label=key)
    ax.set_title("Accuracy vs round")
    ax.set_ylabel("accuracy")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(loc="best", fontsize="small")
    if has_loss:
      ax_loss = axes[1, 0]
      rounds, values = _series(records, "train_loss")
      ax_loss.plot(rounds, values, marker="o", markersize=3, color="tab:red",
                   label="train_loss")
      ax_loss.set_title("Training loss vs round")
      ax_loss.set_ylabel("loss")
      ax_loss.grid(True, alpha=0.3)
      ax_loss.legend(loc="best", fontsize="small")
    axes[-1, 0].set_xlabel("round")
    fig.tight_layout()
    directory = os.path.dirname(path)
    if directory:
      os.makedirs(directory, exist_ok=True)
    atomic.save_figure(fig, path)
  finally:
    plt.close(fig)
  return path
