"""One federated round as one jitted function over client-stacked inputs.

Clients are a leading array axis K, sharded over the mesh axis 'clients'. Under
`shard_map` each device runs its K/D clients (all at once with `vmap`, or in
vmapped chunks with `lax.map(..., batch_size=chunk)` when activations do not
fit), and the aggregation sum_k w_k d_k / sum_k w_k is an explicit `psum` (an
all-reduce) over 'clients'. Padded clients carry weight 0 and all-False masks.

With client-level DP (`dp`, privacy/settings.py) each client's shared delta is
clipped to norm dp.clip inside its shard, the weights become uniform (1 for a real
client), and after the psum the server adds N(0, (z * clip)^2) noise drawn from the
replicated round key (privacy/mechanism.py), then divides by K, the clients sampled
per round: sum_k clip(d_k) / K + noise / K. Method statistics (PEP) get the same
treatment with dp.stats_clip, and are passed to `server_update` as noised sums.

Shapes: K clients this round (padded to a multiple of devices x chunk), S local
steps, B batch, C classes.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import PartitionSpec as P

from fedprompt_jax.data.transforms import Preprocess
from fedprompt_jax.fed import server
from fedprompt_jax.fed.client import ClientBatches, make_local_update
from fedprompt_jax.fed.mesh import AXIS
from fedprompt_jax.methods.base import PromptMethod
from fedprompt_jax.privacy import mechanism
from fedprompt_jax.privacy.settings import DPSpec

Tree = Any


class ServerState(NamedTuple):
  shared: Tree       # aggregated prompt leaves
  opt_state: Tree    # server optimizer state
  extra: Tree        # method's server-side state (e.g. prototypes)
  round: jax.Array   # int32 scalar: rounds done


class RoundInputs(NamedTuple):
  batches: ClientBatches  # leaves [K, S, B, ...] (images as stored: h x w, not the model's side)
  weights: jax.Array      # [K] float32 aggregation weights, 0 for padding
  client_ids: jax.Array   # [K] int32 global client ids (for per-client RNG)
  personal: Tree          # [K, ...] personal leaves of these clients ({} if none)
  client: Tree            # [K, ...] per-client constants ({} if none)


class RoundOutputs(NamedTuple):
  personal: Tree        # [K, ...] personal leaves after training
  client_loss: jax.Array  # [K] mean training loss of each client
  loss: jax.Array       # scalar: example-weighted mean training loss of the round
  delta_norm: jax.Array  # [K] L2 norm of each client's shared delta, before any clipping


def init_server_state(method: PromptMethod, server_tx: optax.GradientTransformation,
                      shared: Tree, aux: Tree) -> ServerState:
  return ServerState(shared, server_tx.init(shared), method.init_extra(aux),
                     jnp.zeros((), jnp.int32))


def client_key(base_key: jax.Array, round_index: jax.Array, client_id: jax.Array) -> jax.Array:
  """The key of one client in one round: independent of K, padding, order and sharding."""
  return jax.random.fold_in(jax.random.fold_in(base_key, round_index), client_id)


def make_round_fn(method: PromptMethod, client_tx: optax.GradientTransformation,
                  server_tx: optax.GradientTransformation, mesh, *, chunk: int | None = None,
                  donate: bool = True,
                  lr_schedule: Callable[[jax.Array], jax.Array] | None = None,
                  dp: DPSpec | None = None, preprocess: Preprocess | None = None):
  """Returns round_fn(frozen, state, aux, key, inputs) -> (state, RoundOutputs), jitted.

  `key` is a typed PRNG key or its raw `jax.random.key_data`.

  Args:
    method: the prompt method.
    client_tx: the clients' local optimizer (fresh state each round).
    server_tx: the server optimizer (see server.make_server_optimizer).
    mesh: a mesh with axis 'clients'; K must be divisible by its size.
    chunk: clients vmapped at once on a device; None = all of them (full vmap),
      1 = one at a time (a scan over clients).
    donate: donate the server state's buffers to the round.
    lr_schedule: round index (int32 scalar, 0-based) -> factor on the clients'
      learning rate in that round; None = constant.
    dp: client-level DP-FedAvg (clip, noise, K); None = off. With z = 0 and clip = inf
      the round equals the one without DP and with uniform weights, bit for bit.
    preprocess: stored images -> the model's input inside each local step (resize,
      training augmentation; data/transforms.py); None = images as stored.
  """
  local_update = make_local_update(method, client_tx, preprocess)

  def block(frozen, shared, extra, aux, key, round_index, batches, weights, client_ids,
            personal, client):
    lr_scale = None if lr_schedule is None else lr_schedule(round_index)

    def one(args):
      b, cid, pers, cl = args
      return local_update(frozen, shared, pers, extra, aux, cl,
                          b, client_key(key, round_index, cid), lr_scale)

    args = (batches, client_ids, personal, client)
    local_k = weights.shape[0]
    if chunk == 1:  # a plain scan over clients: no size-1 vmap around the local update
      res = jax.lax.map(one, args)
    elif chunk is None or chunk >= local_k:
      res = jax.vmap(one)(args)
    else:
      res = jax.lax.map(one, args, batch_size=chunk)
    real = (weights > 0).astype(jnp.float32)
    delta, stats, agg_weights = res.delta, res.stats, weights
    if dp is None:
      norms = mechanism.client_norms(delta)
    else:
      delta, norms = mechanism.clip_per_client(delta, dp.clip)
      agg_weights = real  # uniform: each client moves the sum by at most clip
      if jax.tree_util.tree_leaves(stats):
        if dp.stats_clip is None:
          raise ValueError(f"method {method.name!r} sends client statistics that DP would not "
                           "cover: give dp.stats_clip")
        stats, _ = mechanism.clip_per_client(stats, dp.stats_clip)
    delta_sum, weight_sum, stats_sum, loss_sum, count = jax.lax.psum(
        (server.weighted_sum(agg_weights, delta), agg_weights.sum(),
         server.weighted_sum(real, stats), jnp.sum(real * res.loss_sum),
         jnp.sum(real * res.count)), AXIS)
    client_loss = res.loss_sum / jnp.maximum(res.count, 1)
    if norms.shape[0] != local_k:  # no shared leaves (local-only training)
      norms = jnp.zeros((local_k,), jnp.float32)
    return delta_sum, weight_sum, stats_sum, loss_sum, count, res.personal, client_loss, norms

  rep, cl = P(), P(AXIS)
  sharded_block = jax.shard_map(
      block, mesh=mesh,
      in_specs=(rep, rep, rep, rep, rep, rep, cl, cl, cl, cl, cl),
      out_specs=(rep, rep, rep, rep, rep, cl, cl, cl),
      # The local update is written for one client and knows nothing of mesh axes; its scan
      # carries mix replicated (server) and per-client values, so varying-axis typing is off.
      # Nothing is differentiated through the psums.
      check_vma=False)

  def round_fn(frozen, state: ServerState, aux, key, inputs: RoundInputs):
    if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
      key = jax.random.wrap_key_data(key)  # raw uint32 key data (replicated across processes)
    (delta_sum, weight_sum, stats_sum, loss_sum, count, personal, client_loss,
     norms) = sharded_block(frozen, state.shared, state.extra, aux, key, state.round,
                            inputs.batches, inputs.weights, inputs.client_ids, inputs.personal,
                            inputs.client)
    if dp is None:
      mean_delta = jax.tree_util.tree_map(lambda d: d / jnp.maximum(weight_sum, 1e-12),
                                          delta_sum)
    else:
      if dp.noise_multiplier > 0:  # drawn from replicated values: the same on every device
        delta_key, stats_key = jax.random.split(mechanism.noise_key(key, state.round))
        delta_sum = mechanism.add_noise(delta_key, delta_sum, dp.noise_multiplier * dp.clip)
        if dp.stats_clip is not None:
          stats_sum = mechanism.add_noise(stats_key, stats_sum,
                                          dp.noise_multiplier * dp.stats_clip)
      # K as a runtime value: XLA would turn a division by a constant into a product with
      # its rounded reciprocal, which differs in the last bit from the division without DP.
      k = jax.lax.optimization_barrier(jnp.asarray(dp.expected_clients, jnp.float32))
      mean_delta = jax.tree_util.tree_map(lambda d: d / k, delta_sum)
    shared, opt_state = server.server_step(server_tx, state.shared, state.opt_state, mean_delta)
    extra = method.server_update(state.extra, stats_sum)
    new_state = ServerState(shared, opt_state, extra, state.round + 1)
    return new_state, RoundOutputs(personal, client_loss, loss_sum / jnp.maximum(count, 1),
                                   norms)

  return jax.jit(round_fn, donate_argnums=(1,) if donate else ())
