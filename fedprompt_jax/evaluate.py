"""Evaluation: global accuracy (per domain too) and personalised accuracy, vmapped over clients.

Shapes: N clients, T test examples per client (padded), B batch, C classes.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from fedprompt_jax.attacks import sanity as sanity_lib
from fedprompt_jax.data.dataset import Split
from fedprompt_jax.data.transforms import Preprocess
from fedprompt_jax.methods.base import PromptMethod, merge_params

Tree = Any


def make_predict(method: PromptMethod, preprocess: Preprocess | None = None):
  """predict(frozen, params, aux, extra, client, pixels uint8 [B, h, w, 3]) -> [B] int32, jitted.

  (Pixels, or [B, F] cached features for a method from feature_cache.on_features.) Stored
  images become the model's input through `preprocess` (resized, never augmented;
  data/transforms.py); None = as stored.
  """
  preprocess = Preprocess() if preprocess is None else preprocess

  def predict(frozen, params, aux, extra, client, pixels):
    x = preprocess(pixels)
    logits = method.logits(frozen, params, aux, extra, client, x, jax.random.key(0))
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)

  return jax.jit(predict)


def padded_size(valid: int, batch_size: int) -> int:
  """The batch a partial batch of `valid` examples is padded to: the next power of two that
  holds them, at least 8 and at most `batch_size` (so at most log2(batch_size) - 2 extra
  compiled shapes, and never more than 2x the work the examples need)."""
  size = 8
  while size < valid:
    size *= 2
  return min(size, batch_size)


def predict_split(predict, frozen, params, aux, extra, client, split: Split,
                  batch_size: int, inputs: np.ndarray | None = None) -> np.ndarray:
  """[N] predictions over a whole split, in batches of `batch_size` (the last one padded only
  to `padded_size`); `inputs` ([N, F] cached features) replaces the split's images if given."""
  n = len(split)
  rows = split.images if inputs is None else inputs
  preds = []
  for start in range(0, n, batch_size):
    chunk = rows[start:start + batch_size]
    valid = len(chunk)
    pad = padded_size(valid, batch_size) - valid
    if pad:
      chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
    preds.append(np.asarray(predict(frozen, params, aux, extra, client, chunk))[:valid])
  return np.concatenate(preds) if preds else np.zeros((0,), np.int32)


def accuracy_report(preds: np.ndarray, split: Split, domain_names, prefix: str) -> dict:
  correct = preds == split.labels
  out = {prefix: float(correct.mean())}
  if domain_names is not None and split.domains is not None:
    for d, name in enumerate(domain_names):
      sel = split.domains == d
      if sel.any():
        out[f"{prefix}/{name}"] = float(correct[sel].mean())
  return out


def make_personalized_predict(method: PromptMethod, preprocess: Preprocess | None = None):
  """Per-client predictions: params/client constants [n, ...], pixels [n, T, h, w, 3] -> [n, T]
  (`preprocess` as in `make_predict`)."""
  preprocess = Preprocess() if preprocess is None else preprocess

  def one(frozen, shared, personal, aux, extra, client, pixels):
    params = merge_params(shared, personal)
    x = preprocess(pixels)
    logits = method.logits(frozen, params, aux, extra, client, x, jax.random.key(0))
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)

  return jax.jit(jax.vmap(one, in_axes=(None, None, 0, None, None, 0, 0)))


def personalized_accuracy(predict_clients, frozen, shared, personal_all: Tree, aux, extra,
                          clients_all: Tree, split: Split, test_indices: list[np.ndarray],
                          clients_per_call: int, inputs: np.ndarray | None = None) -> np.ndarray:
  """[N] accuracy of each client on its own test split, with its own params and constants;
  `inputs` ([len(split), F] cached features) replaces the split's images if given."""
  n = len(test_indices)
  t = max(1, max(len(ix) for ix in test_indices))
  acc = np.zeros((n,), np.float64)
  take = lambda tree, sel: jax.tree_util.tree_map(lambda x: x[sel], tree)
  for start in range(0, n, clients_per_call):
    sel = np.arange(start, min(start + clients_per_call, n))
    pad = clients_per_call - len(sel)
    rows = np.concatenate([sel, np.full(pad, sel[0])])  # pad with a copy of a real client
    idx = np.zeros((len(rows), t), np.int64)
    mask = np.zeros((len(rows), t), bool)
    for i, c in enumerate(rows):
      ix = test_indices[c]
      idx[i, :len(ix)] = ix
      mask[i, :len(ix)] = True
    rows_of = split.images if inputs is None else inputs
    pixels = rows_of[idx.reshape(-1)].reshape(idx.shape + rows_of.shape[1:])
    preds = np.asarray(predict_clients(frozen, shared, take(personal_all, rows), aux, extra,
                                       take(clients_all, rows), pixels))
    correct = (preds == split.labels[idx]) & mask
    acc[sel] = correct.sum(1)[:len(sel)] / np.maximum(mask.sum(1)[:len(sel)], 1)
  return acc


def client_summary(acc: np.ndarray, prefix: str = "pers_acc") -> dict:
  """Mean and worst-10% (mean of the lowest decile, at least one client) of per-client accuracy."""
  worst = np.sort(acc)[:max(1, int(np.ceil(0.1 * len(acc))))]
  return {f"{prefix}_mean": float(acc.mean()), f"{prefix}_worst10": float(worst.mean())}


@dataclasses.dataclass(frozen=True)
class Robust:
  """A jitted robust evaluation (from `make_robust`) and its attacks by result name.

  Calling it: (frozen, params, aux, extra, client, pixels uint8 [B, h, w, 3], labels [B],
  indices [B], key) -> (correct, ce): correct {"clean", <attack>..., "worst"}: [B] bool,
  ce {"clean", <attack>...}: [B] float32 cross-entropy at x and at each x_adv.
  """
  attacks: dict
  fn: Callable

  def __call__(self, *args):
    return self.fn(*args)


def make_robust(method: PromptMethod, attacks, preprocess: Preprocess | None = None) -> Robust:
  """The jitted robust evaluation of `method` under `attacks` (specs or `Attack`s). Per-example
  keys come from the examples' global indices, so results do not depend on the evaluation
  batch size. The attacks perturb the model's input: the stored images after `preprocess`
  (resized to the model's side, never augmented; None = as stored), so eps is in 1/255 units
  of the model-resolution image."""
  from fedprompt_jax.attacks import example_keys, make_attack  # pylint: disable=g-import-not-at-top
  from fedprompt_jax.attacks.spec import result_names, robust_outcomes  # pylint: disable=g-import-not-at-top
  built = [make_attack(a) for a in attacks]
  preprocess = Preprocess() if preprocess is None else preprocess

  def robust(frozen, params, aux, extra, client, pixels, labels, indices, key):
    x = preprocess(pixels)
    logits_fn = lambda v: method.logits(frozen, params, aux, extra, client, v, key)
    return robust_outcomes(logits_fn, built, x, labels, example_keys(key, indices))

  return Robust(dict(zip(result_names(built), built)), jax.jit(robust))


def robust_totals(robust: Robust, frozen, params, aux, extra, client, split: Split,
                  num_examples: int, batch_size: int, key,
                  subset: int = 0) -> tuple[sanity_lib.Totals, sanity_lib.Totals]:
  """Counts and summed cross-entropies over the first `num_examples` of `split`, and over its
  first `subset` examples (the same evaluation, not a second one)."""
  n = min(num_examples, len(split))
  correct, ce = collections.Counter(), collections.Counter()
  sub_correct, sub_ce = collections.Counter(), collections.Counter()
  for start in range(0, n, batch_size):
    idx = np.arange(start, min(start + batch_size, n))
    valid = len(idx)
    # Padded with copies of a real example, only as far as `padded_size` (few batch shapes).
    idx = np.concatenate([idx, np.full(padded_size(valid, batch_size) - valid, idx[0])])
    out, losses = robust(frozen, params, aux, extra, client, split.images[idx],
                         split.labels[idx], idx, key)
    first = idx[:valid] < subset
    for name, value in out.items():
      value = np.asarray(value)[:valid]
      correct[name] += int(value.sum())
      sub_correct[name] += int(value[first].sum())
    for name, value in losses.items():
      value = np.asarray(value, np.float64)[:valid]
      ce[name] += float(value.sum())
      sub_ce[name] += float(value[first].sum())
  return (sanity_lib.Totals(n, dict(correct), dict(ce)),
          sanity_lib.Totals(min(subset, n), dict(sub_correct), dict(sub_ce)))


def robust_report(robust: Robust, frozen, params, aux, extra, client, split: Split,
                  num_examples: int, batch_size: int, key, sanity: Robust | None = None,
                  sanity_examples: int = 0) -> dict:
  """Clean, per-attack and worst-case robust accuracy on the first `num_examples` of `split`,
  and the gradient-masking checks (attacks/sanity.py) as `robust_sanity/...` metrics, with
  one line on stderr per failed check.

  Args:
    robust, frozen, params, aux, extra, client: the evaluation and its arguments.
    split: the test split; num_examples: how many of its first examples to attack.
    batch_size: examples per attack batch (the last one padded only to `padded_size`).
    key: the evaluation key (per-example keys are folded from it).
    sanity: `make_robust` of the one large-radius attack, or None to skip that check
      (the others cost nothing and always run).
    sanity_examples: it attacks the first min(sanity_examples, num_examples) examples.
  """
  subset = min(sanity_examples, num_examples, len(split)) if sanity is not None else 0
  totals, first = robust_totals(robust, frozen, params, aux, extra, client, split,
                                num_examples, batch_size, key, subset)
  out = {f"robust_acc/{name}": totals.acc(name) for name in totals.correct}
  large = None
  if sanity is not None:
    (name, attack), = sanity.attacks.items()
    # A key of its own: per-example keys fold in indices < 2**32 - 1 from `key`.
    large_totals, _ = robust_totals(sanity, frozen, params, aux, extra, client, split, subset,
                                    min(batch_size, subset),
                                    jax.random.fold_in(key, 2**32 - 1))
    large = sanity_lib.LargeRadius(attack, name, large_totals, first)
  metrics, warnings = sanity_lib.check(robust.attacks, totals, large)
  if jax.process_index() == 0:
    sanity_lib.warn(warnings)
  out.update(metrics)
  return out
