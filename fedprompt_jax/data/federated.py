"""Host side of a round: the sampled clients' local batches, masks and weights as numpy arrays.

Client k's S x B examples come from its own index list, reshuffled at every pass
(so S x B may exceed n_k: local epochs continue). A client with fewer than B
examples fills each batch with all of them and pads the rest (mask False). The
order depends only on (seed, round, client id), never on which other clients
were sampled or how K is padded.

With local epochs (`epochs` set), client k instead runs epochs x ceil(n_k / B)
valid steps, as a PyTorch DataLoader without drop_last does: each epoch is a
fresh permutation cut into batches, its last batch partial (masked). The round's
S is the largest client's count padded up by `padded_steps` (few distinct S, so
few retraces) and capped; a client's steps past its own are fully masked.

Shapes: K clients, S local steps, B batch, H x W images.
"""

from __future__ import annotations

import numpy as np

from fedprompt_jax.data.dataset import Split


def client_example_indices(indices: np.ndarray, steps: int, batch: int,
                           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """[S, B] indices into the split and [S, B] validity mask for one client."""
  n = len(indices)
  out = np.zeros((steps, batch), np.int64)
  mask = np.zeros((steps, batch), bool)
  if n == 0:
    return out, mask
  if n < batch:
    for s in range(steps):
      out[s, :n] = indices[rng.permutation(n)]
      mask[s, :n] = True
    return out, mask
  passes = -(-steps * batch // n)
  order = np.concatenate([indices[rng.permutation(n)] for _ in range(passes)])
  return order[:steps * batch].reshape(steps, batch), np.ones((steps, batch), bool)


def epoch_steps(num_examples: np.ndarray | int, epochs: int, batch: int) -> np.ndarray:
  """Valid local steps of clients with `num_examples` examples: epochs x ceil(n / B)."""
  return epochs * -(-np.asarray(num_examples, np.int64) // batch)


def padded_steps(steps: int) -> int:
  """S rounded up to a multiple of 1/8 of the power of two above it (exact up to 8).

  At most 25% padding and four distinct sizes per doubling (..., 16, 20, 24, 28, 32,
  40, ...), so a round whose S varies with its clients retraces rarely.
  """
  if steps <= 8:
    return max(int(steps), 1)
  unit = 1 << (int(steps).bit_length() - 3)
  return -(-int(steps) // unit) * unit


def round_local_steps(num_examples: np.ndarray, epochs: int, batch: int, max_steps: int) -> int:
  """The round's S for sampled clients of [K] sizes: padded max of their epoch steps, capped."""
  longest = int(np.minimum(epoch_steps(num_examples, epochs, batch), max_steps).max(initial=1))
  return min(padded_steps(longest), max_steps)


def client_epoch_indices(indices: np.ndarray, epochs: int, steps: int, batch: int,
                         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """[S, B] indices and [S, B] mask for one client: `epochs` passes, then padding.

  Each pass is a permutation of the n indices in ceil(n / B) batches, the last one
  partial; passes past `steps` are cut off (the cap), steps past the passes masked.
  """
  n = len(indices)
  out = np.zeros((steps, batch), np.int64)
  mask = np.zeros((steps, batch), bool)
  per_epoch = -(-n // batch)
  if n == 0:
    return out, mask
  for e in range(min(epochs, -(-steps // per_epoch))):
    rows = np.zeros(per_epoch * batch, np.int64)
    rows[:n] = indices[rng.permutation(n)]
    valid = np.arange(per_epoch * batch) < n
    lo = e * per_epoch
    hi = min(lo + per_epoch, steps)
    out[lo:hi] = rows.reshape(per_epoch, batch)[:hi - lo]
    mask[lo:hi] = valid.reshape(per_epoch, batch)[:hi - lo]
  return out, mask


def round_batches(split: Split, client_indices: list[np.ndarray], client_ids: np.ndarray,
                  *, steps: int, batch: int, seed: int, round_index: int,
                  padded_k: int | None = None, epochs: int | None = None,
                  inputs: np.ndarray | None = None):
  """Stacks the local data of K clients, padded with empty clients to `padded_k`.

  Args:
    split: the training split all clients index into.
    client_indices: K index arrays (one per sampled client).
    client_ids: [K] global ids of the sampled clients.
    steps, batch: S local steps of B examples.
    epochs: if set, each client runs min(epochs x ceil(n_k / B), S) valid steps
      of `epochs` passes over its data (client_epoch_indices); None: S steps.
    seed, round_index: with the client id, seed each client's example order.
    padded_k: K' >= K; clients K..K'-1 are padding (no data, weight 0).
    inputs: per-example rows to gather instead of `split.images`, e.g. [N, F] cached
      frozen features (feature_cache.py); None = the images.

  Returns:
    dict of numpy arrays: pixels [K', S, B, H, W, 3] uint8 (or [K', S, B, F] rows of
    `inputs`), labels [K', S, B] int32,
    mask [K', S, B] bool, num_examples [K'] int64 (0 for padding), client_ids [K'] int32.
  """
  k = len(client_indices)
  padded_k = k if padded_k is None else padded_k
  if padded_k < k:
    raise ValueError(f"padded_k={padded_k} < K={k}")
  idx = np.zeros((padded_k, steps, batch), np.int64)
  mask = np.zeros((padded_k, steps, batch), bool)
  sizes = np.zeros((padded_k,), np.int64)
  ids = np.zeros((padded_k,), np.int32)
  for i, (cid, indices) in enumerate(zip(client_ids, client_indices)):
    rng = np.random.default_rng((seed, round_index, int(cid)))
    if epochs is None:
      idx[i], mask[i] = client_example_indices(np.asarray(indices), steps, batch, rng)
    else:
      idx[i], mask[i] = client_epoch_indices(np.asarray(indices), epochs, steps, batch, rng)
    sizes[i] = len(indices)
    ids[i] = cid
  rows = split.images if inputs is None else inputs
  pixels = rows[idx.reshape(-1)].reshape(idx.shape + rows.shape[1:])
  labels = split.labels[idx.reshape(-1)].reshape(idx.shape).astype(np.int32)
  return dict(pixels=pixels, labels=labels, mask=mask, num_examples=sizes, client_ids=ids)
