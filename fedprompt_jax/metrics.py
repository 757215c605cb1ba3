"""Evaluation records of a run: metrics.jsonl, TensorBoard scalars and a progress bar.

A run's workdir holds `metrics.jsonl`, one JSON object per evaluation, e.g.
`{"round": 10, "test_acc": 0.8125, "train_loss": 0.41}`. Rounds count completed
federated rounds, so a checkpoint taken after round r resumes with
`start_round=r`: the records of rounds <= r are kept and any written after that
checkpoint are dropped, which makes a resumed run's metrics equal those of an
uninterrupted one. TensorBoard events written after the checkpoint are purged
the same way (`purge_step`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from typing import Any, Sequence

import tqdm

from fedprompt_jax import atomic

METRICS_FILE = "metrics.jsonl"

_MAX_POSTFIX_ACC_KEYS = 3
# Diagnostics (the gradient-masking checks of attacks/sanity.py) are in metrics.jsonl and
# TensorBoard; the summary table shows only these of them (without a best value), the
# curves and the progress bar none.
_DIAGNOSTIC_PREFIX = "robust_sanity/"
_SUMMARY_DIAGNOSTICS = ("robust_sanity/large_radius_acc", "robust_sanity/warnings")


def is_diagnostic(key: str) -> bool:
  return key.startswith(_DIAGNOSTIC_PREFIX)


def _is_acc_key(key: str) -> bool:
  return "acc" in key.lower()


def _is_loss_key(key: str) -> bool:
  return "loss" in key.lower()


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _to_python(value: Any) -> Any:
  """Converts numpy / jax scalars to Python numbers; leaves other values alone."""
  if isinstance(value, (bool, int, float, str)) or value is None:
    return value
  if hasattr(value, "item") and getattr(value, "size", 1) == 1:
    return value.item()
  return value


def _metrics_path(path_or_workdir: str) -> str:
  if os.path.isdir(path_or_workdir):
    return os.path.join(path_or_workdir, METRICS_FILE)
  return path_or_workdir


def read_metrics(path_or_workdir: str) -> list[dict]:
  """Reads all records of a metrics.jsonl file (or of `<workdir>/metrics.jsonl`).

  A missing file gives []. Blank lines and lines that are not a JSON object
  (e.g. a last line cut short by a kill) are skipped.
  """
  path = _metrics_path(path_or_workdir)
  if not os.path.exists(path):
    return []
  records = []
  with open(path, "r", encoding="utf-8") as f:
    for line in f:
      line = line.strip()
      if not line:
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        logging.warning("Skipping a malformed line of %s: %r", path, line[:80])
        continue
      if isinstance(record, dict):
        records.append(record)
  return records


def _format_value(key: str, value: Any) -> str:
  if not _is_number(value):
    return "-" if value is None else str(value)
  if _is_acc_key(key):
    return f"{100.0 * value:.2f}%"
  if isinstance(value, int):
    return str(value)
  if math.isfinite(value) and value != 0 and abs(value) < 1e-3:
    return f"{value:.4e}"
  return f"{value:.4f}"


def _postfix_value(key: str, value: float) -> str:
  if _is_acc_key(key):
    return f"{100.0 * value:.2f}%"
  return f"{value:.4g}"


class MetricsWriter:
  """Writes evaluation records to metrics.jsonl and TensorBoard, and drives a progress bar.

  Only the chief process (`is_chief=True`) touches the workdir or shows a bar;
  the others accept the same calls and do nothing.
  """

  def __init__(self, workdir: str, total_rounds: int, start_round: int = 0,
               enable_progress: bool = True, is_chief: bool = True):
    """Opens (fresh or resumed) metrics.jsonl, a TensorBoard writer and a bar.

    Args:
      workdir: the run's directory; created if missing.
      total_rounds: number of rounds of the whole run (the bar's total).
      start_round: rounds already completed, i.e. the round of the checkpoint
        resumed from. 0 starts a fresh metrics.jsonl (an existing one is
        truncated); r > 0 keeps only the records with "round" <= r.
      enable_progress: show a tqdm bar on stderr (only when stderr is a TTY).
      is_chief: False on non-chief hosts: nothing is written, no bar shown.
    """
    if start_round < 0:
      raise ValueError(f"start_round must be >= 0, got {start_round}")
    self.workdir = workdir
    self.path = os.path.join(workdir, METRICS_FILE)
    self.total_rounds = int(total_rounds)
    self.start_round = int(start_round)
    self.is_chief = bool(is_chief)
    self.rounds_done = self.start_round
    self._file = None
    self._tb = None
    self._bar = None
    self._loss: float | None = None
    self._postfix: dict[str, str] = {}
    self._closed = False
    if not self.is_chief:
      return

    os.makedirs(workdir, exist_ok=True)
    if self.start_round > 0:
      self._truncate_after(self.start_round)
      self._file = open(self.path, "a", encoding="utf-8")
    else:
      self._file = open(self.path, "w", encoding="utf-8")
      self._sync()
    self._tb = self._open_tensorboard()
    self._bar = tqdm.tqdm(
        total=self.total_rounds, initial=self.start_round, desc="rounds", unit="round",
        file=sys.stderr, mininterval=1, dynamic_ncols=True,
        # None: tqdm disables itself when stderr is not a TTY.
        disable=None if enable_progress else True)

  def _truncate_after(self, start_round: int) -> None:
    """Atomically rewrites metrics.jsonl with only the records of rounds <= start_round."""
    kept = [r for r in read_metrics(self.path)
            if _is_number(r.get("round")) and r["round"] <= start_round]
    tmp = self.path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      for record in kept:
        f.write(json.dumps(record, sort_keys=True) + "\n")
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, self.path)
    atomic.fsync_dir(self.workdir)

  def _open_tensorboard(self):
    try:
      import tensorboardX  # pylint: disable=g-import-not-at-top
    except ImportError:
      logging.warning("tensorboardX is not installed: no TensorBoard events are written.")
      return None
    # On resume, purge_step makes TensorBoard drop events of the rounds after the
    # checkpoint that an earlier, interrupted run may have written.
    purge_step = self.start_round + 1 if self.start_round > 0 else None
    # tensorboardX names event files by the second and host and opens them with
    # "wb": a unique suffix keeps a quick restart from overwriting the last file.
    suffix = f".{os.getpid()}.{time.time_ns() % 10**9:09d}"
    return tensorboardX.SummaryWriter(logdir=self.workdir, purge_step=purge_step,
                                      flush_secs=30, filename_suffix=suffix)

  def _sync(self) -> None:
    self._file.flush()
    os.fsync(self._file.fileno())

  def write(self, round_index: int, metrics: dict[str, float | int]) -> None:
    """Appends one record {"round": round_index, **metrics} and logs its numbers.

    The line is flushed and fsync'ed before returning, so it is on disk before the
    checkpoint of the same round is written (train.py writes the record first):
    after a crash metrics.jsonl holds at least the rounds of the newest checkpoint,
    and resume drops any it holds beyond. Numeric values go to
    TensorBoard (tag = key, step = round_index); accuracy-like values and the
    loss also show in the bar's postfix.
    """
    if self._closed:
      raise RuntimeError("MetricsWriter is closed")
    metrics = {str(k): _to_python(v) for k, v in metrics.items()}
    if "round" in metrics and metrics["round"] != round_index:
      raise ValueError(f"metrics['round']={metrics['round']} != round_index={round_index}")
    record = {**metrics, "round": int(round_index)}
    if not self.is_chief:
      return
    self._file.write(json.dumps(record, sort_keys=True) + "\n")
    self._sync()

    numeric = {k: v for k, v in sorted(metrics.items()) if k != "round" and _is_number(v)}
    if self._tb is not None:
      for key, value in numeric.items():
        self._tb.add_scalar(key, value, global_step=int(round_index))
      self._tb.flush()
    acc_keys = [k for k in numeric
                if _is_acc_key(k) and not is_diagnostic(k)][:_MAX_POSTFIX_ACC_KEYS]
    self._postfix = {k: _postfix_value(k, numeric[k]) for k in acc_keys}
    if "train_loss" in numeric:
      self._loss = float(numeric["train_loss"])
    self._refresh_postfix()

  def round_done(self, round_index: int, loss: float | None = None) -> None:
    """Marks rounds up to `round_index` (1-based, = rounds completed) as done.

    Advances the bar (never backwards) and shows `loss` with the latest
    accuracy-like metrics in its postfix.
    """
    if loss is not None:
      self._loss = float(_to_python(loss))
    delta = int(round_index) - self.rounds_done
    if delta > 0:
      self.rounds_done = int(round_index)
    if self._bar is None:
      return
    self._refresh_postfix(refresh=False)
    if delta > 0:
      self._bar.update(delta)

  def _refresh_postfix(self, refresh: bool = True) -> None:
    if self._bar is None:
      return
    parts = []
    if self._loss is not None:
      parts.append(f"loss={self._loss:.4g}")
    parts.extend(f"{k}={v}" for k, v in self._postfix.items())
    self._bar.set_postfix_str(", ".join(parts), refresh=refresh)

  def records(self) -> list[dict]:
    """All records currently in metrics.jsonl."""
    return read_metrics(self.path)

  def close(self) -> None:
    """Closes the bar, the TensorBoard writer and the file. Safe to call twice."""
    if self._closed:
      return
    self._closed = True
    if self._bar is not None:
      self._bar.close()
    if self._tb is not None:
      self._tb.close()
    if self._file is not None:
      self._file.close()

  def __enter__(self) -> MetricsWriter:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def summary_table(records: list[dict], keys: Sequence[str] | None = None) -> str:
  """A plain-text table of the final record (highest round), one row per metric.

  Accuracy-like keys (containing "acc") show as percentages with 2 decimals.
  The last column, the best value over all rounds (max for accuracies, min for
  losses, with its round), is for reference only and not used for selection.

  Args:
    records: metrics records, as from `read_metrics`.
    keys: metrics to show; None: every numeric key of any record except "round" and the
      diagnostics other than `_SUMMARY_DIAGNOSTICS`.
  """
  if not records:
    return "No evaluation records."
  final_index = max(range(len(records)), key=lambda i: (records[i].get("round", -1), i))
  final = records[final_index]
  if keys is None:
    keys = sorted({k for r in records for k, v in r.items() if k != "round" and _is_number(v)
                   and (not is_diagnostic(k) or k in _SUMMARY_DIAGNOSTICS)})

  rows = []
  for key in keys:
    value = _format_value(key, final.get(key))
    best = "-"
    series = [(r[key], r.get("round")) for r in records if _is_number(r.get(key))]
    series = [(v, rnd) for v, rnd in series if not (isinstance(v, float) and math.isnan(v))]
    if series and (_is_acc_key(key) or _is_loss_key(key)) and not is_diagnostic(key):
      pick = max if _is_acc_key(key) else min
      best_value, best_round = pick(series, key=lambda s: s[0])
      best = f"{_format_value(key, best_value)} @ round {best_round}"
    rows.append((key, value, best))

  header = ("metric", "final", "best over rounds (not used for selection)")
  widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]

  def line(row: Sequence[str]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()

  out = [f"Final results (round {final.get('round', '?')}, last of {len(records)} evaluations)",
         line(header), line(tuple("-" * w for w in widths))]
  out.extend(line(row) for row in rows)
  return "\n".join(out)
