"""Round inputs built ahead on a background thread while the device runs the current round.

A round's batches, masks, weights and ids depend only on (seed, round, partition), never on
the training state, so `build(r)` (host assembly and device_put with the round's sharding)
for round r+1 can run while round r computes. At most `depth` results are built ahead of
the one the loop last took, which bounds the input copies held on the devices.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterable

MAX_DEPTH = 2


def dispatch_ahead(depth: int, has_personal: bool) -> int:
  """Rounds the loop dispatches before reading the previous one back: 1 with prefetch,
  0 without, or when clients keep personal leaves (the next round needs them on the host)."""
  return 1 if depth and not has_personal else 0


def inputs_held_ahead(depth: int, has_personal: bool) -> int:
  """Rounds of inputs on the devices besides the running round's: built + dispatched ahead."""
  return depth + dispatch_ahead(depth, has_personal)


class Prefetcher:
  """`build(item)` for each item in order, up to `depth` ahead on one daemon thread.

  `next()` returns the next result in order, re-raising on the caller's thread any
  exception `build` raised. `depth=0` builds on the caller's thread inside `next()`
  (no thread at all). Use as a context manager (or call `close()`), so that a loop
  that stops early also stops the thread.
  """

  def __init__(self, build: Callable[[Any], Any], items: Iterable[Any], depth: int):
    if not 0 <= depth <= MAX_DEPTH:
      raise ValueError(f"prefetch depth {depth} is not in 0..{MAX_DEPTH}")
    self._build, self._items = build, iter(items)
    self._thread = None
    if depth:
      self._ready: queue.Queue = queue.Queue()
      self._slots = threading.Semaphore(depth)  # results built but not yet taken
      self._stop = threading.Event()
      self._thread = threading.Thread(target=self._work, name="round-prefetch", daemon=True)
      self._thread.start()

  def _work(self) -> None:
    for item in self._items:
      self._slots.acquire()
      if self._stop.is_set():
        return
      try:
        result = (True, self._build(item))
      except BaseException as e:  # pylint: disable=broad-except  (re-raised by next())
        self._ready.put((False, e))
        return
      self._ready.put(result)
    self._ready.put((False, StopIteration()))

  def next(self) -> Any:
    """The next item's result (blocks until it is built); StopIteration after the last."""
    if self._thread is None:
      return self._build(next(self._items))
    ok, value = self._ready.get()
    if not ok:
      self._ready.put((False, value))  # every later call fails the same way
      raise value
    self._slots.release()
    return value

  def close(self) -> None:
    """Stops the thread after the build in progress, if any, and waits for it."""
    if self._thread is not None:
      self._stop.set()
      self._slots.release()  # wakes a thread waiting for a slot
      self._thread.join()
      self._thread = None

  def __enter__(self) -> Prefetcher:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()
