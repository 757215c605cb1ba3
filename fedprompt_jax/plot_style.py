"""Colours, line styles and end-of-line labels shared by the run's figures.

`palette(n)` gives n distinct colours for any n (matplotlib's default cycle
has ten, after which lines repeat colours). Reference lines (zero-shot, clean
accuracy) are black or a line's own colour, dashed; no palette colour is black.
"""

from __future__ import annotations

import colorsys

# matplotlib's tab10, then the light halves of tab20 in the same hue order.
_TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
          "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
_TAB20_LIGHT = ("#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5",
                "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5")

REFERENCE_COLOUR = "#000000"
SOLID, DASHED, DOTTED, DASH_DOT = "-", "--", ":", "-."


def palette(n: int) -> tuple[str, ...]:
  """n distinct colours (hex), none of them black.

  Up to 10: matplotlib's tab10; up to 20: tab10 and then its light variants;
  beyond: n evenly spaced hues.
  """
  if n <= len(_TAB10):
    return _TAB10[:max(n, 0)]
  if n <= len(_TAB10) + len(_TAB20_LIGHT):
    return _TAB10 + _TAB20_LIGHT[:n - len(_TAB10)]
  out = []
  for i in range(n):
    r, g, b = colorsys.hsv_to_rgb(i / n, 0.8, 0.85)
    out.append(f"#{round(255 * r):02x}{round(255 * g):02x}{round(255 * b):02x}")
  return tuple(out)


def spread(values: list[float], gap: float) -> list[float]:
  """Positions as close to `values` as a simple sweep allows, at least `gap` apart.

  Sorted ascending, each position is pushed up to `gap` above the one below it;
  then the whole stack is centred on the values' mean shift, so labels of close
  lines fan out around them. Returns the positions in the order of `values`.
  """
  order = sorted(range(len(values)), key=lambda i: values[i])
  placed = []
  for i in order:
    y = values[i] if not placed else max(values[i], placed[-1] + gap)
    placed.append(y)
  shift = sum(p - values[i] for p, i in zip(placed, order)) / max(1, len(order))
  out = [0.0] * len(values)
  for p, i in zip(placed, order):
    out[i] = p - shift
  return out


def label_line_ends(ax, ends: list[tuple[float, float, str, str]], fontsize: float = 7) -> None:
  """Writes each (x, y, text, colour) just right of its point, labels kept apart.

  The x axis is widened on the right to leave room for the labels inside the axes
  (the legend sits outside them).
  """
  if not ends:
    return
  xmin, xmax = ax.get_xlim()
  right = max(x for x, _, _, _ in ends)
  width = max(right - xmin, 1.0)
  ax.set_xlim(xmin, right + 0.14 * width)
  ymin, ymax = ax.get_ylim()
  height_pt = ax.get_window_extent().height * 72.0 / ax.figure.dpi
  gap = (ymax - ymin) * (fontsize + 1.5) / max(height_pt, 1.0)
  ys = spread([y for _, y, _, _ in ends], gap)
  for (x, y, text, colour), y_text in zip(ends, ys):
    del x, y
    ax.annotate(text, xy=(right + 0.015 * width, y_text), color=colour, fontsize=fontsize,
                va="center", ha="left", annotation_clip=False)
