"""Which leaves of a tree hold a NaN or an infinity (divergence, damaged checkpoints)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


@jax.jit
def _finite_flags(leaves: list[Any]) -> jax.Array:
  return jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])


def nonfinite_leaves(tree: Any) -> list[str]:
  """Key paths ('server.shared.prompt', ...) of the floating leaves that are not all finite."""
  flat = [(jax.tree_util.keystr(path, simple=True, separator="."), leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
          if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)]
  if not flat:
    return []
  flags = np.asarray(_finite_flags([leaf for _, leaf in flat]))
  return [name for (name, _), ok in zip(flat, flags) if not ok]


class DivergenceError(RuntimeError):
  """A round produced a non-finite loss or update; the message is one line."""


def check_round(round_index: int, loss: float, updates: dict[str, Any]) -> None:
  """Raises DivergenceError naming the round and the first non-finite metric.

  Args:
    round_index: the round just completed (1-based).
    loss: its mean training loss.
    updates: {name: tree} of what the round produced (the server state, the
      clients' personal state), checked leaf by leaf.
  """
  what = None
  if not np.isfinite(loss):
    what = f"train_loss is {loss}"
  else:
    for name, tree in updates.items():
      bad = nonfinite_leaves(tree)
      if bad:
        what = f"the update of {name}.{bad[0]} is not finite"
        break
  if what is not None:
    raise DivergenceError(f"round {round_index} diverged: {what}")
