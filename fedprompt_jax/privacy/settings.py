"""The `dp` config section (defaults in config.py): its validation, and what the round reads.

  dp.enabled           client-level DP-FedAvg on (False: none of the keys below is used).
  dp.clip              L2 bound of each client's shared delta (all shared leaves together).
  dp.noise_multiplier  z: the noise std on the sum of clipped deltas is z * dp.clip.
  dp.delta             delta of the reported (epsilon, delta); None = 1 / N^1.1.
  dp.target_epsilon    stop before the round that would spend more; None = no budget.
  dp.stats_clip        L2 bound of each client's method statistics (PEP's per-class
                       feature sums and counts), noised with z * dp.stats_clip; None = such
                       methods are refused with DP on.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import ml_collections

from fedprompt_jax import config as config_lib


class DPSpec(NamedTuple):
  """What the round needs (static: part of the jitted function)."""
  clip: float
  noise_multiplier: float
  expected_clients: int         # K, the divisor of the noised sum
  stats_clip: float | None      # None: the method releases no statistics


def delta(c: ml_collections.ConfigDict) -> float:
  return c.dp.delta if c.dp.delta is not None else 1.0 / float(c.fed.num_clients) ** 1.1


def releases(c: ml_collections.ConfigDict) -> int:
  """Gaussian outputs per round: the shared deltas, and the method's statistics if any."""
  from fedprompt_jax.methods import base  # pylint: disable=g-import-not-at-top
  return 2 if c.method.name in base.RELEASED_STATS else 1


def spec(c: ml_collections.ConfigDict) -> DPSpec | None:
  if not c.dp.enabled:
    return None
  stats_clip = c.dp.stats_clip if releases(c) == 2 else None
  return DPSpec(float(c.dp.clip), float(c.dp.noise_multiplier), int(c.fed.clients_per_round),
                None if stats_clip is None else float(stats_clip))


def accountant(c: ml_collections.ConfigDict):
  """The run's accountant (privacy/accountant.py); None with DP off."""
  if not c.dp.enabled:
    return None
  from fedprompt_jax.privacy import accountant as accountant_lib  # pylint: disable=g-import-not-at-top
  return accountant_lib.for_run(c.fed.num_clients, c.fed.clients_per_round,
                                c.dp.noise_multiplier, delta(c), releases(c))


def _number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _fail(key: str, value, valid: str):
  raise config_lib.ConfigError(f"{key}={value!r} is invalid; {valid}")


def validate(c: ml_collections.ConfigDict) -> None:
  """Raises ConfigError (one line) for a bad `dp` value or a release DP would not cover."""
  d = c.dp
  if not isinstance(d.enabled, bool):
    _fail("dp.enabled", d.enabled, "valid: True, False")
  if not (_number(d.clip) and d.clip > 0):
    _fail("dp.clip", d.clip, "must be a number > 0 (inf: no clipping, only with "
          "dp.noise_multiplier=0)")
  if not (_number(d.noise_multiplier) and 0 <= d.noise_multiplier < math.inf):
    _fail("dp.noise_multiplier", d.noise_multiplier, "must be a finite number >= 0")
  if d.delta is not None and not (_number(d.delta) and 0 < d.delta < 1):
    _fail("dp.delta", d.delta, "must be in (0, 1), or None for 1/fed.num_clients^1.1")
  if d.target_epsilon is not None and not (_number(d.target_epsilon) and d.target_epsilon > 0):
    _fail("dp.target_epsilon", d.target_epsilon, "must be a number > 0, or None for no budget")
  if d.stats_clip is not None and not (_number(d.stats_clip) and d.stats_clip > 0):
    _fail("dp.stats_clip", d.stats_clip, "must be a number > 0, or None")
  if not d.enabled:
    return
  from fedprompt_jax.methods import base  # pylint: disable=g-import-not-at-top
  leak = base.RELEASED_STATS.get(c.method.name)
  if leak and d.stats_clip is None:
    _fail("method.name", c.method.name, f"with dp.enabled=True it would release its {leak} "
          "without noise; set dp.stats_clip (> 0) to clip and noise them too, or dp.enabled=False")
  if c.fed.weighting != "uniform":
    _fail("fed.weighting", c.fed.weighting, "with dp.enabled=True it must be 'uniform' (weights "
          "by example count would let one client's weight, and its influence, grow unbounded)")
  for key, bound in (("dp.clip", d.clip), ("dp.stats_clip", d.stats_clip if leak else None)):
    if bound == math.inf and d.noise_multiplier > 0:
      _fail(key, bound, "gives infinite noise with dp.noise_multiplier > 0; use a finite bound")
  if d.target_epsilon is not None:
    first = accountant(c).epsilon(1)
    if first > d.target_epsilon:
      raise config_lib.ConfigError(
          f"dp.target_epsilon={d.target_epsilon!r} is already exceeded by round 1 (epsilon "
          f"{first:.3g} at delta {delta(c):.3g} with dp.noise_multiplier={d.noise_multiplier!r}, "
          f"fed.clients_per_round={c.fed.clients_per_round} of fed.num_clients="
          f"{c.fed.num_clients}); raise it or dp.noise_multiplier")
