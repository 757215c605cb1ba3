"""Which leaves of a tree hold a NaN or an infinity (divergence, damaged checkpoints)."""

from __future__ import annotations

from typing import Any, NamedTuple

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


class RoundCheck(NamedTuple):
  """What `check_round` reads of one round: device values, dispatched but not read back."""
  loss: jax.Array            # scalar mean training loss (replicated)
  flags: jax.Array | None    # [F] bool: floating leaf f of the updates is all finite
  names: tuple[str, ...]     # [F] 'server.shared.prompt', ...: the name of each flag


def start_check(loss: jax.Array, updates: dict[str, Any]) -> RoundCheck:
  """Dispatches the finiteness flags of a round's updates; reads nothing back (no sync).

  Args:
    loss: the round's mean training loss, a device scalar.
    updates: {name: tree} of what the round produced (the server state, the clients'
      personal state), checked leaf by leaf; computed before any later round may
      take (donate) these buffers.
  """
  flat = [(f"{name}.{jax.tree_util.keystr(path, simple=True, separator='.')}", leaf)
          for name, tree in updates.items()
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
          if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)]
  flags = _finite_flags([leaf for _, leaf in flat]) if flat else None
  return RoundCheck(loss, flags, tuple(name for name, _ in flat))


def _read(x: jax.Array) -> np.ndarray:
  """A replicated (or process-local) device value -> numpy, on every process."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    return np.asarray(x.addressable_data(0))
  return np.asarray(x)


def check_round(round_index: int, check: RoundCheck) -> float:
  """Reads `check` back (waits for its round) and returns the round's loss as a float.

  Raises DivergenceError naming the round and the first non-finite value: the loss,
  else the first leaf of the updates, in the order given to `start_check`.

  Args:
    round_index: the round checked (1-based).
    check: from `start_check`.
  """
  loss = float(_read(check.loss))
  what = None
  if not np.isfinite(loss):
    what = f"train_loss is {loss}"
  elif check.flags is not None:
    bad = [name for name, ok in zip(check.names, _read(check.flags)) if not ok]
    if bad:
      what = f"the update of {bad[0]} is not finite"
  if what is not None:
    raise DivergenceError(f"round {round_index} diverged: {what}")
  return loss
