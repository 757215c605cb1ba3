"""AutoPGD (Croce & Hein 2020) as in AutoAttack's `APGDAttack`, jittable and vmappable.

Follows `autoattack/autopgd_base.py` (L-inf and L2):

* start: x + eps * t / ||t|| with t ~ U(-1, 1) (L-inf, so max |delta| = eps) or
  t ~ N(0, I) (L2, on the sphere), clipped to [0, 1];
* initial step size 2 * eps per example; momentum 0.75 from the second step on:
  z = P(x_k + eta * dir(g_k)), x_{k+1} = P(x_k + 0.75 (z - x_k) + 0.25 (x_k - x_{k-1}));
* checkpoints: the first after max(int(0.22 N), 1) steps, then windows shrinking
  by max(int(0.03 N), 1) down to max(int(0.06 N), 1) (`checkpoint_schedule`);
  at a checkpoint an example halves its step size and jumps back to its best
  point (and its gradient) when the loss rose in at most rho * window of the
  window's steps, or when its step size was not halved at the previous
  checkpoint and its best loss has not improved since (AutoAttack's conditions;
  the first window compares the first step's loss with 0, as AutoAttack does);
* restarts: an example fooled by an earlier restart keeps that adversarial point.

Differences, all needed for jit/vmap: every example runs every step and restart
(no early exit, no compaction of the batch), and an example never fooled gets
its highest-loss point rather than the clean image (AutoAttack returns x). A
targeted call attacks one target; AutoAttack's APGD-T loops over 9 target
ranks: list "apgd-t:...:target=r" for r = 1..9 in `spec.robust_accuracy`.
tests/test_attacks.py checks one run against a line-by-line NumPy port of
AutoAttack's `attack_single_run`.

Shapes: B batch, H x W images, C classes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fedprompt_jax.attacks.pgd import (LogitsFn, ascent_direction, bcast, check_norm, l2_norm,
                                       linf_norm, make_objective, project, sample, split_keys)

Array = jax.Array
APGD_LOSSES = ("ce", "cw", "dlr")
_MOMENTUM = 0.75
_TINY = 1e-12


def checkpoint_schedule(steps: int) -> tuple[np.ndarray, np.ndarray]:
  """AutoAttack's checkpoints: (is_checkpoint [steps] bool, window length [steps] float32).

  Step i (0-based) is a checkpoint when it closes a window; window[i] is that
  window's number of steps (0 elsewhere).
  """
  window_len = max(int(0.22 * steps), 1)
  min_len = max(int(0.06 * steps), 1)
  decrease = max(int(0.03 * steps), 1)
  is_check = np.zeros(steps, bool)
  window = np.zeros(steps, np.float32)
  count = 0
  for i in range(steps):
    count += 1
    if count == window_len:
      is_check[i], window[i] = True, window_len
      window_len = max(window_len - decrease, min_len)
      count = 0
  return is_check, window


def _start(key: Array, x: Array, eps, norm: str) -> Array:
  if norm == "linf":
    t = sample(key, x.shape, lambda k, s: jax.random.uniform(k, s, x.dtype, -1.0, 1.0))
    t = t / (linf_norm(t) + _TINY)
  else:
    t = sample(key, x.shape, lambda k, s: jax.random.normal(k, s, x.dtype))
    t = t / (l2_norm(t) + _TINY)
  return jnp.clip(x + eps * t, 0.0, 1.0)


def _single_run(value_grad, x, y, key, eps, steps: int, norm: str, rho):
  """One APGD run: returns (x_best [B..], loss_best [B], x_best_adv [B..], fooled [B])."""
  is_check, window = (jnp.asarray(a) for a in checkpoint_schedule(steps))
  x_adv = _start(key, x, eps, norm)
  loss0, logits0, grad = value_grad(x_adv)
  batch = x.shape[0]
  where = lambda m, a, b: jnp.where(bcast(m, a), a, b)
  init = dict(
      x_adv=x_adv, x_old=x_adv, grad=grad, x_best=x_adv, grad_best=grad, loss_best=loss0,
      x_best_adv=x_adv, acc=jnp.argmax(logits0, -1) == y,
      step=jnp.full((batch,), 2.0, x.dtype) * eps,
      prev_loss=jnp.zeros_like(loss0), n_up=jnp.zeros_like(loss0),
      loss_best_last=loss0, reduced_last=jnp.ones((batch,), bool))

  def body(i, c):
    a = jnp.where(i > 0, _MOMENTUM, 1.0)
    x_k, x_old = c["x_adv"], c["x_old"]
    step = bcast(c["step"], x)
    z = project(x_k + step * ascent_direction(c["grad"], norm), x, eps, norm)
    x_new = project(x_k + (z - x_k) * a + (x_k - x_old) * (1.0 - a), x, eps, norm)
    loss, logits, grad = value_grad(x_new)
    pred_ok = jnp.argmax(logits, -1) == y
    improved = loss > c["loss_best"]
    loss_best = jnp.where(improved, loss, c["loss_best"])
    x_best = where(improved, x_new, c["x_best"])
    grad_best = where(improved, grad, c["grad_best"])
    n_up = c["n_up"] + (loss > c["prev_loss"]).astype(loss.dtype)
    # Checkpoint: halve the step and restart from the best point where progress stalled.
    check = is_check[i]
    oscillating = n_up <= window[i] * rho
    no_progress = ~c["reduced_last"] & (c["loss_best_last"] >= loss_best)
    reduce = check & (oscillating | no_progress)
    return dict(
        x_adv=where(reduce, x_best, x_new), x_old=x_k, grad=where(reduce, grad_best, grad),
        x_best=x_best, grad_best=grad_best, loss_best=loss_best,
        x_best_adv=where(~pred_ok, x_new, c["x_best_adv"]), acc=c["acc"] & pred_ok,
        step=jnp.where(reduce, c["step"] / 2.0, c["step"]), prev_loss=loss,
        n_up=jnp.where(check, 0.0, n_up),
        loss_best_last=jnp.where(check, loss_best, c["loss_best_last"]),
        reduced_last=jnp.where(check, reduce, c["reduced_last"]))

  c = jax.lax.fori_loop(0, steps, body, init)
  return c["x_best"], c["loss_best"], c["x_best_adv"], ~c["acc"]


def apgd(logits_fn: LogitsFn, x: Array, y: Array, key: Array, *, eps, steps: int = 100,
         norm: str = "linf", loss: str = "ce", targeted: bool = False, target=None,
         n_restarts: int = 1, rho: float = 0.75) -> Array:
  """AutoPGD on CE (APGD-CE), DLR (APGD-DLR) or the CW margin; targeted variants too.

  Args:
    logits_fn: x [B, H, W, 3] in [0, 1] -> logits [B, C].
    x: clean images [B, H, W, 3] in [0, 1].
    y: true labels [B] int.
    key: PRNG key or keys [B] (per-example starts; see `pgd.example_keys`).
    eps: budget in pixel units (L-inf per pixel, L2 per image).
    steps: iterations per restart, >= 1 (static).
    norm: "linf" or "l2".
    loss: "ce", "dlr" or "cw". With `targeted`: -CE to the target
      (AutoAttack's 'ce-targeted'), targeted DLR ('dlr-targeted'; APGD-T) or the
      targeted margin. C < 4 classes: see `losses` (DLR C = 2 -> margin;
      targeted DLR C = 3 -> z_pi1 - z_pi3 denominator, C = 2 -> margin).
    targeted: attack towards `target`; success is still judged as
      misclassification (argmax != y), as in AutoAttack.
    target: class ids [B] (array), or a Python int rank r (the r-th most likely
      non-true class at x, clipped to C - 1; None = 1, AutoAttack's first target).
    n_restarts: random restarts (static), each with its own key.
    rho: checkpoint threshold on the fraction of steps that raised the loss.

  Returns:
    x_adv [B, H, W, 3] within the eps-ball and [0, 1]: for each example the last
    misclassified point of the first restart that fooled it, else its
    highest-loss point over all restarts.
  """
  check_norm(norm)
  if loss not in APGD_LOSSES:
    raise ValueError(f"unknown loss {loss!r} for apgd; valid: {', '.join(APGD_LOSSES)}")
  if steps < 1 or n_restarts < 1:
    raise ValueError(f"steps={steps}, n_restarts={n_restarts}; valid: integers >= 1")
  objective = make_objective(logits_fn, x, y, loss=loss, targeted=targeted, target=target)
  vg = jax.value_and_grad(objective, has_aux=True)

  def value_grad(x_adv):
    (_, (per_example, logits)), grad = vg(x_adv)
    return per_example, logits, grad

  def restart(carry, k):
    adv, fooled, best_loss = carry
    x_best, loss_best, x_best_adv, fooled_now = _single_run(
        value_grad, x, y, k, eps, steps, norm, rho)
    better = ~fooled & ~fooled_now & (loss_best > best_loss)
    adv = jnp.where(bcast(fooled, x), adv, jnp.where(
        bcast(fooled_now, x), x_best_adv, jnp.where(bcast(better, x), x_best, adv)))
    return (adv, fooled | fooled_now, jnp.where(better, loss_best, best_loss)), None

  init = (x, jnp.zeros(x.shape[:1], bool), jnp.full(x.shape[:1], -jnp.inf, jnp.float32))
  (adv, _, _), _ = jax.lax.scan(restart, init, split_keys(key, n_restarts))
  return adv


def apgd_ce(logits_fn: LogitsFn, x: Array, y: Array, key: Array, **kwargs) -> Array:
  """APGD-CE: `apgd(..., loss="ce")`."""
  return apgd(logits_fn, x, y, key, loss="ce", **kwargs)


def apgd_dlr(logits_fn: LogitsFn, x: Array, y: Array, key: Array, **kwargs) -> Array:
  """APGD-DLR: `apgd(..., loss="dlr")` (margin for C = 2; see `losses`)."""
  return apgd(logits_fn, x, y, key, loss="dlr", **kwargs)

