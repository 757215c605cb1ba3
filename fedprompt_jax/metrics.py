"""Evaluation records of a run: one writer over metrics.jsonl, TensorBoard and a progress bar.

A facade over one module per concern, so that `from fedprompt_jax import metrics`
keeps giving everything it always did:

  metric_records.py   metrics.jsonl and TensorBoard (`RecordWriter`, `read_metrics`)
  metric_progress.py  the progress bar (`ProgressBar`)
  metric_summary.py   the final-results table (`summary_table`)
  metric_keys.py      what a key means (`is_diagnostic`, accuracy / loss keys)
"""

from __future__ import annotations

from fedprompt_jax.metric_keys import is_diagnostic  # noqa: F401  (re-exported)
from fedprompt_jax.metric_progress import ProgressBar
from fedprompt_jax.metric_records import METRICS_FILE, RecordWriter, read_metrics  # noqa: F401
from fedprompt_jax.metric_summary import summary_table  # noqa: F401  (re-exported)


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
    self._records = RecordWriter(workdir, start_round, is_chief)
    self._progress = ProgressBar(total_rounds, start_round, enable_progress, show=is_chief)
    self.workdir = workdir
    self.path = self._records.path
    self.total_rounds = int(total_rounds)
    self.start_round = int(start_round)
    self.is_chief = bool(is_chief)

  @property
  def rounds_done(self) -> int:
    """Rounds completed so far (never decreases)."""
    return self._progress.rounds_done

  def write(self, round_index: int, metrics: dict) -> None:
    """Appends one record {"round": round_index, **metrics} and logs its numbers.

    The line is flushed and fsync'ed before returning. Numeric values go to
    TensorBoard (tag = key, step = round_index); accuracy-like values and the
    loss also show in the bar's postfix.
    """
    numeric = self._records.write(round_index, metrics)
    if self.is_chief:
      self._progress.show_metrics(numeric)

  def round_done(self, round_index: int, loss: float | None = None) -> None:
    """Marks rounds up to `round_index` (1-based, = rounds completed) as done."""
    self._progress.round_done(round_index, loss)

  def records(self) -> list[dict]:
    """All records currently in metrics.jsonl."""
    return self._records.records()

  def close(self) -> None:
    """Closes the bar, the TensorBoard writer and the file. Safe to call twice."""
    self._progress.close()
    self._records.close()

  def __enter__(self) -> MetricsWriter:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()
