"""The Gaussian mechanism of DP-FedAvg (McMahan et al., 2018), as jittable pieces of the round.

Each client's update (all its leaves together, one global L2 norm) is clipped to norm
`clip`; the server adds N(0, (z * clip)^2) to every coordinate of the sum of the clipped
updates, once per round, with a key drawn from the run's replicated round key (the same
noise on every device and process, and again when a round is replayed after a resume).

Shapes: K clients (leading axis of per-client trees).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

Tree = Any
# fold_in tag of the noise stream; client keys fold in the round and then a client id < N.
NOISE_STREAM = 0x7FFFFFFF


def client_norms(tree: Tree) -> jax.Array:
  """[K] global L2 norm of each client's slice of `tree` (leaves [K, ...]); zeros if empty."""
  leaves = jax.tree_util.tree_leaves(tree)
  if not leaves:
    return jnp.zeros((0,), jnp.float32)
  squares = [jnp.sum(jnp.square(x.astype(jnp.float32)).reshape(x.shape[0], -1), axis=1)
             for x in leaves]
  return jnp.sqrt(sum(squares))


def clip_per_client(tree: Tree, clip: float) -> tuple[Tree, jax.Array]:
  """Scales each client's slice of `tree` to global norm <= clip.

  Args:
    tree: leaves [K, ...].
    clip: the bound (> 0; inf leaves every slice unchanged).

  Returns:
    (clipped tree, [K] norms before clipping). Slices already within the bound are
    multiplied by exactly 1.
  """
  norms = client_norms(tree)
  if not jax.tree_util.tree_leaves(tree):
    return tree, norms
  scale = jnp.where(norms > clip, clip / jnp.maximum(norms, 1e-30), 1.0)

  def one(x):
    return x * scale.reshape((-1,) + (1,) * (x.ndim - 1)).astype(x.dtype)

  return jax.tree_util.tree_map(one, tree), norms


def noise_key(base_key: jax.Array, round_index: jax.Array) -> jax.Array:
  """The key of round `round_index`'s noise: a stream apart from every client's key."""
  return jax.random.fold_in(jax.random.fold_in(base_key, NOISE_STREAM), round_index)


def add_noise(key: jax.Array, tree: Tree, std: float) -> Tree:
  """tree + N(0, std^2) per coordinate; one key per leaf, split from `key` in leaf order."""
  leaves, treedef = jax.tree_util.tree_flatten(tree)
  if not leaves:
    return tree
  keys = jax.random.split(key, len(leaves))
  noisy = [x + std * jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)]
  return jax.tree_util.tree_unflatten(treedef, noisy)
