"""Evaluation: global accuracy (per domain too) and personalised accuracy, vmapped over clients.

Shapes: N clients, T test examples per client (padded), B batch, C classes.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fedprompt_jax.data.source import Split
from fedprompt_jax.methods.base import PromptMethod, merge_params

Tree = Any


def make_predict(method: PromptMethod):
  """predict(frozen, params, aux, extra, client, pixels uint8 [B, H, W, 3]) -> [B] int32, jitted."""

  def predict(frozen, params, aux, extra, client, pixels):
    x = pixels.astype(jnp.float32) / 255.0
    logits = method.logits(frozen, params, aux, extra, client, x, jax.random.key(0))
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)

  return jax.jit(predict)


def predict_split(predict, frozen, params, aux, extra, client, split: Split,
                  batch_size: int) -> np.ndarray:
  """[N] predictions over a whole split, in fixed-size batches (the last one padded)."""
  n = len(split)
  preds = []
  for start in range(0, n, batch_size):
    chunk = split.images[start:start + batch_size]
    pad = batch_size - len(chunk)
    if pad:
      chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
    preds.append(np.asarray(predict(frozen, params, aux, extra, client, chunk))[:batch_size - pad])
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


def make_personalized_predict(method: PromptMethod):
  """Per-client predictions: params/client constants [n, ...], pixels [n, T, H, W, 3] -> [n, T]."""

  def one(frozen, shared, personal, aux, extra, client, pixels):
    params = merge_params(shared, personal)
    x = pixels.astype(jnp.float32) / 255.0
    logits = method.logits(frozen, params, aux, extra, client, x, jax.random.key(0))
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)

  return jax.jit(jax.vmap(one, in_axes=(None, None, 0, None, None, 0, 0)))


def personalized_accuracy(predict_clients, frozen, shared, personal_all: Tree, aux, extra,
                          clients_all: Tree, split: Split, test_indices: list[np.ndarray],
                          clients_per_call: int) -> np.ndarray:
  """[N] accuracy of each client on its own test split, with its own params and constants."""
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
    pixels = split.images[idx.reshape(-1)].reshape(idx.shape + split.images.shape[1:])
    preds = np.asarray(predict_clients(frozen, shared, take(personal_all, rows), aux, extra,
                                       take(clients_all, rows), pixels))
    correct = (preds == split.labels[idx]) & mask
    acc[sel] = correct.sum(1)[:len(sel)] / np.maximum(mask.sum(1)[:len(sel)], 1)
  return acc


def client_summary(acc: np.ndarray, prefix: str = "pers_acc") -> dict:
  """Mean and worst-10% (mean of the lowest decile, at least one client) of per-client accuracy."""
  worst = np.sort(acc)[:max(1, int(np.ceil(0.1 * len(acc))))]
  return {f"{prefix}_mean": float(acc.mean()), f"{prefix}_worst10": float(worst.mean())}


def make_robust(method: PromptMethod, attacks):
  """robust(frozen, params, aux, extra, client, pixels uint8 [B,...], labels [B], indices [B], key)
  -> {"clean", <attack>..., "worst"}: [B] bool, jitted. Per-example keys come from the
  examples' global indices, so results do not depend on the evaluation batch size."""
  from fedprompt_jax.attacks import example_keys, robust_accuracy  # pylint: disable=g-import-not-at-top

  def robust(frozen, params, aux, extra, client, pixels, labels, indices, key):
    x = pixels.astype(jnp.float32) / 255.0
    logits_fn = lambda v: method.logits(frozen, params, aux, extra, client, v, key)
    return robust_accuracy(logits_fn, attacks, x, labels, example_keys(key, indices))

  return jax.jit(robust)


def robust_report(robust, frozen, params, aux, extra, client, split: Split, num_examples: int,
                  batch_size: int, key) -> dict:
  """Clean, per-attack and worst-case robust accuracy on the first `num_examples` of `split`."""
  n = min(num_examples, len(split))
  totals = {}
  for start in range(0, n, batch_size):
    idx = np.arange(start, min(start + batch_size, n))
    valid = len(idx)
    idx = np.concatenate([idx, np.full(batch_size - valid, idx[0])])  # fixed batch shape
    out = robust(frozen, params, aux, extra, client, split.images[idx], split.labels[idx], idx,
                 key)
    for name, correct in out.items():
      totals[name] = totals.get(name, 0) + int(np.asarray(correct)[:valid].sum())
  return {f"robust_acc/{name}": count / n for name, count in totals.items()}
