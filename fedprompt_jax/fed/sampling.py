"""Which clients take part in a federated round.

Shape legend: N clients in all, K clients per round.
"""

from __future__ import annotations

import numpy as np


def _check_int(name: str, value: object, low: int) -> None:
  if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
    raise ValueError(f"{name}={value!r} must be an int >= {low}")


def sample_clients(num_clients: int, clients_per_round: int, seed: int,
                   round_index: int) -> np.ndarray:
  """Draws the clients of one round, uniformly without replacement.

  The draw depends only on (seed, round_index), through
  `np.random.default_rng((seed, round_index))`, so any round can be replayed
  alone. `Generator.choice` uses Floyd's algorithm with a hash set (O(K) time
  and memory) when K <= N / 50 or N <= 10,000, else a partial shuffle of
  arange(N) (O(N) int64 memory, 0.8 MB at N = 100,000).

  Args:
    num_clients: N >= 1.
    clients_per_round: K, 1 <= K <= N.
    seed: non-negative int.
    round_index: non-negative int.

  Returns:
    [K] int64 distinct client ids in [0, N), ascending.
  """
  _check_int("fed.num_clients", num_clients, 1)
  _check_int("fed.clients_per_round", clients_per_round, 1)
  _check_int("seed", seed, 0)
  _check_int("round_index", round_index, 0)
  if clients_per_round > num_clients:
    raise ValueError(
        f"fed.clients_per_round={clients_per_round} exceeds fed.num_clients={num_clients}")
  rng = np.random.default_rng((int(seed), int(round_index)))
  chosen = rng.choice(int(num_clients), size=int(clients_per_round), replace=False)
  return np.sort(chosen).astype(np.int64)


def all_clients(num_clients: int) -> np.ndarray:
  """[N] int64 ids 0..N-1: every client takes part (full participation)."""
  _check_int("fed.num_clients", num_clients, 1)
  return np.arange(num_clients, dtype=np.int64)
