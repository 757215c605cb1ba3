"""Orbax checkpoints of a run (server state, per-client state, round), trusted only when intact.

The frozen CLIP is never saved (it is reloaded from its directory). RNG needs no
state: every key and client sample derives from (config.seed, round), so a
restored run replays exactly.

A save completes before `save` returns (orbax writes under a temporary name and
renames the step folder when complete) and is then sealed with a manifest,
`<step>/fedprompt_manifest.json`: the size and SHA-256 of every file of the step,
written atomically after each file was fsync'ed. A checkpoint is trusted when
  1. its manifest matches the files (one without a manifest, written before
     manifests existed or killed between orbax's rename and the seal, must hold
     orbax's metadata files instead), and
  2. it restores completely into the run's tree, and every value is finite.
`restore_newest_intact` walks the checkpoints from the newest, moves each damaged
one to `<workdir>/ckpt_damaged/` (orbax would refuse to save its round again) and
restores the newest intact one. With none intact it changes nothing and raises.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from typing import Any, NamedTuple

import jax
import orbax.checkpoint as ocp

from fedprompt_jax import atomic
from fedprompt_jax.finite import nonfinite_leaves

Tree = Any
CKPT_DIR = "ckpt"
DAMAGED_DIR = "ckpt_damaged"
MANIFEST = "fedprompt_manifest.json"
# What orbax leaves in a complete step folder (StandardSave, item "default").
_ORBAX_FILES = ("_CHECKPOINT_METADATA", "default/_METADATA", "default/manifest.ocdbt")


@contextlib.contextmanager
def _orbax_quiet():
  """Mutes orbax's log lines while it reads step folders: it logs a warning or error for each
  damaged one, and this module reports damage itself, in one line per checkpoint."""
  logger = logging.getLogger("absl")
  level = logger.level
  logger.setLevel(logging.CRITICAL)
  try:
    yield
  finally:
    logger.setLevel(level)


class DamagedCheckpointsError(RuntimeError):
  """Every checkpoint of a workdir is damaged; the message is one line."""


class Damaged(NamedTuple):
  round: int
  reason: str
  moved_to: str | None  # where it was set aside, or None if left in place


class Restored(NamedTuple):
  round: int
  tree: Tree
  damaged: list[Damaged]  # newer checkpoints that were passed over


def _digest(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
    os.fsync(f.fileno())
  return h.hexdigest()


def _files(step_dir: str) -> list[str]:
  out = []
  for root, _, names in os.walk(step_dir):
    out += [os.path.relpath(os.path.join(root, n), step_dir) for n in names]
  return sorted(f for f in out if f != MANIFEST)


def seal(step_dir: str) -> None:
  """fsyncs every file and folder of a complete step, then writes its manifest atomically."""
  files = {rel: {"size": os.path.getsize(os.path.join(step_dir, rel)),
                 "sha256": _digest(os.path.join(step_dir, rel))} for rel in _files(step_dir)}
  for root, _, _ in os.walk(step_dir):
    atomic.fsync_dir(root)
  atomic.write_text(os.path.join(step_dir, MANIFEST),
                    json.dumps({"files": files}, indent=1, sort_keys=True))


def inspect_step(step_dir: str) -> str | None:
  """Why a step folder cannot be trusted, from its files alone; None if it may be restored."""
  if not os.listdir(step_dir):
    return "its folder is empty"
  path = os.path.join(step_dir, MANIFEST)
  if not os.path.exists(path):
    missing = [f for f in _ORBAX_FILES if not os.path.isfile(os.path.join(step_dir, f))]
    return f"{missing[0]} is missing" if missing else None
  try:
    with open(path, encoding="utf-8") as f:
      files = json.load(f)["files"]
    expected = {str(rel): (int(v["size"]), str(v["sha256"])) for rel, v in files.items()}
  except (OSError, ValueError, KeyError, TypeError, AttributeError):
    return f"its {MANIFEST} is unreadable"
  for rel, (size, sha) in sorted(expected.items()):
    full = os.path.join(step_dir, rel)
    if not os.path.isfile(full):
      return f"{rel} is missing"
    if os.path.getsize(full) != size:
      return f"{rel} has {os.path.getsize(full)} bytes, {size} were written"
    if _digest(full) != sha:
      return f"{rel} differs from what was written"
  return None


def step_rounds(workdir: str) -> list[int]:
  """Rounds of the step folders in `<workdir>/ckpt`, newest first (no orbax, nothing created)."""
  directory = os.path.join(workdir, CKPT_DIR)
  if not os.path.isdir(directory):
    return []
  return sorted((int(n) for n in os.listdir(directory)
                 if n.isdigit() and os.path.isdir(os.path.join(directory, n))), reverse=True)


def newest_intact_at(workdir: str, round_index: int) -> bool:
  """True when the newest step folder is round `round_index` and intact (no checkpoint at all:
  only for round 0, a run that trained nothing)."""
  rounds = step_rounds(workdir)
  if not rounds:
    return round_index == 0
  return rounds[0] == round_index and inspect_step(
      os.path.join(workdir, CKPT_DIR, str(rounds[0]))) is None


def _damage_summary(damaged: list[tuple[int, str]]) -> str:
  return ", ".join(f"round {r} ({why})" for r, why in damaged)


def check_not_all_damaged(workdir: str) -> None:
  """Raises DamagedCheckpointsError, before any work, if checkpoints exist and all are damaged."""
  rounds = step_rounds(workdir)
  directory = os.path.join(workdir, CKPT_DIR)
  damaged = [(r, inspect_step(os.path.join(directory, str(r)))) for r in rounds]
  if rounds and all(why for _, why in damaged):
    raise all_damaged_error(directory, damaged)


def all_damaged_error(directory: str, damaged: list[tuple[int, str]]) -> DamagedCheckpointsError:
  return DamagedCheckpointsError(
      f"every checkpoint in {directory} is damaged: {_damage_summary(damaged)}; nothing was "
      f"changed; to start over, move {directory} and the metrics.jsonl beside it away")


class Checkpointer:
  """Saves and restores {"server": ServerState, "personal": tree} by round."""

  def __init__(self, workdir: str, max_to_keep: int = 2, create: bool = True):
    self.workdir = os.path.abspath(workdir)
    self.directory = os.path.join(self.workdir, CKPT_DIR)
    with _orbax_quiet():
      self._manager = ocp.CheckpointManager(
          self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                                               create=create))

  def latest_round(self) -> int | None:
    return self._manager.latest_step()

  def step_dir(self, round_index: int) -> str:
    return os.path.join(self.directory, str(round_index))

  def save(self, round_index: int, state: Tree) -> None:
    """Writes the step, waits until it is complete, and seals it (chief process)."""
    self._manager.save(round_index, args=ocp.args.StandardSave(state))
    self._manager.wait_until_finished()
    if jax.process_index() == 0:
      seal(self.step_dir(round_index))

  def restore(self, round_index: int, like: Tree) -> Tree:
    """Restores into the structure (and shardings) of `like`."""
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like)
    return self._manager.restore(round_index, args=ocp.args.StandardRestore(abstract))

  def _try_restore(self, round_index: int, like: Tree) -> tuple[Tree | None, str | None]:
    why = inspect_step(self.step_dir(round_index))
    if why is not None:
      return None, why
    try:
      with _orbax_quiet():
        tree = self.restore(round_index, like)
    except Exception as e:  # pylint: disable=broad-except  (orbax/tensorstore raise many kinds)
      text = " ".join(str(e).split())
      return None, f"it does not restore: {type(e).__name__}: {text[:160]}"
    bad = nonfinite_leaves(tree)
    if bad:
      return None, f"it holds non-finite values in {bad[0]}"
    return tree, None

  def set_aside(self, round_index: int) -> str:
    """Moves a step folder to <workdir>/ckpt_damaged/<round>[-k]; returns where."""
    target_dir = os.path.join(self.workdir, DAMAGED_DIR)
    os.makedirs(target_dir, exist_ok=True)
    target, k = os.path.join(target_dir, str(round_index)), 1
    while os.path.exists(target):
      k += 1
      target = os.path.join(target_dir, f"{round_index}-{k}")
    shutil.move(self.step_dir(round_index), target)
    atomic.fsync_dir(self.directory)
    return target

  def restore_newest_intact(self, like: Tree, set_aside: bool = True) -> Restored | None:
    """The newest checkpoint that is intact, or None if there is none at all.

    Damaged newer ones are moved to ckpt_damaged/ when `set_aside` (chief process
    only) and listed in the result. Raises DamagedCheckpointsError, changing
    nothing, if every checkpoint is damaged.
    """
    damaged = []
    for round_index in sorted(self._manager.all_steps(), reverse=True):
      tree, why = self._try_restore(round_index, like)
      if tree is not None:
        break
      damaged.append((round_index, why))
    else:
      if damaged:
        raise all_damaged_error(self.directory, damaged)
      return None
    moved = [Damaged(r, why, self.set_aside(r) if set_aside and jax.process_index() == 0
                     else None) for r, why in damaged]
    if moved:
      with _orbax_quiet():
        self._manager.reload()
    return Restored(round_index, tree, moved)

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
