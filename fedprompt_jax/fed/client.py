"""One client's local update: S optimizer steps in one `lax.scan`, masked for padding.

Shapes: S local steps, B batch, H x W images, C classes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fedprompt_jax.data.transforms import Preprocess
from fedprompt_jax.methods.base import STATS_FROM, PromptMethod, merge_params, split_params

Tree = Any


class ClientBatches(NamedTuple):
  pixels: jax.Array  # [S, B, h, w, 3] uint8 as stored, or [S, B, F] float32 cached features
  labels: jax.Array  # [S, B] int32
  mask: jax.Array    # [S, B] bool; False for padding examples


class LocalResult(NamedTuple):
  delta: Tree        # shared leaves: final - initial
  personal: Tree     # personal leaves after training
  stats: Tree        # method.client_stats summed over the client's examples
  loss_sum: jax.Array  # sum of per-example training losses over valid examples
  count: jax.Array     # number of valid training examples seen


def make_local_update(method: PromptMethod, client_tx: optax.GradientTransformation,
                      preprocess: Preprocess | None = None):
  """Returns local_update(frozen, shared, personal, extra, aux, client, batches, key, lr_scale).

  `preprocess` (data/transforms.py; None = images as stored, scaled to [0, 1]) turns each
  step's stored images into the model's input: `preprocess.train` with the first half of the
  step's key (the augmentation key: a function of the round key, the client id and the step
  index only, since JAX's default partitionable threefry makes split(key, S)[i] the same for
  any S), and `preprocess` itself, never augmented, for the client statistics.

  The client optimizer starts fresh each round. `lr_scale` (optional; a scalar, e.g.
  the round's value of a schedule over rounds) multiplies every update, which for SGD
  (with momentum) and Adam is the same as multiplying the learning rate. A step
  whose batch is entirely padding changes nothing (parameters and optimizer state
  are kept). Adversarial training lives in the method's loss
  (methods/adversarial.py), not here. The client statistics are computed with the
  received params or the trained ones, as `method.stats_from` says. A method's
  `control_step` hook sees every step's proposed updates and mean batch loss, with a
  per-client state it carries across the steps (methods/base.py).
  """

  def masked_loss(params, frozen, aux, extra, client, pixels, labels, mask, key):
    losses = method.example_loss(frozen, params, aux, extra, client, pixels, labels, key)
    valid = mask.astype(jnp.float32)
    return jnp.sum(losses * valid) / jnp.maximum(valid.sum(), 1.0), jnp.sum(losses * valid)

  grad_fn = jax.value_and_grad(masked_loss, has_aux=True)

  preprocess = Preprocess() if preprocess is None else preprocess
  if method.stats_from not in STATS_FROM:
    raise ValueError(f"stats_from={method.stats_from!r} of method {method.name!r} is unknown; "
                     f"valid: {', '.join(STATS_FROM)}")

  def local_update(frozen, shared, personal, extra, aux, client, batches: ClientBatches,
                   key, lr_scale=None) -> LocalResult:
    params = received = merge_params(shared, personal)
    opt_state = client_tx.init(params)

    num_steps = batches.labels.shape[0]
    nonempty = batches.mask.any(axis=-1)  # [S]
    last = num_steps - 1 - jnp.argmax(nonempty[::-1])  # the last non-empty step

    def step(carry, inputs):
      params, opt_state, step_state, loss_sum, count = carry
      pixels, labels, mask, step_key, index = inputs
      # Second half: loss keys unchanged from earlier versions; the first half augments.
      augment_key, loss_key = jax.random.split(step_key)
      x = preprocess.train(pixels, augment_key)
      (batch_loss, batch_loss_sum), grads = grad_fn(params, frozen, aux, extra, client, x,
                                                    labels, mask, loss_key)
      updates, new_opt_state = client_tx.update(grads, opt_state, params)
      if lr_scale is not None:
        updates = jax.tree_util.tree_map(lambda u: u * jnp.asarray(lr_scale, u.dtype), updates)
      any_valid = mask.any()
      apply, new_step_state = any_valid, step_state
      if method.control_step is not None:
        updates, control, new_step_state = method.control_step(
            step_state, params, updates, batch_loss, index == last)
        apply = any_valid & control
      new_params = optax.apply_updates(params, updates)
      keep = lambda flag, new, old: jax.tree_util.tree_map(
          lambda n, o: jnp.where(flag, n, o), new, old)
      carry = (keep(apply, new_params, params), keep(apply, new_opt_state, opt_state),
               keep(any_valid, new_step_state, step_state),
               loss_sum + batch_loss_sum, count + mask.sum())
      return carry, None

    step_keys = jax.random.split(key, num_steps)
    zero = jnp.zeros((), jnp.float32)
    (params, _, _, loss_sum, count), _ = jax.lax.scan(
        step, (params, opt_state, method.init_step_state(params), zero,
               jnp.zeros((), jnp.int32)),
        (batches.pixels, batches.labels, batches.mask, step_keys,
         jnp.arange(num_steps, dtype=jnp.int32)))
    new_shared, new_personal = split_params(method, params)
    delta = jax.tree_util.tree_map(jnp.subtract, new_shared, shared)
    stats_params = received if method.stats_from == "received" else params
    stats = _client_stats(method, preprocess, frozen, stats_params, aux, extra, client, batches)
    return LocalResult(delta, new_personal, stats, loss_sum, count)

  return local_update


def _client_stats(method, preprocess: Preprocess, frozen, params, aux, extra, client,
                  batches: ClientBatches) -> Tree:
  """Sums method.client_stats with `params` over the local steps' batches (not augmented)."""

  def one(acc, inputs):
    pixels, labels, mask = inputs
    x = preprocess(pixels)
    stats = method.client_stats(frozen, params, aux, extra, client, x, labels, mask)
    return jax.tree_util.tree_map(jnp.add, acc, stats), None

  first = jax.eval_shape(lambda: method.client_stats(
      frozen, params, aux, extra, client, preprocess(batches.pixels[0]),
      batches.labels[0], batches.mask[0]))
  if not jax.tree_util.tree_leaves(first):
    return {}
  zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), first)
  total, _ = jax.lax.scan(one, zeros, (batches.pixels, batches.labels, batches.mask))
  return total
