"""Gradient-masking sanity checks of a robust evaluation: pure functions of example counts.

The checks the robustness literature uses to catch broken evaluations (Athalye et
al. 2018; Carlini et al. 2019, "On evaluating adversarial robustness"), run on
every robust evaluation and reported as `robust_sanity/...` metrics:

* Large radius: an extra attack with a large budget (`adv.sanity_attack`, default
  PGD-20 at 16/255 L-inf) on the first `adv.sanity_examples` examples must drive
  robust accuracy to near 0; warns above `LARGE_RADIUS_LIMIT` (10%).
* Monotonicity: robust accuracy must not rise with attack strength. Two attacks
  are comparable when they are the same attack (function, norm, loss and every
  other option) except eps and steps; the one with eps >= and steps >= (FGSM: 1
  step), and not both equal, is the stronger. The large-radius attack is also
  compared with every configured attack of the same norm and a strictly smaller
  eps, whatever its kind, on the same examples. Warns when the stronger attack
  leaves more than `TOLERANCE` (1) example more robust than the weaker: random
  starts differ between attacks, so a one-example inversion can be chance.
* Loss rise: the mean cross-entropy of the label at each attack's x_adv must be
  above its mean at the clean x by more than `LOSS_RISE_MIN` (1e-4 nats, far above
  float32 noise: an attack whose gradient is zero moves nothing, yet the logits of
  the unchanged x_adv may differ from the clean ones in the last bits); attacks
  with eps = 0 are skipped.

Each warning is one line on stderr starting with `WARNING_PREFIX`.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Mapping

from fedprompt_jax.attacks.spec import Attack

PREFIX = "robust_sanity/"
WARNING_PREFIX = "warning: gradient-masking check: "
LARGE_RADIUS_LIMIT = 0.10
TOLERANCE = 1  # examples
LOSS_RISE_MIN = 1e-4  # nats


@dataclasses.dataclass(frozen=True)
class Totals:
  """Sums over the first `n` evaluated examples.

  Attributes:
    n: examples evaluated.
    correct: examples correct clean ("clean") and robust to each attack (its result name).
    ce: summed cross-entropy of the label at x ("clean") and at each attack's x_adv.
  """
  n: int
  correct: Mapping[str, int]
  ce: Mapping[str, float]

  def acc(self, name: str) -> float:
    return self.correct[name] / max(self.n, 1)

  def mean_ce(self, name: str) -> float:
    return self.ce[name] / max(self.n, 1)


@dataclasses.dataclass(frozen=True)
class LargeRadius:
  """The large-radius attack's evaluation and the configured attacks' on the same examples.

  Attributes:
    attack: the large-radius attack.
    name: its result name in `totals`.
    totals: its evaluation ("clean" and `name`).
    subset: the configured attacks' totals on the same (first) examples.
  """
  attack: Attack
  name: str
  totals: Totals
  subset: Totals


def _option(attack: Attack, key: str, default=None):
  return dict(attack.options).get(key, default)


def _kind(attack: Attack) -> tuple:
  return attack.function, tuple(kv for kv in attack.options if kv[0] not in ("eps", "steps"))


def stronger(a: Attack, b: Attack) -> bool:
  """True when `a` is `b` with eps >= and steps >= (FGSM: 1 step), not both equal."""
  if _kind(a) != _kind(b):
    return False
  ea, sa = _option(a, "eps"), _option(a, "steps", 1)
  eb, sb = _option(b, "eps"), _option(b, "steps", 1)
  return ea >= eb and sa >= sb and (ea, sa) != (eb, sb)


def _fraction(totals: Totals, name: str) -> str:
  return f"{100 * totals.acc(name):.1f}% ({totals.correct[name]}/{totals.n})"


def monotonicity(attacks: Mapping[str, Attack], totals: Totals) -> tuple[int, list[str]]:
  """(pairs compared, warnings) over every (weaker, stronger) pair of `attacks` (name -> attack)."""
  pairs, warnings = 0, []
  for weak_name, weak in attacks.items():
    for strong_name, strong in attacks.items():
      if not stronger(strong, weak):
        continue
      pairs += 1
      if totals.correct[strong_name] > totals.correct[weak_name] + TOLERANCE:
        warnings.append(
            f"robust accuracy rises with attack strength: {strong_name} leaves "
            f"{_fraction(totals, strong_name)} robust, the weaker {weak_name} "
            f"{_fraction(totals, weak_name)}")
  return pairs, warnings


def large_radius(attacks: Mapping[str, Attack], large: LargeRadius
                 ) -> tuple[list[str], int, list[str]]:
  """(accuracy warnings, pairs compared, monotonicity warnings) of the large-radius attack."""
  warnings, inverted = [], []
  if large.totals.acc(large.name) > LARGE_RADIUS_LIMIT:
    warnings.append(
        f"the large-radius attack {large.name} leaves {_fraction(large.totals, large.name)} "
        f"robust, above {100 * LARGE_RADIUS_LIMIT:.0f}%: the attacks may not reach the "
        "model's gradient (gradient masking)")
  pairs = 0
  norm, eps = _option(large.attack, "norm"), _option(large.attack, "eps")
  for name, attack in attacks.items():
    if _option(attack, "norm") != norm or _option(attack, "eps") >= eps:
      continue
    pairs += 1
    if large.totals.correct[large.name] > large.subset.correct[name] + TOLERANCE:
      inverted.append(
          f"robust accuracy rises with attack strength: the large-radius attack {large.name} "
          f"leaves {_fraction(large.totals, large.name)} robust, the weaker {name} "
          f"{_fraction(large.subset, name)} on the same examples")
  return warnings, pairs, inverted


def loss_rise(attacks: Mapping[str, Attack], totals: Totals, label: Mapping[str, str] | None = None
              ) -> tuple[dict[str, float], list[str]]:
  """({metric name: mean CE at x_adv - mean CE at x}, warnings) for each attack with eps > 0."""
  rises, warnings = {}, []
  for name, attack in attacks.items():
    if not _option(attack, "eps"):
      continue
    key = (label or {}).get(name, name)
    clean, adv = totals.mean_ce("clean"), totals.mean_ce(name)
    rises[f"{PREFIX}ce_rise/{key}"] = adv - clean
    if not adv - clean > LOSS_RISE_MIN:
      warnings.append(
          f"{name} does not raise the loss: mean cross-entropy {adv:.6f} at x_adv, {clean:.6f} "
          f"at the clean x ({totals.n} examples)")
  return rises, warnings


def check(attacks: Mapping[str, Attack], totals: Totals,
          large: LargeRadius | None = None) -> tuple[dict[str, float], list[str]]:
  """All checks: (metrics `robust_sanity/...`, warnings without `WARNING_PREFIX`).

  Args:
    attacks: the configured attacks by result name (`spec.result_names`).
    totals: their evaluation ("clean" and every name of `attacks`).
    large: the large-radius evaluation, or None when it is disabled.

  Returns:
    metrics: `large_radius_acc` (with `large`), `ce_rise/<name>` per attack
    (`ce_rise/large_radius` for the large-radius attack), `monotonicity_pairs`
    and `monotonicity_violations` (pairs compared, pairs inverted) and `warnings`
    (their total count), all prefixed with `PREFIX`.
  """
  metrics, warnings = loss_rise(attacks, totals)
  pairs, inverted = monotonicity(attacks, totals)
  if large is not None:
    metrics[f"{PREFIX}large_radius_acc"] = large.totals.acc(large.name)
    rises, failed = loss_rise({large.name: large.attack}, large.totals,
                              {large.name: "large_radius"})
    metrics.update(rises)
    warnings += failed
    failed, more_pairs, more_inverted = large_radius(attacks, large)
    warnings += failed
    pairs += more_pairs
    inverted += more_inverted
  warnings += inverted
  metrics[f"{PREFIX}monotonicity_pairs"] = pairs
  metrics[f"{PREFIX}monotonicity_violations"] = len(inverted)
  metrics[f"{PREFIX}warnings"] = len(warnings)
  return metrics, warnings


def warn(warnings: list[str], file=None) -> None:
  """Prints each warning as one line, prefixed with `WARNING_PREFIX` (stderr by default)."""
  for warning in warnings:
    print(WARNING_PREFIX + " ".join(warning.split()), file=file or sys.stderr, flush=True)
