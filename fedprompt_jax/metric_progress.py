"""The progress bar of a run: rounds done, ETA, the loss and the latest accuracies."""

from __future__ import annotations

import sys

import tqdm

from fedprompt_jax import metric_keys

MAX_POSTFIX_ACC_KEYS = 3


def _postfix_value(key: str, value: float) -> str:
  if metric_keys.is_acc_key(key):
    return f"{100.0 * value:.2f}%"
  return f"{value:.4g}"


class ProgressBar:
  """A tqdm bar over rounds on stderr, its postfix the loss and up to 3 accuracies.

  With `show=False` (non-chief hosts) it only counts rounds.
  """

  def __init__(self, total_rounds: int, start_round: int = 0, enable: bool = True,
               show: bool = True):
    """Starts the bar at `start_round` of `total_rounds`.

    Args:
      total_rounds: number of rounds of the whole run (the bar's total).
      start_round: rounds already completed (a resumed run).
      enable: draw the bar on stderr (only when stderr is a TTY).
      show: False: no bar at all, whatever `enable` says.
    """
    self.total_rounds = int(total_rounds)
    self.rounds_done = int(start_round)
    self._loss: float | None = None
    self._postfix: dict[str, str] = {}
    self._bar = None
    if show:
      self._bar = tqdm.tqdm(
          total=self.total_rounds, initial=self.rounds_done, desc="rounds", unit="round",
          file=sys.stderr, mininterval=1, dynamic_ncols=True,
          # None: tqdm disables itself when stderr is not a TTY.
          disable=None if enable else True)

  def show_metrics(self, numeric: dict) -> None:
    """Shows the first accuracy-like values of `numeric` (diagnostics aside) and its loss."""
    acc_keys = [k for k in numeric if metric_keys.is_acc_key(k)
                and not metric_keys.is_diagnostic(k)][:MAX_POSTFIX_ACC_KEYS]
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
      self._loss = float(metric_keys.to_python(loss))
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

  def close(self) -> None:
    """Closes the bar. Safe to call twice."""
    if self._bar is not None:
      self._bar.close()
      self._bar = None
