"""comparison.png of launch/compare.py: final-round figures of several methods over seeds.

One bar group per metric, the methods side by side in one colour each: the bar
is the mean over seeds, the error bar the seeds' standard deviation (population,
as the table prints it), and each seed's own value is a black dot on its bar.
Zero-shot CLIP is a black dashed line across a group wherever the results hold
a zero-shot figure for that metric: the run named "zeroshot" (the adversarial
comparison; it is then drawn as that line, not as bars) or, failing that, the
zero-shot key every run records beside the metric (`zero_shot_key`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from fedprompt_jax import atomic
from fedprompt_jax import plot_style

ZEROSHOT_RUN = "zeroshot"
_NAMES = {"global_acc": "global", "zeroshot_acc": "zero-shot",
          "pers_acc_mean": "personalised\nmean", "pers_acc_worst10": "personalised\nworst 10%",
          "new_client_acc_mean": "new clients\nmean",
          "new_client_acc_worst10": "new clients\nworst 10%",
          "novel_acc": "novel classes", "base_novel_hm": "base-novel HM"}


def metric_label(key: str) -> str:
  """The x label of a metric group."""
  if key.startswith("robust_acc/"):
    rest = key[len("robust_acc/"):]
    if rest.startswith("worst@"):
      return "worst case\n" + rest[len("worst@"):]
    return {"clean": "clean\n(attacked images)", "worst": "worst case"}.get(rest, rest)
  return _NAMES.get(key, key)


def zero_shot_key(key: str) -> str | None:
  """The key train.py records zero-shot CLIP's figure of `key` under, or None."""
  if key == "global_acc" or key.startswith("global_acc/"):
    return "zeroshot_acc" + key[len("global_acc"):]
  if key == "novel_acc":
    return "zeroshot_novel_acc"
  return None


def _values(runs: Sequence[dict], key: str) -> np.ndarray:
  """Percentages of `key` over the runs (seeds) that have it."""
  return np.array([100.0 * r[key] for r in runs if key in r], np.float64)


def zero_shot_reference(results: dict, key: str) -> float | None:
  """Zero-shot CLIP's figure of `key` in %, or None where the results have none."""
  if ZEROSHOT_RUN in results:
    values = _values(results[ZEROSHOT_RUN], key)
  else:
    zs = zero_shot_key(key)
    values = (np.concatenate([_values(runs, zs) for runs in results.values()])
              if zs else np.zeros(0))
  return float(values.mean()) if len(values) else None


def comparison_figure(results: dict, keys: Sequence[str], title: str = ""):
  """The matplotlib Figure of comparison.png.

  Args:
    results: {method: [final record of each seed]}, as launch/compare.py collects them.
    keys: the metrics (accuracy fractions), one bar group each, in this order.
    title: the axes title.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  methods = [m for m in results if not (m == ZEROSHOT_RUN and len(results) > 1)]
  colours = plot_style.palette(len(methods))
  width = 0.8 / max(1, len(methods))
  fig, ax = plt.subplots(figsize=(max(7.0, len(keys) * (0.6 + 0.28 * len(methods))), 4.2))
  groups = np.arange(len(keys), dtype=np.float64)
  top = 0.0
  for i, (name, colour) in enumerate(zip(methods, colours)):
    x = groups + (i - (len(methods) - 1) / 2) * width
    per_key = [_values(results[name], k) for k in keys]
    means = np.array([v.mean() if len(v) else np.nan for v in per_key])
    stds = np.array([v.std() if len(v) else np.nan for v in per_key])
    ax.bar(x, means, width * 0.92, yerr=stds, color=colour, label=name, capsize=2.5,
           error_kw={"elinewidth": 0.9, "ecolor": "#333333"}, zorder=2)
    for xi, v in zip(x, per_key):
      offsets = np.linspace(-0.22, 0.22, len(v)) * width if len(v) > 1 else np.zeros(len(v))
      ax.scatter(xi + offsets, v, s=9, color="black", zorder=3,
                 label="one seed" if i == 0 and xi == x[0] else None)
    top = max(top, np.nanmax(np.concatenate([means + np.nan_to_num(stds)] + per_key + [[0]])))
  refs = [zero_shot_reference(results, k) for k in keys]
  xs, ys = [], []
  for g, ref in zip(groups, refs):
    if ref is not None:
      xs += [g - 0.45, g + 0.45, np.nan]
      ys += [ref, ref, np.nan]
      top = max(top, ref)
  if xs:  # one line for every group, so the legend has one zero-shot entry
    ax.plot(xs, ys, color=plot_style.REFERENCE_COLOUR, linestyle=plot_style.DASHED,
            linewidth=1.4, label="zero-shot CLIP", zorder=4)
  ax.set_xticks(groups, [metric_label(k) for k in keys],
                **({"rotation": 25, "ha": "right"} if len(keys) > 4 else {}), fontsize=8)
  ax.set_xlim(-0.6, len(keys) - 0.4)
  ax.set_ylim(0, min(105.0, top + 8.0))
  ax.set_ylabel("final-round accuracy (%)")
  ax.grid(axis="y", alpha=0.3, zorder=0)
  if title:
    ax.set_title(title, fontsize=10, loc="left")
  handles, labels = ax.get_legend_handles_labels()
  order = sorted(range(len(labels)), key=lambda j: labels[j] in ("one seed", "zero-shot CLIP"))
  ax.legend([handles[j] for j in order], [labels[j] for j in order], loc="upper left",
            bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, borderaxespad=0.0)
  return fig


def save_comparison(results: dict, path: str, keys: Sequence[str], title: str = "") -> str:
  """Writes `comparison_figure` to `path` (PNG); returns `path`."""
  fig = comparison_figure(results, keys, title)
  atomic.save_figure(fig, path, dpi=120, bbox_inches="tight")
  return path
