"""Our PGD and APGD against PyTorch references on the parity fixture (clip_tiny_a).

The classifier, identical in JAX and torch (transformers' CLIPModel, pixel
normalisation inside the torch wrapper so both attack [0, 1] pixels):
  logits = SCALE * (normalize(image_embeds) - mu) @ H.T
with H the fixture's 6 text embeddings, centred and renormalised, and mu the
mean normalised image embedding of the test images (random CLIP image features
share one dominant direction; centring spreads the predictions over the
classes). Labels are torch's clean predictions, so clean accuracy is 100%.

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

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clip_fixtures import fixture_dir, reference
from fedprompt_jax.attacks import apgd, pgd
from fedprompt_jax.attacks.apgd import _single_run as single_run  # pylint: disable=protected-access
from fedprompt_jax.attacks.apgd import _start as apgd_start  # pylint: disable=protected-access
from fedprompt_jax.attacks.pgd import make_objective
from fedprompt_jax.models import hf_loader
from fedprompt_jax.models.clip import normalize
from fedprompt_jax.models.clip_config import OPENAI_MEAN, OPENAI_STD
from test_attacks import EPS, MODEL, NORMS, X, Y

HAS_TORCH = all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))
HAS_ART = HAS_TORCH and importlib.util.find_spec("art") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch/transformers not installed")
needs_art = pytest.mark.skipif(not HAS_ART, reason="adversarial-robustness-toolbox not installed")
if HAS_TORCH:
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

SCALE = 40.0
N_PGD, PGD_EPS, PGD_STEP, PGD_STEPS = 8, 4 / 255, 1 / 255, 5
TIE = 1e-5           # |reference gradient| below this counts as a sign tie
N_APGD, APGD_EPS, APGD_STEPS = 128, 0.5 / 255, 10


def images(n: int, seed: int) -> np.ndarray:
  """Blocky random images (8x8 upsampled to 32x32, plus a little noise) in [0, 1]."""
  rng = np.random.default_rng(seed)
  low = rng.uniform(0, 1, (n, 8, 8, 3))
  x = np.repeat(np.repeat(low, 4, axis=1), 4, axis=2) + rng.normal(0, 0.05, (n, 32, 32, 3))
  return np.clip(x, 0, 1).astype(np.float32)


def torch_classifier(clip, mu: np.ndarray, head: np.ndarray):
  """transformers' CLIPModel image tower + the fixed head; input [B, H, W, 3] in [0, 1]."""

  class TorchClassifier(torch.nn.Module):

    def __init__(self):
      super().__init__()
      self.clip = clip
      self.register_buffer("mean", torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1))
      self.register_buffer("std", torch.tensor(OPENAI_STD).view(1, 3, 1, 1))
      self.register_buffer("mu", torch.from_numpy(mu))
      self.register_buffer("head", torch.from_numpy(head))

    def forward(self, x):
      pixel_values = (x.permute(0, 3, 1, 2) - self.mean) / self.std
      feats = self.clip.get_image_features(pixel_values=pixel_values)
      feats = getattr(feats, "pooler_output", feats)
      feats = feats / feats.norm(dim=-1, keepdim=True)
      return SCALE * (feats - self.mu) @ self.head.T

  return TorchClassifier().eval()


@pytest.fixture(scope="module")
def setup():
  """(JAX logits_fn, torch classifier, the APGD test images [N_APGD, 32, 32, 3])."""
  threads = torch.get_num_threads()
  torch.set_num_threads(1)  # deterministic reductions; restored after this module
  model, params, _ = hf_loader.load_clip(fixture_dir("clip_tiny_a"))
  text = reference("clip_tiny_a")["text_embeds"]
  head = text - text.mean(0)
  head = (head / np.linalg.norm(head, axis=1, keepdims=True)).astype(np.float32)
  x_apgd = images(N_APGD, seed=0)
  embed = jax.jit(lambda x: normalize(model.encode_image(params, x).embeds))
  mu = np.asarray(embed(x_apgd)).mean(0).astype(np.float32)

  def logits_fn(x):
    return SCALE * (normalize(model.encode_image(params, x).embeds) - mu) @ jnp.asarray(head).T

  clip = transformers.CLIPModel.from_pretrained(fixture_dir("clip_tiny_a")).eval()
  torch_model = torch_classifier(clip, mu, head)
  yield logits_fn, torch_model, x_apgd
  torch.set_num_threads(threads)


def torch_logits(torch_model, x: np.ndarray) -> np.ndarray:
  with torch.no_grad():
    return torch_model(torch.from_numpy(x)).numpy()


def art_classifier(torch_model):
  from art.estimators.classification import (  # pylint: disable=import-outside-toplevel
      PyTorchClassifier)
  return PyTorchClassifier(model=torch_model, loss=torch.nn.CrossEntropyLoss(),
                           input_shape=(32, 32, 3), nb_classes=6, clip_values=(0.0, 1.0),
                           channels_first=False)


def reference_pgd(torch_model, x: np.ndarray, y: np.ndarray):
  """The textbook loop x <- clip(clip(x + a sign(g), x0 - eps, x0 + eps), 0, 1).

  Returns the iterates and the gradients they were computed from, one per step.
  """
  x0 = torch.from_numpy(x)
  labels = torch.from_numpy(y.astype(np.int64))
  x_adv, iterates, grads = x0.clone(), [], []
  for _ in range(PGD_STEPS):
    x_adv.requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(torch_model(x_adv), labels, reduction="sum")
    grad = torch.autograd.grad(loss, x_adv)[0]
    with torch.no_grad():
      x_adv = x_adv + PGD_STEP * grad.sign()
      x_adv = torch.clamp(torch.min(torch.max(x_adv, x0 - PGD_EPS), x0 + PGD_EPS), 0.0, 1.0)
    iterates.append(x_adv.numpy().copy())
    grads.append(grad.numpy())
  return iterates, grads


@needs_torch
def test_pgd_matches_torch_step_for_step(setup):
  logits_fn, torch_model, _ = setup
  x = images(N_PGD, seed=1)
  y = torch_logits(torch_model, x).argmax(1).astype(np.int32)
  ref_iterates, ref_grads = reference_pgd(torch_model, x, y)

  # Our gradient at each reference iterate: its discrepancy must be well below TIE, so
  # every coordinate with |reference gradient| >= TIE has the same sign in both.
  grad_fn = jax.jit(jax.grad(lambda v: -jnp.sum(jnp.take_along_axis(
      jax.nn.log_softmax(logits_fn(v)), jnp.asarray(y)[:, None], 1))))
  starts = [x] + ref_iterates[:-1]
  grad_diff = max(float(np.abs(np.asarray(grad_fn(s)) - g).max())
                  for s, g in zip(starts, ref_grads))
  assert grad_diff < TIE / 4, grad_diff

  run_all = jax.jit(lambda x, y: [pgd(logits_fn, x, y, None, eps=PGD_EPS, step_size=PGD_STEP,
                                      steps=k, random_start=False)
                                  for k in range(1, PGD_STEPS + 1)])
  ours = [np.asarray(v) for v in run_all(x, jnp.asarray(y))]
  art = None
  if HAS_ART:
    from art.attacks.evasion import (  # pylint: disable=import-outside-toplevel
        ProjectedGradientDescent)
    classifier = art_classifier(torch_model)
    art = [ProjectedGradientDescent(classifier, norm=np.inf, eps=PGD_EPS, eps_step=PGD_STEP,
                                    max_iter=k, num_random_init=0, batch_size=N_PGD,
                                    verbose=False).generate(x, y)
           for k in range(1, PGD_STEPS + 1)]

  tie = np.zeros(x.shape, bool)
  for k in range(PGD_STEPS):
    tie |= np.abs(ref_grads[k]) < TIE
    diff = np.abs(ours[k] - ref_iterates[k])
    line = (f"PGD step {k + 1}: max|ours - torch loop| = {diff.max():.2e} "
            f"(ties excluded: {diff[~tie].max():.2e}, {tie.sum()} tie coords)")
    assert diff[~tie].max() <= 1e-5, line
    if art is not None:
      diff_art = np.abs(ours[k] - art[k])
      line += (f"; max|ours - ART| = {diff_art.max():.2e}; "
               f"max|ART - torch loop| = {np.abs(art[k] - ref_iterates[k]).max():.2e}")
      assert diff_art[~tie].max() <= 1e-5, line
    print(line)
  assert np.abs(ours[-1] - x).max() > 0.9 * PGD_EPS  # it moved to the boundary
  print(f"PGD gradients: max|torch - JAX| over the 5 reference iterates {grad_diff:.2e} "
        f"(TIE = {TIE:g})")


@needs_art
def test_apgd_ce_robust_accuracy_matches_art(setup):
  from art.attacks.evasion import (  # pylint: disable=import-outside-toplevel
      AutoProjectedGradientDescent)
  logits_fn, torch_model, x = setup
  y = torch_logits(torch_model, x).argmax(1).astype(np.int32)
  np.random.seed(0)  # ART draws its random start from numpy
  attack = AutoProjectedGradientDescent(
      art_classifier(torch_model), norm=np.inf, eps=APGD_EPS, eps_step=2 * APGD_EPS,
      max_iter=APGD_STEPS, targeted=False, nb_random_init=1, batch_size=N_APGD,
      loss_type="cross_entropy", verbose=False)
  x_art = attack.generate(x, y)
  art_acc = float(np.mean(torch_logits(torch_model, x_art).argmax(1) == y))

  run = jax.jit(lambda x, y, key: apgd(logits_fn, x, y, key, eps=APGD_EPS, steps=APGD_STEPS))
  x_ours = np.asarray(run(x, jnp.asarray(y), jax.random.key(0)))
  assert np.abs(x_ours - x).max() <= APGD_EPS + 1e-6
  ours_acc = float(np.mean(np.asarray(jnp.argmax(logits_fn(x_ours), -1)) == y))
  print(f"APGD-CE L-inf eps={APGD_EPS * 255:g}/255, {APGD_STEPS} steps, n={N_APGD}: "
        f"robust accuracy ours {ours_acc:.2%}, ART {art_acc:.2%}")
  assert 0.05 < art_acc < 0.95  # a budget where the comparison means something
  assert abs(ours_acc - art_acc) <= 0.01 + 1e-9


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
