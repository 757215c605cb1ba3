"""Host side of a round: the sampled clients' local batches, masks and weights as numpy arrays.

Client k's S x B examples come from its own index list, reshuffled at every pass
(so S x B may exceed n_k: local epochs continue). A client with fewer than B
examples fills each batch with all of them and pads the rest (mask False). The
order depends only on (seed, round, client id), never on which other clients
were sampled or how K is padded.

Shapes: K clients, S local steps, B batch, H x W images.
"""

from __future__ import annotations

import numpy as np

from fedprompt_jax.data.source import Split


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


def round_batches(split: Split, client_indices: list[np.ndarray], client_ids: np.ndarray,
                  *, steps: int, batch: int, seed: int, round_index: int,
                  padded_k: int | None = None):
  """Stacks the local data of K clients, padded with empty clients to `padded_k`.

  Args:
    split: the training split all clients index into.
    client_indices: K index arrays (one per sampled client).
    client_ids: [K] global ids of the sampled clients.
    steps, batch: S local steps of B examples.
    seed, round_index: with the client id, seed each client's example order.
    padded_k: K' >= K; clients K..K'-1 are padding (no data, weight 0).

  Returns:
    dict of numpy arrays: pixels [K', S, B, H, W, 3] uint8, labels [K', S, B] int32,
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
    idx[i], mask[i] = client_example_indices(np.asarray(indices), steps, batch, rng)
    sizes[i] = len(indices)
    ids[i] = cid
  pixels = split.images[idx.reshape(-1)].reshape(idx.shape + split.images.shape[1:])
  labels = split.labels[idx.reshape(-1)].reshape(idx.shape).astype(np.int32)
  return dict(pixels=pixels, labels=labels, mask=mask, num_examples=sizes, client_ids=ids)
