"""Which test examples the robust evaluation attacks (`adv.eval_subset`).

Attacking every test image is costly, so robust accuracy is measured on `adv.eval_examples`
of them. "first" takes the first ones (the historical choice: for a split ordered by domain
or class these are one domain or a few classes). "stratified" takes a seeded sample spread
evenly over the (class, domain) cells: each cell gives floor or ceil of n / cells examples
where it has them, the rest going to the cells that still have examples. The sample depends
only on the split's labels and domains, n and `adv.eval_subset_seed`, never on the method or
the run's seed, so every run of a comparison attacks the same images.
"""

from __future__ import annotations

import numpy as np

from fedprompt_jax.data.dataset import Split

MODES = ("first", "stratified")


def robust_rows(split: Split, n: int, mode: str = "first", seed: int = 0) -> np.ndarray:
  """The sorted [min(n, N)] int64 row indices of `split` that the robust evaluation attacks.

  Args:
    split: the test split (its labels [N] and, if any, domains [N] define the cells).
    n: how many examples.
    mode: "first" (rows 0..n-1) or "stratified" (see the module docstring).
    seed: the sample's seed ("stratified" only).
  """
  if mode not in MODES:
    raise ValueError(f"adv.eval_subset={mode!r} is unknown; valid: {', '.join(MODES)}")
  n = min(n, len(split))
  if mode == "first" or n == len(split):
    return np.arange(n, dtype=np.int64)
  domains = np.zeros_like(split.labels) if split.domains is None else split.domains
  cell = split.labels.astype(np.int64) * (int(domains.max()) + 1) + domains
  rng = np.random.default_rng(seed)
  # Each cell's rows in a seeded order; then rank r of every cell before rank r + 1 of any
  # (cells in a seeded order within a rank): the first n of that order are the sample.
  cells = np.unique(cell)
  cell_rank = rng.permutation(len(cells))[np.searchsorted(cells, cell)]
  within = np.empty(len(cell), np.int64)
  for c in cells:
    rows = np.flatnonzero(cell == c)
    within[rng.permutation(rows)] = np.arange(len(rows))
  order = np.lexsort((cell_rank, within))
  return np.sort(order[:n])
