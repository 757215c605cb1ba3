"""curves.png and comparison.png, drawn from fixed records: the panel set, and no two lines of a
panel alike (colour and line style), whatever the number of domains, attacks or methods."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from matplotlib import colors as mcolors
from matplotlib.collections import PathCollection
from matplotlib import pyplot as plt

from fedprompt_jax import metrics as metrics_lib
from fedprompt_jax import plot_compare
from fedprompt_jax import plot_panels
from fedprompt_jax import plot_style
from fedprompt_jax import plots

DOMAINS = ("photo", "sketch", "noisy", "pattern")
ATTACK = "pgd:linf:eps=1/255:steps=10"


def _records(domains=DOMAINS, attacks=(ATTACK,), rounds=(0, 5, 10), novel=False, new=False,
             dp=False):
  """Records shaped like train.py's (zero-shot in every record, no loss at round 0)."""
  out = []
  for r in rounds:
    t = r / max(rounds)
    rec = {"round": r, "global_acc": 0.55 + 0.1 * t, "zeroshot_acc": 0.6875,
           "pers_acc_mean": 0.6 + 0.25 * t, "pers_acc_worst10": 0.4 + 0.3 * t,
           "robust_acc/clean": 0.6 + 0.05 * t, "robust_acc/worst": 0.25 + 0.07 * t,
           "robust_sanity/warnings": 0, "robust_sanity/large_radius_acc": 0.0,
           "seconds_per_round": 1.5}
    if r:
      rec["train_loss"] = 1.5 * math.exp(-2 * t)
    for i, d in enumerate(domains):
      rec[f"global_acc/{d}"] = 0.4 + 0.01 * i + 0.1 * t
      rec[f"zeroshot_acc/{d}"] = 0.45 + 0.01 * i
    for i, a in enumerate(attacks):
      rec[f"robust_acc/{a}"] = 0.3 - 0.001 * i + 0.07 * t
    if novel:
      rec.update(novel_acc=0.5 - 0.1 * t, zeroshot_novel_acc=0.5, base_novel_hm=0.5)
      for d in domains:
        rec[f"novel_acc/{d}"] = 0.3
    if new:
      rec.update(new_client_acc_mean=0.55 + 0.2 * t, new_client_acc_worst10=0.35 + 0.2 * t)
    if dp and r:
      rec["dp_epsilon"] = 0.1 * r
    out.append(rec)
  return out


def _figure_from_file(tmp_path, records):
  """Writes records as a metrics.jsonl, reads it back as a run would, draws curves.png."""
  with open(tmp_path / "metrics.jsonl", "w") as f:
    for record in records:
      f.write(json.dumps(record, sort_keys=True) + "\n")
  fig = plots.curves_figure(metrics_lib.read_metrics(str(tmp_path)))
  assert fig is not None
  fig.canvas.draw()
  return fig


def _titles(fig):
  return [ax.get_title(loc="left") for ax in fig.axes]


def _styles(ax):
  """(rgba, linestyle) of every drawn line of an axes."""
  return [(mcolors.to_rgba(line.get_color()), line.get_linestyle()) for line in ax.get_lines()
          if line.get_linestyle() not in ("None", "")]


def _assert_lines_distinct(fig):
  for ax in fig.axes:
    styles = _styles(ax)
    assert styles, ax.get_title(loc="left")
    assert len(set(styles)) == len(styles), (ax.get_title(loc="left"), styles)


def test_main_command_records_give_the_five_panels(tmp_path):
  fig = _figure_from_file(tmp_path, _records())
  try:
    titles = _titles(fig)
    assert [t.split(":")[0].split(" (")[0] for t in titles] == [
        "Global model vs zero-shot", "Personalised", "Per domain",
        "Robust accuracy of the global model per attack", "Training loss"]
    labels = {t: [line.get_label() for line in ax.get_lines()] for t, ax in
              zip(titles, fig.axes)}
    assert labels[titles[0]] == ["global model", "zero-shot"]
    assert labels[titles[1]] == ["clients, mean", "clients, worst 10%",
                                 "zero-shot (global test set)"]
    assert len(labels[titles[2]]) == 2 * len(DOMAINS)  # each domain and its zero-shot
    assert labels[titles[3]] == [ATTACK, "worst case", "clean (same images)"]
    _assert_lines_distinct(fig)
    # A domain's zero-shot line is its own colour, dashed.
    lines = {line.get_label(): line for line in fig.axes[2].get_lines()}
    for d in DOMAINS:
      assert lines[d].get_color() == lines[f"{d}, zero-shot"].get_color()
      assert lines[d].get_linestyle() == "-" and lines[f"{d}, zero-shot"].get_linestyle() == "--"
    # The global panel's zero-shot reference is dashed.
    assert fig.axes[0].get_lines()[1].get_linestyle() == "--"
    # Final-round values at the line ends, in % for accuracies.
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["65.0", "68.8"]
    assert [t.get_text() for t in fig.axes[4].texts] == [f"{1.5 * math.exp(-2):.3g}"]
    # Legends sit outside (right of) the axes.
    for ax in fig.axes:
      legend = ax.get_legend().get_window_extent()
      assert legend.x0 >= ax.get_window_extent().x1
  finally:
    plt.close(fig)


def test_many_domains_and_attacks_never_repeat_a_style(tmp_path):
  domains = tuple(f"domain{i}" for i in range(13))
  attacks = tuple(f"pgd:linf:eps={i}/255:steps=10" for i in range(1, 24))
  fig = _figure_from_file(tmp_path, _records(domains=domains, attacks=attacks, novel=True))
  try:
    by_title = dict(zip(_titles(fig), fig.axes))
    domain_ax = next(ax for t, ax in by_title.items() if t.startswith("Per domain"))
    robust_ax = next(ax for t, ax in by_title.items() if t.startswith("Robust"))
    assert len(_styles(domain_ax)) == 3 * 13 > 10
    assert len(_styles(robust_ax)) == 23 + 2
    _assert_lines_distinct(fig)
    # Domains in natural order: domain2 before domain10.
    labels = [line.get_label() for line in domain_ax.get_lines()]
    assert labels.index("domain2") < labels.index("domain10")
  finally:
    plt.close(fig)


def test_base_novel_new_clients_and_privacy_panels(tmp_path):
  fig = _figure_from_file(tmp_path, _records(novel=True, new=True, dp=True))
  try:
    titles = _titles(fig)
    assert titles[0].startswith("Base and novel classes")
    assert not any(t.startswith("Global model vs zero-shot") for t in titles)
    assert titles[-1] == "Privacy budget spent"
    base_novel = [line.get_label() for line in fig.axes[0].get_lines()]
    assert base_novel == ["base classes", "base, zero-shot", "novel classes", "novel, zero-shot",
                          "harmonic mean"]
    personal = [line.get_label() for line in fig.axes[1].get_lines()]
    assert "new clients, mean" in personal and "new clients, worst 10%" in personal
    assert any("novel classes (dash-dot)" in t for t in titles)
    _assert_lines_distinct(fig)
  finally:
    plt.close(fig)


def test_panels_without_data_are_left_out():
  names = lambda records: [p.name for p in plot_panels.panels(records)]
  assert names([{"round": 1, "train_loss": 0.5}]) == ["loss"]
  # Zero-shot alone (a local-only run has no global model): a reference makes no panel.
  local_only = [{"round": 1, "zeroshot_acc": 0.7, "zeroshot_acc/photo": 0.8,
                 "pers_acc_mean": 0.8, "pers_acc_worst10": 0.6, "train_loss": 0.4}]
  assert names(local_only) == ["personal", "loss"]
  assert names(_records()) == ["global", "personal", "domains", "robust", "loss"]
  assert "privacy" in names(_records(dp=True)) and "privacy" not in names(_records())
  # Accuracy keys no rule knows are drawn, not dropped; diagnostics and NaN are not.
  odd = [{"round": 1, "test_acc": 0.5, "robust_sanity/large_radius_acc": 0.0,
          "global_acc": float("nan")}]
  assert [(p.name, [l.key for l in p.lines]) for p in plot_panels.panels(odd)] == [
      ("other_acc", ["test_acc"])]
  assert plots.curves_figure([]) is None


@pytest.mark.parametrize("n", [1, 7, 10, 11, 20, 21, 64])
def test_palette_is_distinct_and_never_black(n):
  colours = plot_style.palette(n)
  assert len(colours) == n
  rgb = {mcolors.to_rgb(c) for c in colours}
  assert len(rgb) == n
  assert (0.0, 0.0, 0.0) not in rgb


def test_spread_keeps_labels_apart():
  ys = plot_style.spread([1.0, 1.01, 5.0, 1.02], gap=0.5)
  ordered = sorted(ys)
  assert all(b - a >= 0.5 - 1e-9 for a, b in zip(ordered, ordered[1:]))
  assert ys[2] == max(ys)  # order kept


def _comparison_results():
  """{method: [final record per seed]}, as launch/compare.py collects them."""
  rng = np.random.default_rng(0)
  out = {}
  for name, base in (("pep", 0.62), ("fedvpt", 0.5), ("promptfl", 0.52), ("local_only", 0.55)):
    out[name] = [{"pers_acc_mean": base + 0.2 + rng.normal(0, 0.01),
                  "pers_acc_worst10": base + rng.normal(0, 0.02),
                  "global_acc": base + 0.1 + rng.normal(0, 0.01), "zeroshot_acc": 0.6875,
                  "round": 15} for _ in range(3)]
  for record in out["local_only"]:
    del record["global_acc"]
  return out


def _bars(ax):
  """{method: [bar heights]} from the bar containers."""
  return {c.get_label(): [p.get_height() for p in c.patches] for c in ax.containers
          if hasattr(c, "patches")}


def test_comparison_bars_error_bars_dots_and_zero_shot_line():
  results = _comparison_results()
  keys = ("pers_acc_mean", "pers_acc_worst10", "global_acc")
  fig = plot_compare.comparison_figure(results, keys)
  try:
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "personalised\nmean", "personalised\nworst 10%", "global"]
    bars = _bars(ax)
    assert list(bars) == list(results)
    for name, heights in bars.items():
      for key, height in zip(keys, heights):
        values = [100 * r[key] for r in results[name] if key in r]
        assert height == pytest.approx(np.mean(values)) if values else math.isnan(height)
    # One colour per method, none shared.
    face = [mcolors.to_rgba(c.patches[0].get_facecolor()) for c in ax.containers
            if hasattr(c, "patches")]
    assert len(set(face)) == len(results)
    # Error bars are the seeds' population std.
    pep_err = [c for c in ax.containers if c.get_label() == "pep"][0].errorbar
    segments = pep_err.lines[2][0].get_segments()
    for key, seg in zip(keys, segments):
      values = [100 * r[key] for r in results["pep"]]
      assert seg[1][1] - seg[0][1] == pytest.approx(2 * np.std(values))
    # Each seed a dot at its own value: 3 seeds x (3 + 3 + 3 + 2) values.
    dots = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections
                           if isinstance(c, PathCollection)])
    expected = [100 * r[k] for runs in results.values() for k in keys for r in runs if k in r]
    assert sorted(dots) == pytest.approx(sorted(expected)) and len(dots) == 3 * 11
    # Zero-shot: one black dashed line, over the global group only (the only metric with a
    # zero-shot figure here), at 68.75%.
    lines = [l for l in ax.get_lines() if l.get_linestyle() not in ("None", "")]
    assert [l.get_label() for l in lines] == ["zero-shot CLIP"]
    assert lines[0].get_linestyle() == "--"
    ys = [y for y in lines[0].get_ydata() if not np.isnan(y)]
    xs = [x for x in lines[0].get_xdata() if not np.isnan(x)]
    assert ys == pytest.approx([68.75, 68.75]) and min(xs) > 1.5
  finally:
    plt.close(fig)


def test_comparison_with_a_zeroshot_run_draws_it_as_the_reference(tmp_path):
  keys = ("global_acc", "robust_acc/clean", f"robust_acc/{ATTACK}", "robust_acc/worst")
  results = {name: [{k: base - 0.05 * i for i, k in enumerate(keys)} for base in (b, b + 0.02)]
             for name, b in [(f"m{j}", 0.3 + 0.02 * j) for j in range(12)] + [("zeroshot", 0.6)]}
  path = plot_compare.save_comparison(results, str(tmp_path / "c" / "comparison.png"), keys)
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  fig = plot_compare.comparison_figure(results, keys)
  try:
    ax = fig.axes[0]
    bars = _bars(ax)
    assert "zeroshot" not in bars and len(bars) == 12
    face = {mcolors.to_rgba(c.patches[0].get_facecolor()) for c in ax.containers
            if hasattr(c, "patches")}
    assert len(face) == 12  # more methods than tab10's colours, still one each
    line, = [l for l in ax.get_lines() if l.get_linestyle() not in ("None", "")]
    ys = [y for y in line.get_ydata() if not np.isnan(y)]
    assert ys == pytest.approx([61 - 5 * i for i in range(4) for _ in range(2)])
    assert plot_compare.metric_label("robust_acc/worst") == "worst case"
  finally:
    plt.close(fig)
