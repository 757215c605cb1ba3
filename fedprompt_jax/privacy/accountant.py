"""The privacy spent by R rounds of DP-FedAvg, from Google's `dp-accounting` (RDP).

The engine samples exactly K of the N clients each round, uniformly without
replacement (fed/sampling.py), so the round is a `SampledWithoutReplacementDpEvent`
(Wang, Balle and Kasiviswanathan, AISTATS 2019, Theorem 27), which `dp-accounting`'s
RDP accountant supports for the replace-one neighbouring relation: two federations are
neighbours when one client's data is replaced by anything (N is public). Under
replace-one the sum of updates clipped to norm `clip` moves by up to 2 * clip, so the
noise N(0, (z * clip)^2) is a Gaussian mechanism of noise multiplier z / 2 (the noise
std over the L2 sensitivity). A method that also releases statistics clipped to
`stats_clip` and noised with z * stats_clip (PEP's feature sums) releases two Gaussian
outputs of the same sample per round: a `ComposedDpEvent` of two such Gaussians inside
the sampling event (equivalently, one of multiplier z / (2 sqrt 2)).

Epsilon uses the RDP orders of `dp-accounting` and its RDP-to-(epsilon, delta)
conversion (`compute_epsilon`, Canonne, Kamath and Steinke 2020, Proposition 12).
"""

from __future__ import annotations

import dp_accounting
import numpy as np
from dp_accounting.rdp import rdp_privacy_accountant


def default_delta(num_clients: int) -> float:
  """1 / N^1.1: below 1/N, the chance of exposing one client outright, for every N > 1."""
  return 1.0 / float(num_clients) ** 1.1


def round_event(num_clients: int, clients_per_round: int, noise_multiplier: float,
                releases: int = 1) -> dp_accounting.DpEvent:
  """One round: K of N sampled without replacement, then `releases` Gaussian outputs.

  Args:
    num_clients: N.
    clients_per_round: K.
    noise_multiplier: z, the noise std over the clip of each released sum.
    releases: 1 (the shared deltas) or 2 (and the method's statistics).
  """
  gaussian = dp_accounting.GaussianDpEvent(noise_multiplier / 2.0)  # replace-one: 2 * clip
  inner = gaussian if releases == 1 else dp_accounting.ComposedDpEvent([gaussian] * releases)
  return dp_accounting.SampledWithoutReplacementDpEvent(num_clients, clients_per_round, inner)


class Accountant:
  """epsilon(R) at a fixed delta for R rounds of the same event (RDP adds over rounds)."""

  def __init__(self, event: dp_accounting.DpEvent | None, delta: float,
               neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE,
               orders=None):
    """`event`: one round; None for a round without noise (every epsilon is then inf)."""
    kwargs = {} if orders is None else {"orders": orders}
    accountant = rdp_privacy_accountant.RdpAccountant(
        neighboring_relation=neighboring_relation, **kwargs)
    if event is not None:
      accountant.compose(event)
    self.orders, self.rdp_per_round, self.delta = accountant.orders, accountant.rdp, delta
    if event is None:
      self.rdp_per_round = np.full_like(self.rdp_per_round, np.inf)

  def epsilon(self, rounds: int) -> float:
    """The epsilon spent by `rounds` rounds (0.0 for none, inf without noise)."""
    if rounds <= 0:
      return 0.0
    eps, _ = rdp_privacy_accountant.compute_epsilon(self.orders, rounds * self.rdp_per_round,
                                                    self.delta)
    return float(eps)

  def rounds_within(self, target_epsilon: float, max_rounds: int) -> int:
    """The most rounds r <= max_rounds with epsilon(r) <= target_epsilon (epsilon grows with r)."""
    low, high = 0, int(max_rounds)  # epsilon(low) <= target; find the largest such
    if self.epsilon(high) <= target_epsilon:
      return high
    while high - low > 1:
      mid = (low + high) // 2
      if self.epsilon(mid) <= target_epsilon:
        low = mid
      else:
        high = mid
    return low


def for_run(num_clients: int, clients_per_round: int, noise_multiplier: float, delta: float,
            releases: int = 1) -> Accountant:
  """The accountant of a run's rounds."""
  if noise_multiplier == 0:
    return Accountant(None, delta)
  return Accountant(round_event(num_clients, clients_per_round, noise_multiplier, releases),
                    delta)


def noise_for_epsilon(num_clients: int, clients_per_round: int, rounds: int,
                      target_epsilon: float, delta: float, releases: int = 1) -> float:
  """The smallest noise multiplier z (to 1e-3) whose `rounds` rounds spend <= target_epsilon.

  `dp_accounting.calibrate_dp_mechanism` (Brent's method over z) on the same event.
  """
  def event(z):
    return dp_accounting.SelfComposedDpEvent(
        round_event(num_clients, clients_per_round, z, releases), rounds)

  def fresh():
    return rdp_privacy_accountant.RdpAccountant(
        neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)

  z = dp_accounting.calibrate_dp_mechanism(
      fresh, event, target_epsilon, delta,
      dp_accounting.LowerEndpointAndGuess(0.05, 1.0), tol=1e-3)
  return float(z)


def classic_epsilon(accountant: Accountant, rounds: int) -> float:
  """epsilon by the original RDP conversion min_a (R * rdp(a) + log(1/delta) / (a - 1)).

  Looser than `Accountant.epsilon`; it is the conversion of the moments accountant of
  Abadi et al. (2016), kept to compare with published figures.
  """
  orders = np.asarray(accountant.orders, np.float64)
  eps = rounds * accountant.rdp_per_round - np.log(accountant.delta) / (orders - 1)
  return float(np.min(eps))
