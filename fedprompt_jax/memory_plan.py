"""A run's memory plan: what it keeps resident and the peak of each phase, known before any work.

Each phase (a training round, a clean evaluation batch, an attack batch, ...) is
one jitted function. Lowering and compiling it at the run's shapes costs compile
time only, and XLA's compiled memory analysis then gives its working memory:
temporaries (every activation that the backward passes keep, at once), outputs
and arguments. The compiled executable is the one the run calls later (JAX caches
it), so planning does not compile twice.

What the plan counts, in bytes of one memory: the trees that stay resident (the
frozen CLIP, the prompt parameters with the server optimizer state, the method's
constants, per-client state and, on CPU, the data on the host and the interpreter
with its libraries, measured before loading) plus the largest phase's working
memory (temporaries + outputs + the arguments that are not among the resident
trees). On CPU every device's buffers live in host memory, so replicated trees and
a sharded round count once per device; on an accelerator the plan is one device's
memory, and host items are shown but not counted. Not counted: compiled code,
memory the compiler and the allocator keep after compiling (on CPU the process's
resident size after the plan's compiles is shown beside the plan), scratch space
of library kernels outside XLA's buffers, and transient copies while a checkpoint
is read.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Sequence

import jax

Tree = Any
GB = 1e9


@dataclasses.dataclass(frozen=True)
class Phase:
  """One jitted step of the run at the batch it compiles for.

  Attributes:
    name: what it is ("train round", "robust evaluation", ...).
    batch_key: the config key that sets its batch ("adv.eval_batch_size").
    batch_value: that key's value now.
    batch: the batch it compiles for (at most batch_value: fewer examples than a batch are
      padded only to the next power of two).
    shape: that batch in words ("8 images x 2 attacks").
    bytes: its working memory (all devices that run it at once), or None where the
      backend gives no compiled memory analysis.
  """
  name: str
  batch_key: str
  batch_value: int
  batch: int
  shape: str
  bytes: int | None


def tree_bytes(tree: Tree) -> int:
  """Bytes of every array leaf of `tree` (one copy: an addressable shard, or the host array)."""
  total = 0
  for leaf in jax.tree_util.tree_leaves(tree):
    if isinstance(leaf, jax.Array) and not leaf.is_fully_replicated:
      total += sum(s.data.nbytes for s in leaf.addressable_shards[:1])
    elif hasattr(leaf, "nbytes"):
      total += int(leaf.nbytes)
  return total


def compiled_bytes(fn: Callable, args: Sequence[Any], resident: int) -> int | None:
  """Working memory of jitted `fn` on one device at `args` (lowered and compiled, not run).

  Args:
    fn: a `jax.jit` function.
    args: its arguments (arrays or jax.ShapeDtypeStruct; only shapes and placement count).
    resident: bytes of its arguments that the plan already counts as resident.

  Returns:
    temporaries + outputs - outputs that alias donated arguments + arguments beyond
    `resident`, per device; None when the backend has no memory analysis.
  """
  stats = fn.lower(*args).compile().memory_analysis()
  if stats is None:
    return None
  arguments = max(0, int(stats.argument_size_in_bytes) - resident)
  return (int(stats.temp_size_in_bytes) + int(stats.output_size_in_bytes)
          - int(stats.alias_size_in_bytes) + arguments)


def host_memory_bytes() -> int:
  """Physical memory of this host."""
  return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def resident_set_bytes() -> int | None:
  """This process's resident memory now (Linux /proc), or None."""
  try:
    with open("/proc/self/statm") as f:
      return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
  except (OSError, ValueError, IndexError):
    return None


def default_budget(device=None) -> tuple[int, str]:
  """(bytes, where from): the device's memory limit, or the host's memory on CPU."""
  device = device or jax.local_devices()[0]
  if device.platform != "cpu":
    try:
      stats = device.memory_stats() or {}
    except Exception:  # pylint: disable=broad-except  (backends without memory_stats)
      stats = {}
    if stats.get("bytes_limit"):
      return int(stats["bytes_limit"]), f"{device.platform} device memory"
  return host_memory_bytes(), "host memory"


@dataclasses.dataclass(frozen=True)
class Plan:
  """The plan: resident trees and phases, in the bytes of one budget.

  Attributes:
    backend: "cpu", "gpu", "tpu".
    devices: local devices that run the round.
    resident: (name, bytes counted, note) of what stays in memory during the run.
    phases: the phases, each with its working memory.
    budget: bytes allowed; budget_source: where that figure comes from.
    host_only: (name, bytes) shown but not counted (host items on an accelerator run).
    resident_after: the process's resident memory measured after the plan's compiles
      (shown, not counted), or None.
  """
  backend: str
  devices: int
  resident: tuple[tuple[str, int, str], ...]
  phases: tuple[Phase, ...]
  budget: int
  budget_source: str
  host_only: tuple[tuple[str, int], ...] = ()
  resident_after: int | None = None

  @property
  def resident_bytes(self) -> int:
    return sum(b for _, b, _ in self.resident)

  @property
  def largest(self) -> Phase | None:
    known = [p for p in self.phases if p.bytes is not None]
    return max(known, key=lambda p: p.bytes) if known else None

  @property
  def peak(self) -> int:
    """Resident trees + the largest phase's working memory."""
    largest = self.largest
    return self.resident_bytes + (largest.bytes if largest else 0)

  def table(self) -> str:
    """The plan as a short table (GB), ending with the planned peak against the budget."""
    where = (f"{self.devices} CPU device(s) in host memory" if self.backend == "cpu"
             else f"one {self.backend} device")
    lines = [f"memory plan ({where}; XLA compiled memory analysis):"]
    for name, size, note in self.resident:
      lines.append(f"  {name:<34} {size / GB:8.3f} GB  {note}".rstrip())
    for name, size in self.host_only:
      lines.append(f"  {name:<34} {size / GB:8.3f} GB  host, not counted")
    lines.append("  peak working memory by phase:")
    for p in self.phases:
      size = "not available on this backend" if p.bytes is None else f"{p.bytes / GB:8.3f} GB"
      lines.append(f"    {p.name:<32} {size}  {p.shape} ({p.batch_key}={p.batch_value})")
    largest = self.largest
    what = f" + {largest.name}" if largest else ""
    lines.append(f"  planned peak: {self.peak / GB:.2f} GB (resident{what}) of "
                 f"memory_budget_gb={self.budget / GB:.3g} ({self.budget_source})")
    if self.resident_after is not None:
      lines.append(f"  measured: the process holds {self.resident_after / GB:.2f} GB after these "
                   "compiles (resident trees, compiled code, allocator caches)")
    return "\n".join(lines)

  def problem(self) -> str | None:
    """One line when the planned peak exceeds the budget, naming the batch keys to lower."""
    if self.peak <= self.budget:
      return None
    head = (f"memory plan {self.peak / GB:.2f} GB exceeds memory_budget_gb="
            f"{self.budget / GB:.3g} ({self.budget_source})")
    room = self.budget - self.resident_bytes
    if room <= 0:
      return (f"{head}: the resident trees alone take {self.resident_bytes / GB:.2f} GB; "
              "a smaller model, fewer clients or less data is needed")
    over = [p for p in self.phases if p.bytes is not None and p.bytes > room]
    advice, seen = [], set()
    for p in sorted(over, key=lambda p: -p.bytes):
      if p.batch_key in seen:
        continue
      seen.add(p.batch_key)
      fits = _fitting_batch(p.batch, p.bytes, room)
      hint = (f"about {fits} fits" if fits else "even 1 may not fit: try clip.remat=True or "
              "clip.dtype=bfloat16")
      advice.append(f"lower {p.batch_key} (now {p.batch_value}; {p.name} at {p.batch} "
                    f"takes {p.bytes / GB:.2f} GB, {hint})")
    return f"{head}; " + "; ".join(advice)


def _fitting_batch(batch: int, size: int, room: int) -> int | None:
  """The largest power of two below `batch` whose share of `size` (taken as proportional to
  the batch) fits in `room`; None if not even 1 does."""
  if size / batch > room:
    return None
  fits = 1
  while fits * 2 < batch and size * (fits * 2) / batch <= room:
    fits *= 2
  return fits
