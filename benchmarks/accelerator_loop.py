"""The references of benchmarks/accelerator.py: a jitted client-by-client loop, and step FLOPs.

Shapes: K clients, S local steps, B batch.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from fedprompt_jax.fed import server
from fedprompt_jax.fed.client import ClientBatches, make_local_update
from fedprompt_jax.fed.round import RoundInputs, client_key

Tree = Any


def _client(inputs: RoundInputs, i: int):
  """Client i's slices of the round's inputs: (batches [S, B, ...], personal, client)."""
  take = lambda tree: jax.tree_util.tree_map(lambda x: x[i], tree)
  return ClientBatches(*take(tuple(inputs.batches))), take(inputs.personal), take(inputs.client)


def local_step_flops(frozen: Tree, v, inputs: RoundInputs) -> float:
  """XLA's FLOPs of one client's local update on `inputs` (K = 1, S = 1), from its lowered HLO.

  Lowered, not compiled: `cost_analysis` of the HLO counts a loop body once, which at S = 1
  is the whole update (the step's forward and backward, the optimizer, client statistics).
  """
  batches, personal, client = _client(inputs, 0)
  update = jax.jit(make_local_update(v.method, v.client_tx))
  state = v.method.init_extra(v.aux)
  cost = update.lower(frozen, v.shared, personal, state, v.aux, client, batches,
                      jax.random.key(0)).cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  if not cost or "flops" not in cost:
    raise RuntimeError("XLA gave no cost analysis of the local update")
  return float(cost["flops"])


class ClientLoop:
  """The round's clients one by one: its jitted local update per client, then one jitted
  weighted mean, server step and method server update (what the round does after its psum).

  The local update is compiled once (any K); `prepare(inputs, k)` slices the K real
  clients' inputs on device, outside the timed part, and returns run() (which blocks).
  """

  def __init__(self, frozen: Tree, v):
    self.v, self.frozen = v, frozen
    self.update = jax.jit(make_local_update(v.method, v.client_tx))
    method, server_tx = v.method, v.server_tx

    @jax.jit
    def aggregate(deltas, stats, weights, shared, opt_state, extra):
      stack = lambda trees: jax.tree_util.tree_map(lambda *x: jnp.stack(x), *trees)
      total = server.weighted_sum(weights, stack(deltas))
      mean = jax.tree_util.tree_map(lambda x: x / weights.sum(), total)
      shared, opt_state = server.server_step(server_tx, shared, opt_state, mean)
      stats_sum = server.weighted_sum(jnp.ones_like(weights), stack(stats))
      return shared, opt_state, method.server_update(extra, stats_sum)
    self.aggregate = aggregate

  def prepare(self, inputs: RoundInputs, k: int) -> Callable[[], None]:
    clients = [_client(inputs, i) for i in range(k)]
    keys = [client_key(jax.random.key(1), jnp.int32(0), jnp.int32(i)) for i in range(k)]
    weights = jnp.ones((k,), jnp.float32)
    v = self.v
    state = [v.shared, v.server_tx.init(v.shared), v.method.init_extra(v.aux)]

    def run():
      shared, _, extra = state
      results = [self.update(self.frozen, shared, personal, extra, v.aux, client, b, key)
                 for (b, personal, client), key in zip(clients, keys)]
      state[:] = self.aggregate([r.delta for r in results], [r.stats for r in results],
                                weights, *state)
      jax.block_until_ready(state)
    for _ in range(2):  # compiles; the second at the state types an aggregate returns
      run()
    return run
