"""The durable record of a run's evaluations: metrics.jsonl and TensorBoard scalars.

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
import os
import time

from fedprompt_jax import atomic
from fedprompt_jax import metric_keys

METRICS_FILE = "metrics.jsonl"


def metrics_path(path_or_workdir: str) -> str:
  """`<workdir>/metrics.jsonl` for a directory, else the path itself."""
  if os.path.isdir(path_or_workdir):
    return os.path.join(path_or_workdir, METRICS_FILE)
  return path_or_workdir


def read_metrics(path_or_workdir: str) -> list[dict]:
  """Reads all records of a metrics.jsonl file (or of `<workdir>/metrics.jsonl`).

  A missing file gives []. Blank lines and lines that are not a JSON object
  (e.g. a last line cut short by a kill) are skipped.
  """
  path = metrics_path(path_or_workdir)
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


class RecordWriter:
  """Appends evaluation records to metrics.jsonl and their numbers to TensorBoard.

  Only the chief process (`is_chief=True`) touches the workdir; the others
  accept the same calls and write nothing.
  """

  def __init__(self, workdir: str, start_round: int = 0, is_chief: bool = True):
    """Opens (fresh or resumed) metrics.jsonl and a TensorBoard writer.

    Args:
      workdir: the run's directory; created if missing.
      start_round: rounds already completed, i.e. the round of the checkpoint
        resumed from. 0 starts a fresh metrics.jsonl (an existing one is
        truncated); r > 0 keeps only the records with "round" <= r.
      is_chief: False on non-chief hosts: nothing is written.
    """
    if start_round < 0:
      raise ValueError(f"start_round must be >= 0, got {start_round}")
    self.workdir = workdir
    self.path = os.path.join(workdir, METRICS_FILE)
    self.start_round = int(start_round)
    self.is_chief = bool(is_chief)
    self._file = None
    self._tb = None
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

  def _truncate_after(self, start_round: int) -> None:
    """Atomically rewrites metrics.jsonl with only the records of rounds <= start_round."""
    kept = [r for r in read_metrics(self.path)
            if metric_keys.is_number(r.get("round")) and r["round"] <= start_round]
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

  def write(self, round_index: int, metrics: dict) -> dict:
    """Appends one record {"round": round_index, **metrics}; returns its numbers.

    The line is flushed and fsync'ed before returning, so it is on disk before the
    checkpoint of the same round is written (train.py writes the record first): after a
    crash metrics.jsonl holds at least the rounds of the newest checkpoint, and resume drops
    any it holds beyond. Numeric values go to
    TensorBoard (tag = key, step = round_index).

    Returns:
      {key: value} of the record's numeric values but "round", sorted by key
      (on every process, chief or not).
    """
    if self._closed:
      raise RuntimeError("MetricsWriter is closed")
    metrics = {str(k): metric_keys.to_python(v) for k, v in metrics.items()}
    if "round" in metrics and metrics["round"] != round_index:
      raise ValueError(f"metrics['round']={metrics['round']} != round_index={round_index}")
    record = {**metrics, "round": int(round_index)}
    numeric = {k: v for k, v in sorted(metrics.items())
               if k != "round" and metric_keys.is_number(v)}
    if not self.is_chief:
      return numeric
    self._file.write(json.dumps(record, sort_keys=True) + "\n")
    self._sync()
    if self._tb is not None:
      for key, value in numeric.items():
        self._tb.add_scalar(key, value, global_step=int(round_index))
      self._tb.flush()
    return numeric

  def records(self) -> list[dict]:
    """All records currently in metrics.jsonl."""
    return read_metrics(self.path)

  def close(self) -> None:
    """Closes the TensorBoard writer and the file. Safe to call twice."""
    if self._closed:
      return
    self._closed = True
    if self._tb is not None:
      self._tb.close()
    if self._file is not None:
      self._file.close()
