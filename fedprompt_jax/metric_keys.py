"""What a metric key means, and the plain values a record holds.

Records (metrics.jsonl) map metric keys to numbers: accuracy-like keys contain
"acc" and are fractions in [0, 1]; loss-like keys contain "loss"; keys under
`robust_sanity/` are diagnostics (the gradient-masking checks of
attacks/sanity.py), kept in metrics.jsonl and TensorBoard but shown by the
summary table only as `SUMMARY_DIAGNOSTICS`, and by the curves and the
progress bar not at all.
"""

from __future__ import annotations

import math
from typing import Any

DIAGNOSTIC_PREFIX = "robust_sanity/"
SUMMARY_DIAGNOSTICS = ("robust_sanity/large_radius_acc", "robust_sanity/warnings")
# robust_acc/worst@<norm>:eps=<eps>: the per-example worst case over one radius's attacks
# (attacks/spec.py `radius_groups`), beside robust_acc/worst over all of them.
WORST_AT = "worst@"


def is_diagnostic(key: str) -> bool:
  """True for the gradient-masking diagnostics (`robust_sanity/...`)."""
  return key.startswith(DIAGNOSTIC_PREFIX)


def is_acc_key(key: str) -> bool:
  """True for accuracy-like keys (containing "acc", any case)."""
  return "acc" in key.lower()


def is_loss_key(key: str) -> bool:
  """True for loss-like keys (containing "loss", any case)."""
  return "loss" in key.lower()


def is_number(value: Any) -> bool:
  """True for int and float values (NaN and inf included), not for bools."""
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
  """`is_number` and finite: the values a curve can draw."""
  return is_number(value) and math.isfinite(value)


def to_python(value: Any) -> Any:
  """Converts numpy / jax scalars to Python numbers; leaves other values alone."""
  if isinstance(value, (bool, int, float, str)) or value is None:
    return value
  if hasattr(value, "item") and getattr(value, "size", 1) == 1:
    return value.item()
  return value
