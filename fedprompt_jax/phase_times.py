"""Wall-clock seconds of a run's phases, reported as one stdout line per evaluation.

The figures are host wall time around calls whose results are read back (so device
work is included), and include each phase's first compile where the memory plan did
not already compile it.
"""

from __future__ import annotations

import contextlib
import time

import jax


class PhaseTimes:
  """Seconds per named phase, summed until `report` prints and clears them."""

  def __init__(self):
    self._seconds: dict[str, float] = {}
    self._counts: dict[str, int] = {}

  @contextlib.contextmanager
  def __call__(self, name: str):
    start = time.perf_counter()
    try:
      yield
    finally:
      self._seconds[name] = self._seconds.get(name, 0.0) + time.perf_counter() - start
      self._counts[name] = self._counts.get(name, 0) + 1

  def line(self, head: str) -> str:
    """`seconds (head): round 12.3 (5x), evaluation 4.5`: sums since the last report."""
    parts = [f"{name} {secs:.1f}" + (f" ({self._counts[name]}x)" if self._counts[name] > 1 else "")
             for name, secs in self._seconds.items()]
    return f"seconds ({head}): " + ", ".join(parts)

  def report(self, head: str) -> None:
    """Prints `line(head)` on process 0 (nothing if no phase ran) and starts again."""
    if self._seconds and jax.process_index() == 0:
      print(self.line(head), flush=True)
    self._seconds, self._counts = {}, {}
