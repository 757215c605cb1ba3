"""Our PGD and APGD against PyTorch references on the parity fixture (clip_tiny_a).

(a) and (b) are computed by benchmarks/attack_reference.py (also the `attacks` table of
launch/reproduce.py); this file asserts on its figures.

The classifier (the same in JAX and torch, labels = torch's clean predictions) is described
in benchmarks/attack_reference.py.

(a) PGD L-inf without random start, steps 1..5, against a hand-written torch
    autograd loop and IBM ART's ProjectedGradientDescent (num_random_init=0).
    sign() is discontinuous at 0: a coordinate whose reference gradient is below
    TIE (far above the measured torch-vs-JAX gradient difference, asserted) at
    some step may legitimately take the other sign, so such coordinates are
    excluded from the max-diff and counted (the count and the max-diff over all
    coordinates, ties included, are printed; no tie flips for these inputs).
(b) APGD-CE robust accuracy against ART's AutoProjectedGradientDescent (same
    budget, iterations, initial step 2 * eps, one random start): within 1 point.
(c) Without torch: one APGD run (CE, DLR; L-inf, L2) against a line-by-line
    NumPy port of AutoAttack's `APGDAttack.attack_single_run` on the small MLP of
    test_attacks.py, from the same start.
"""

from __future__ import annotations

import os
import sys

import jax
import numpy as np
import pytest

from fedprompt_jax.attacks.apgd import _single_run as single_run  # pylint: disable=protected-access
from fedprompt_jax.attacks.apgd import _start as apgd_start  # pylint: disable=protected-access
from fedprompt_jax.attacks.pgd import make_objective
from test_attacks import EPS, MODEL, NORMS, X, Y

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))
import attack_reference as ref_lib  # noqa: E402  pylint: disable=wrong-import-position

needs_torch = pytest.mark.skipif(not ref_lib.HAS_TORCH, reason="torch/transformers not installed")
needs_art = pytest.mark.skipif(not ref_lib.HAS_ART,
                               reason="adversarial-robustness-toolbox not installed")


@pytest.fixture(scope="module")
def setup():
  """(JAX logits_fn, torch classifier, the APGD test images [N_APGD, 32, 32, 3])."""
  threads = ref_lib.torch.get_num_threads()
  ref_lib.torch.set_num_threads(1)  # deterministic reductions; restored after this module
  yield ref_lib.make_setup()
  ref_lib.torch.set_num_threads(threads)


@needs_torch
def test_pgd_matches_torch_step_for_step(setup):
  logits_fn, torch_model, _ = setup
  out = ref_lib.pgd_vs_references(logits_fn, torch_model)
  # Our gradient at each reference iterate: its discrepancy must be well below TIE, so
  # every coordinate with |reference gradient| >= TIE has the same sign in both.
  assert out["grad_diff"] < ref_lib.TIE / 4, out["grad_diff"]
  for row in out["steps"]:
    print(row)
    assert row["max_diff_no_ties"] <= 1e-5, row
    if "art_diff" in row:
      assert row["art_diff_no_ties"] <= 1e-5, row
  assert out["moved"] > 0.9 * ref_lib.PGD_EPS  # it moved to the boundary
  print(f"PGD gradients: max|torch - JAX| over the 5 reference iterates {out['grad_diff']:.2e} "
        f"(TIE = {ref_lib.TIE:g})")


@needs_art
def test_apgd_ce_robust_accuracy_matches_art(setup):
  logits_fn, torch_model, x = setup
  out = ref_lib.apgd_vs_art(logits_fn, torch_model, x)
  assert out["max_perturbation"] <= ref_lib.APGD_EPS + 1e-6
  print(f"APGD-CE L-inf eps={ref_lib.APGD_EPS * 255:g}/255, {ref_lib.APGD_STEPS} steps, "
        f"n={ref_lib.N_APGD}: robust accuracy ours {out['ours_acc']:.2%}, ART "
        f"{out['art_acc']:.2%}")
  assert 0.05 < out["art_acc"] < 0.95  # a budget where the comparison means something
  assert abs(out["ours_acc"] - out["art_acc"]) <= 0.01 + 1e-9


def autoattack_apgd(value_grad, x, y, x_start, eps, n_iter, norm, rho=0.75):
  """A line-by-line NumPy port of AutoAttack's APGDAttack.attack_single_run (L-inf, L2)."""
  n_iter_2, n_iter_min = max(int(0.22 * n_iter), 1), max(int(0.06 * n_iter), 1)
  size_decr = max(int(0.03 * n_iter), 1)
  flat = lambda v: v.reshape(len(v), -1)
  lp = lambda v: np.sqrt((flat(v) ** 2).sum(-1)).reshape(-1, 1, 1, 1)
  unit = lambda v: v / (lp(v) + 1e-12)
  x_adv = x_start.copy()
  x_best, x_best_adv = x_adv.copy(), x_adv.copy()
  loss_steps = np.zeros([n_iter, len(x)], np.float32)
  loss_indiv, logits, grad = value_grad(x_adv)
  grad_best, acc, loss_best = grad.copy(), logits.argmax(1) == y, loss_indiv.copy()
  step_size = np.full([len(x), 1, 1, 1], 2 * eps, np.float32)
  x_adv_old, k, counter3 = x_adv.copy(), n_iter_2, 0
  loss_best_last_check, reduced_last_check = loss_best.copy(), np.ones_like(loss_best)
  for i in range(n_iter):
    grad2 = x_adv - x_adv_old
    x_adv_old = x_adv.copy()
    a = 0.75 if i > 0 else 1.0
    if norm == "linf":
      x_adv_1 = x_adv + step_size * np.sign(grad)
      x_adv_1 = np.clip(np.minimum(np.maximum(x_adv_1, x - eps), x + eps), 0.0, 1.0)
      x_adv_1 = np.clip(np.minimum(np.maximum(
          x_adv + (x_adv_1 - x_adv) * a + grad2 * (1 - a), x - eps), x + eps), 0.0, 1.0)
    else:
      x_adv_1 = x_adv + step_size * unit(grad)
      x_adv_1 = np.clip(x + unit(x_adv_1 - x) * np.minimum(eps, lp(x_adv_1 - x)), 0.0, 1.0)
      x_adv_1 = x_adv + (x_adv_1 - x_adv) * a + grad2 * (1 - a)
      x_adv_1 = np.clip(x + unit(x_adv_1 - x) * np.minimum(eps, lp(x_adv_1 - x)), 0.0, 1.0)
    x_adv = x_adv_1
    loss_indiv, logits, grad = value_grad(x_adv)
    pred = logits.argmax(1) == y
    acc = np.minimum(acc, pred)
    x_best_adv[~pred] = x_adv[~pred]
    loss_steps[i] = loss_indiv
    ind = loss_indiv > loss_best
    x_best[ind], grad_best[ind], loss_best[ind] = x_adv[ind], grad[ind], loss_indiv[ind]
    counter3 += 1
    if counter3 == k:
      t = sum((loss_steps[i - c] > loss_steps[i - c - 1]).astype(np.float32) for c in range(k))
      fl = np.maximum((t <= k * rho).astype(np.float32),
                      (1.0 - reduced_last_check) * (loss_best_last_check >= loss_best))
      reduced_last_check, loss_best_last_check = fl.copy(), loss_best.copy()
      step_size[fl > 0] /= 2.0
      x_adv[fl > 0], grad[fl > 0] = x_best[fl > 0], grad_best[fl > 0]
      k, counter3 = max(k - size_decr, n_iter_min), 0
  return x_best, acc, loss_best, x_best_adv


def test_apgd_run_matches_a_port_of_autoattack():
  steps, key = 25, jax.random.key(8)
  value_grads = {}
  for loss in ("ce", "dlr"):
    vg = jax.value_and_grad(make_objective(MODEL, X, Y, loss=loss, targeted=False, target=None),
                            has_aux=True)
    value_grads[loss] = lambda x, vg=vg: (lambda r: (r[0][1][0], r[0][1][1], r[1]))(vg(x))
  ours = jax.jit(lambda x, y, k: {
      (loss, norm): single_run(value_grads[loss], x, y, k, EPS[norm], steps, norm, 0.75)
      for loss in value_grads for norm in NORMS})(X, Y, key)
  for (loss, norm), result in ours.items():
    vg = jax.jit(value_grads[loss])
    start = np.asarray(apgd_start(key, X, EPS[norm], norm))
    ref = autoattack_apgd(lambda x: tuple(np.array(v) for v in vg(x)), np.asarray(X),
                          np.asarray(Y), start, EPS[norm], steps, norm)
    x_best, loss_best, x_best_adv, fooled = (np.asarray(v) for v in result)
    # L2 iterates are not re-quantised by sign(): float32 differences in the norms (XLA vs
    # NumPy summation order) accumulate to ~3e-5 over 25 steps.
    atol = 1e-5 if norm == "linf" else 1e-4
    what = f"{loss} {norm}"
    np.testing.assert_allclose(x_best, ref[0], atol=atol, err_msg=what)
    np.testing.assert_allclose(loss_best, ref[2], rtol=1e-4, atol=1e-5, err_msg=what)
    np.testing.assert_allclose(x_best_adv, ref[3], atol=atol, err_msg=what)
    np.testing.assert_array_equal(fooled, ~ref[1], err_msg=what)
    assert fooled.any() and not fooled.all(), what
    print(f"APGD-{loss} {norm} vs AutoAttack port: max|x_best diff| "
          f"{np.abs(x_best - ref[0]).max():.1e}, max|x_best_adv diff| "
          f"{np.abs(x_best_adv - ref[3]).max():.1e}, fooled {fooled.sum()}/{len(fooled)}")
