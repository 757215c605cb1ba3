#!/usr/bin/env python
"""Our PGD and APGD against PyTorch references on the parity fixture (clip_tiny_a); prints them.

  python benchmarks/attack_reference.py        # needs torch, transformers (and ART for its rows)

The classifier, identical in JAX and torch (transformers' CLIPModel, pixel
normalisation inside the torch wrapper so both attack [0, 1] pixels):
  logits = SCALE * (normalize(image_embeds) - mu) @ H.T
with H the fixture's 6 text embeddings, centred and renormalised, and mu the
mean normalised image embedding of the test images (random CLIP image features
share one dominant direction; centring spreads the predictions over the
classes). Labels are torch's clean predictions, so clean accuracy is 100%.

`pgd_vs_references`: PGD L-inf without random start, steps 1..5, against a
hand-written torch autograd loop and IBM ART's ProjectedGradientDescent
(num_random_init=0). sign() is discontinuous at 0: a coordinate whose reference
gradient is below TIE at some step may legitimately take the other sign, so the
max-diffs are reported with such coordinates excluded and included.
`apgd_vs_art`: APGD-CE robust accuracy against ART's AutoProjectedGradientDescent
(same budget, iterations, initial step 2 * eps, one random start).
tests/test_attacks_reference.py asserts on these figures; launch/reproduce.py
--table=attacks tabulates them.
"""

from __future__ import annotations

import importlib.util
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from fedprompt_jax.attacks import apgd, pgd  # noqa: E402
from fedprompt_jax.models import hf_loader  # noqa: E402
from fedprompt_jax.models.clip import normalize  # noqa: E402
from fedprompt_jax.models.clip_config import OPENAI_MEAN, OPENAI_STD  # noqa: E402

HAS_TORCH = all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))
HAS_ART = HAS_TORCH and importlib.util.find_spec("art") is not None
if HAS_TORCH:
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests",
                       "fixtures", "clip_tiny_a")
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


def make_setup(fixture: str = FIXTURE):
  """(JAX logits_fn, torch classifier, the APGD test images [N_APGD, 32, 32, 3]).

  Call with torch.set_num_threads(1) for deterministic reductions (the caller restores it).
  """
  model, params, _ = hf_loader.load_clip(fixture)
  with np.load(os.path.join(fixture, "reference.npz")) as data:
    text = data["text_embeds"]
  head = text - text.mean(0)
  head = (head / np.linalg.norm(head, axis=1, keepdims=True)).astype(np.float32)
  x_apgd = images(N_APGD, seed=0)
  embed = jax.jit(lambda x: normalize(model.encode_image(params, x).embeds))
  mu = np.asarray(embed(x_apgd)).mean(0).astype(np.float32)

  def logits_fn(x):
    return SCALE * (normalize(model.encode_image(params, x).embeds) - mu) @ jnp.asarray(head).T

  clip = transformers.CLIPModel.from_pretrained(fixture).eval()
  return logits_fn, torch_classifier(clip, mu, head), x_apgd


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


def pgd_vs_references(logits_fn, torch_model, use_art: bool = HAS_ART) -> dict:
  """PGD-k (k = 1..PGD_STEPS) of ours against the torch loop and (use_art) ART.

  Returns {"grad_diff": max |torch - JAX| input gradient over the reference iterates,
  "moved": max |x_adv - x| after the last step, "steps": [per k: max_diff (ours vs loop,
  all coordinates), max_diff_no_ties, ties (tie coordinates so far), and with ART art_diff,
  art_diff_no_ties, art_vs_loop]}.
  """
  x = images(N_PGD, seed=1)
  y = torch_logits(torch_model, x).argmax(1).astype(np.int32)
  ref_iterates, ref_grads = reference_pgd(torch_model, x, y)
  grad_fn = jax.jit(jax.grad(lambda v: -jnp.sum(jnp.take_along_axis(
      jax.nn.log_softmax(logits_fn(v)), jnp.asarray(y)[:, None], 1))))
  starts = [x] + ref_iterates[:-1]
  grad_diff = max(float(np.abs(np.asarray(grad_fn(s)) - g).max())
                  for s, g in zip(starts, ref_grads))
  run_all = jax.jit(lambda x, y: [pgd(logits_fn, x, y, None, eps=PGD_EPS, step_size=PGD_STEP,
                                      steps=k, random_start=False)
                                  for k in range(1, PGD_STEPS + 1)])
  ours = [np.asarray(v) for v in run_all(x, jnp.asarray(y))]
  art = None
  if use_art:
    from art.attacks.evasion import (  # pylint: disable=import-outside-toplevel
        ProjectedGradientDescent)
    classifier = art_classifier(torch_model)
    art = [ProjectedGradientDescent(classifier, norm=np.inf, eps=PGD_EPS, eps_step=PGD_STEP,
                                    max_iter=k, num_random_init=0, batch_size=N_PGD,
                                    verbose=False).generate(x, y)
           for k in range(1, PGD_STEPS + 1)]
  tie, steps = np.zeros(x.shape, bool), []
  for k in range(PGD_STEPS):
    tie |= np.abs(ref_grads[k]) < TIE
    diff = np.abs(ours[k] - ref_iterates[k])
    row = dict(k=k + 1, max_diff=float(diff.max()), max_diff_no_ties=float(diff[~tie].max()),
               ties=int(tie.sum()))
    if art is not None:
      diff_art = np.abs(ours[k] - art[k])
      row.update(art_diff=float(diff_art.max()), art_diff_no_ties=float(diff_art[~tie].max()),
                 art_vs_loop=float(np.abs(art[k] - ref_iterates[k]).max()))
    steps.append(row)
  return dict(grad_diff=grad_diff, moved=float(np.abs(ours[-1] - x).max()), steps=steps)


def apgd_vs_art(logits_fn, torch_model, x: np.ndarray) -> dict:
  """APGD-CE L-inf (APGD_EPS, APGD_STEPS) robust accuracy of ours and of ART on `x`.

  Returns {"ours_acc", "art_acc", "max_perturbation" (ours, L-inf)}.
  """
  from art.attacks.evasion import (  # pylint: disable=import-outside-toplevel
      AutoProjectedGradientDescent)
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
  ours_acc = float(np.mean(np.asarray(jnp.argmax(logits_fn(x_ours), -1)) == y))
  return dict(ours_acc=ours_acc, art_acc=art_acc,
              max_perturbation=float(np.abs(x_ours - x).max()))


def run(use_art: bool = HAS_ART) -> dict:
  """Both checks, torch on one thread (restored after): {"pgd": ..., "apgd": ... or None}."""
  if not HAS_TORCH:
    raise ImportError('the attack reference checks need torch and transformers: '
                      'pip install -e ".[torch]"')
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  try:
    logits_fn, torch_model, x = make_setup()
    return dict(pgd=pgd_vs_references(logits_fn, torch_model, use_art),
                apgd=apgd_vs_art(logits_fn, torch_model, x) if use_art else None)
  finally:
    torch.set_num_threads(threads)


def main() -> int:
  jax.config.update("jax_default_matmul_precision", "highest")
  out = run()
  for row in out["pgd"]["steps"]:
    print(f"PGD step {row['k']}: max|ours - torch loop| = {row['max_diff']:.2e} (ties "
          f"excluded: {row['max_diff_no_ties']:.2e}, {row['ties']} tie coords)"
          + (f"; max|ours - ART| = {row['art_diff']:.2e}" if "art_diff" in row else ""))
  if out["apgd"]:
    print(f"APGD-CE L-inf eps={APGD_EPS * 255:g}/255, {APGD_STEPS} steps, n={N_APGD}: robust "
          f"accuracy ours {out['apgd']['ours_acc']:.2%}, ART {out['apgd']['art_acc']:.2%}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
