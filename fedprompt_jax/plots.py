"""curves.png: a run's evaluation records against the round, one panel per meaning.

plot_panels.py decides which panels exist and what each draws (from the metric
keys of the records); this module only draws them: one axes per panel, stacked,
accuracies in %, the legend outside the axes on the right and each line's final
value written at its end.
"""

from __future__ import annotations

from typing import Sequence

from fedprompt_jax import atomic
from fedprompt_jax import metric_keys
from fedprompt_jax import plot_panels
from fedprompt_jax import plot_style

PANEL_HEIGHT = 2.7   # inches per panel, at least
LEGEND_ENTRY = 0.22  # inches per legend entry (fontsize 7): a panel grows to hold its legend
AXES_WIDTH = 7.0     # inches, the legend comes on top of it


def _series(records: Sequence[dict], key: str) -> tuple[list[float], list[float]]:
  """(rounds, values) of the records that have a finite number for `key`, by round."""
  points = sorted((r["round"], r[key]) for r in records
                  if metric_keys.is_finite_number(r.get("round"))
                  and metric_keys.is_finite_number(r.get(key)))
  return [p[0] for p in points], [p[1] for p in points]


def _draw_panel(ax, panel: plot_panels.Panel, records: Sequence[dict]) -> None:
  scale = 100.0 if panel.percent else 1.0
  ends = []
  for line in panel.lines:
    rounds, values = _series(records, line.key)
    values = [scale * v for v in values]
    ax.plot(rounds, values, color=line.colour, linestyle=line.linestyle,
            linewidth=1.2 if line.reference else line.width,
            marker=None if line.reference else "o", markersize=2.5, label=line.label)
    text = f"{values[-1]:.1f}" if panel.percent else f"{values[-1]:.3g}"
    ends.append((rounds[-1], values[-1], text, line.colour))
  ax.set_title(panel.title, fontsize=10, loc="left")
  ax.set_ylabel(panel.ylabel)
  ax.grid(True, alpha=0.3)
  ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False,
            borderaxespad=0.0)
  plot_style.label_line_ends(ax, ends)


def curves_figure(records: Sequence[dict], keys: Sequence[str] | None = None):
  """The matplotlib Figure of curves.png, or None if no record has anything to draw.

  Args:
    records: metrics records with a "round" key, as from `metrics.read_metrics`.
    keys: metric keys to draw (the losses always are); None: every key a panel claims
      (plot_panels.py).
  """
  panels = plot_panels.panels(records, keys)
  if not panels:
    return None
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  heights = [max(PANEL_HEIGHT, LEGEND_ENTRY * len(p.lines) + 0.4) for p in panels]
  fig, axes = plt.subplots(len(panels), 1, figsize=(AXES_WIDTH, sum(heights)), sharex=True,
                           squeeze=False, gridspec_kw={"height_ratios": heights})
  fig.subplots_adjust(hspace=0.35)
  for ax, panel in zip(axes[:, 0], panels):
    _draw_panel(ax, panel, records)
  axes[-1, 0].set_xlabel("round")
  return fig


def save_curves(records: Sequence[dict], path: str,
                keys: Sequence[str] | None = None) -> str | None:
  """Writes curves.png (`curves_figure`) to `path`; its directory is created if missing.

  Returns:
    `path`, or None (nothing written) if there is nothing to draw.
  """
  fig = curves_figure(records, keys)
  if fig is None:
    return None
  atomic.save_figure(fig, path, dpi=110, bbox_inches="tight")
  return path
