"""Server side: the weighted mean of client deltas and the server optimizer step.

FedAvg is SGD with learning rate 1 on the pseudo-gradient -mean(delta);
FedAdam and FedYogi (Reddi et al., 2021) use the same pseudo-gradient.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

Tree = Any
SERVER_OPTIMIZERS = ("fedavg", "fedadam", "fedyogi")


def make_server_optimizer(name: str, lr: float = 1.0, b1: float = 0.9, b2: float = 0.99,
                          eps: float = 1e-3) -> optax.GradientTransformation:
  if name == "fedavg":
    return optax.sgd(lr)
  if name == "fedadam":
    return optax.adam(lr, b1=b1, b2=b2, eps=eps)
  if name == "fedyogi":
    return optax.yogi(lr, b1=b1, b2=b2, eps=eps)
  raise ValueError(f"fed.server_optimizer={name!r} is unknown; valid: {', '.join(SERVER_OPTIMIZERS)}")


def weighted_sum(weights: jax.Array, tree: Tree) -> Tree:
  """sum_k w_k x_k over the leading axis: weights [K], leaves [K, ...] -> [...]."""
  return jax.tree_util.tree_map(
      lambda x: jnp.tensordot(weights.astype(x.dtype), x, axes=(0, 0)), tree)


def server_step(tx: optax.GradientTransformation, shared: Tree, opt_state: Tree,
                mean_delta: Tree) -> tuple[Tree, Tree]:
  """Applies the server optimizer to the pseudo-gradient -mean_delta."""
  pseudo_grad = jax.tree_util.tree_map(jnp.negative, mean_delta)
  updates, opt_state = tx.update(pseudo_grad, opt_state, shared)
  return optax.apply_updates(shared, updates), opt_state
