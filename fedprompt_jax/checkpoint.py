"""Orbax checkpoints of a run: server state, per-client state, round.

The frozen CLIP is never saved (it is reloaded from its directory). RNG needs no
state: every key and client sample derives from (config.seed, round), so a
restored run replays exactly. Saves are atomic (orbax finalises a step only
when it is complete), so a run killed mid-save resumes from the previous one.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

Tree = Any


class Checkpointer:
  """Saves and restores {"server": ServerState, "personal": tree} by round."""

  def __init__(self, workdir: str, max_to_keep: int = 2):
    self.directory = os.path.join(os.path.abspath(workdir), "ckpt")
    self._manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                                             create=True))

  def latest_round(self) -> int | None:
    return self._manager.latest_step()

  def save(self, round_index: int, state: Tree) -> None:
    self._manager.save(round_index, args=ocp.args.StandardSave(state))

  def restore(self, round_index: int, like: Tree) -> Tree:
    """Restores into the structure (and shardings) of `like`."""
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like)
    return self._manager.restore(round_index, args=ocp.args.StandardRestore(abstract))

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
