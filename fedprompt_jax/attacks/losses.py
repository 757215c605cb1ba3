"""Per-example attack objectives (to be maximised) and the TRADES KL term.

Every function maps logits [B, C] (and labels [B]) to one value per example [B],
so a caller sums them before `jax.grad` and keeps the per-example values for
AutoPGD's step-size control. Shapes: B batch, C classes.

Small numbers of classes (the class count is static, so these are plain Python
branches):

* Untargeted DLR (Croce & Hein 2020) divides the margin by z_pi1 - z_pi3, the
  gap between the largest and the 3rd-largest logit. With C >= 3 it is exactly
  AutoAttack's. With C = 2 there is no 3rd logit and the only shift- and
  scale-invariant normaliser left, |z_1 - z_2|, makes the loss a constant +-1
  with zero gradient; we therefore use the CW margin max_{j!=y} z_j - z_y.
* Targeted DLR divides -(z_y - z_t) by z_pi1 - (z_pi3 + z_pi4) / 2. With C >= 4
  it is exactly AutoAttack's; with C = 3 the missing 4th logit is replaced by
  the 3rd (denominator z_pi1 - z_pi3, the untargeted DLR's); with C = 2 it is
  the unnormalised targeted margin z_t - z_y.
* Targets picked by rank (`pick_target`) are the rank-th most likely class
  other than y, with the rank clipped to C - 1 (with C = 2 the target is always
  the other class).
* C = 1 is rejected (there is nothing to attack) with one ValueError, "attacks
  need at least 2 classes", by `objective` (which every attack evaluates, so
  FGSM, PGD and APGD with any loss, custom ones included, fail alike) and by
  the helpers that need a second class.
"""

from __future__ import annotations

from typing import Callable, Union

import jax
import jax.numpy as jnp

Array = jax.Array
# A custom objective: (logits [B, C], labels [B]) -> [B], to be maximised.
LossFn = Callable[[Array, Array], Array]
Loss = Union[str, LossFn]

LOSSES = ("ce", "cw", "dlr", "kl")
_TINY = 1e-12


def check_classes(logits: Array) -> int:
  """C from logits [..., C]; a one-line ValueError when C < 2 (nothing to attack)."""
  num = logits.shape[-1]
  if num < 2:
    raise ValueError(f"logits with {num} class; attacks need at least 2 classes")
  return num


def _label_logit(logits: Array, labels: Array) -> Array:
  """z_y: [B, C], [B] -> [B]."""
  return jnp.take_along_axis(logits, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]


def _max_other(logits: Array, labels: Array) -> Array:
  """max_{j != y} z_j: [B, C], [B] -> [B]."""
  onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=bool)
  return jnp.max(jnp.where(onehot, -jnp.inf, logits), axis=-1)


def _top(logits: Array, k: int) -> Array:
  """The k largest logits, descending: [B, C] -> [B, k]."""
  return jax.lax.top_k(logits, k)[0]


def cross_entropy(logits: Array, labels: Array) -> Array:
  """Softmax cross-entropy, [B, C], [B] -> [B]."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return -_label_logit(logp, labels)


def cw_margin(logits: Array, labels: Array) -> Array:
  """Carlini-Wagner margin max_{j!=y} z_j - z_y (> 0 iff misclassified): [B, C], [B] -> [B]."""
  check_classes(logits)
  return _max_other(logits, labels) - _label_logit(logits, labels)


def dlr(logits: Array, labels: Array) -> Array:
  """Untargeted difference-of-logits ratio, AutoAttack's for C >= 3, the CW margin for C = 2.

  -(z_y - max_{j!=y} z_j) / (z_pi1 - z_pi3 + 1e-12): [B, C], [B] -> [B].
  """
  if check_classes(logits) == 2:
    return cw_margin(logits, labels)
  top = _top(logits, 3)
  return cw_margin(logits, labels) / (top[:, 0] - top[:, 2] + _TINY)


def targeted_ce(logits: Array, target: Array) -> Array:
  """-CE(logits, target) (AutoAttack's 'ce-targeted'): [B, C], [B] -> [B]."""
  return -cross_entropy(logits, target)


def targeted_cw(logits: Array, target: Array) -> Array:
  """z_t - max_{j!=t} z_j (> 0 iff the target is predicted): [B, C], [B] -> [B]."""
  return -cw_margin(logits, target)


def targeted_dlr(logits: Array, labels: Array, target: Array) -> Array:
  """Targeted DLR: AutoAttack's for C >= 4; see the module docstring for C = 2, 3.

  -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12): [B, C], [B], [B] -> [B].
  """
  num = check_classes(logits)
  margin = _label_logit(logits, target) - _label_logit(logits, labels)
  if num == 2:
    return margin
  top = _top(logits, min(num, 4))
  low = top[:, 2] if num == 3 else 0.5 * (top[:, 2] + top[:, 3])
  return margin / (top[:, 0] - low + _TINY)


def trades_kl(logits_clean: Array, logits_adv: Array) -> Array:
  """KL(p_clean || p_adv) per example, as in TRADES: [B, C], [B, C] -> [B].

  Gradients flow into both arguments; wrap `logits_clean` in
  `jax.lax.stop_gradient` for the inner maximisation.
  """
  logp_clean = jax.nn.log_softmax(logits_clean.astype(jnp.float32), axis=-1)
  logp_adv = jax.nn.log_softmax(logits_adv.astype(jnp.float32), axis=-1)
  return jnp.sum(jnp.exp(logp_clean) * (logp_clean - logp_adv), axis=-1)


def pick_target(logits: Array, labels: Array, rank: int = 1) -> Array:
  """The rank-th most likely class other than y (rank clipped to C - 1): [B, C], [B] -> [B] int32.

  rank = 1 is AutoAttack's `target_class=2` on correctly classified examples.
  """
  num = check_classes(logits)
  if rank < 1:
    raise ValueError(f"target rank {rank}; valid: an integer >= 1")
  rank = min(rank, num - 1)
  onehot = jax.nn.one_hot(labels, num, dtype=bool)
  masked = jnp.where(onehot, -jnp.inf, logits)
  return jax.lax.top_k(masked, rank)[1][:, rank - 1].astype(jnp.int32)


def objective(loss: Loss, logits: Array, labels: Array, *, targeted: bool = False,
              target: Array | None = None, clean_logits: Array | None = None) -> Array:
  """The per-example value an attack maximises: [B, C] -> [B].

  Args:
    loss: "ce", "cw", "dlr", "kl" (TRADES: KL(p_clean || p_adv); needs
      `clean_logits`, ignores labels and `targeted`) or a callable
      (logits [B, C], labels [B]) -> [B] to maximise (called with the target as
      labels when `targeted`).
    logits: [B, C] at the current point.
    labels: [B] true labels.
    targeted: maximise the targeted version (towards `target`).
    target: [B] int target classes (needed when `targeted`).
    clean_logits: [B, C] logits at the clean input (for "kl").

  Raises:
    ValueError: C < 2 (for every loss: with one class CE and KL are constant and
      an attack would report full robustness).
  """
  check_classes(logits)
  if callable(loss):
    return loss(logits, target if targeted else labels)
  if loss == "kl":
    if clean_logits is None:
      raise ValueError("loss 'kl' needs the clean logits")
    return trades_kl(clean_logits, logits)
  if loss not in ("ce", "cw", "dlr"):
    raise ValueError(f"unknown loss {loss!r}; valid: {', '.join(LOSSES)} or a callable")
  if not targeted:
    return {"ce": cross_entropy, "cw": cw_margin, "dlr": dlr}[loss](logits, labels)
  if target is None:
    raise ValueError("a targeted objective needs target classes")
  if loss == "dlr":
    return targeted_dlr(logits, labels, target)
  return {"ce": targeted_ce, "cw": targeted_cw}[loss](logits, target)
