"""Human-readable views of a Partition: a printed summary and a PNG figure.

Shape legend: N clients, C classes, D domains.
"""

from __future__ import annotations

import os

import numpy as np

from fedprompt_jax import atomic
from fedprompt_jax.data import partition as partition_lib
from fedprompt_jax.data import dataset as dataset_lib


def _stats_row(name: str, values: np.ndarray, total: bool = True) -> str:
  values = np.asarray(values)
  cells = [f"{values.min():>8g}", f"{np.median(values):>8g}", f"{values.max():>8g}"]
  cells.append(f"{values.sum():>10g}" if total else f"{'':>10}")
  return (f"  {name:<20}" + " ".join(cells)).rstrip()


def summary(partition: partition_lib.Partition, source: dataset_lib.DataSource) -> str:
  """Returns a short scheme-agnostic table describing `partition`.

  Args:
    partition: a partition of `source`.
    source: the data set the partition indexes.

  Returns:
    Multi-line text: client count, train/test sizes and classes per client
    (min/median/max/total), mean label entropy, clients per domain when the
    source has domains, and the content hash.
  """
  n, c = partition.num_clients, partition.num_classes
  train_sizes, test_sizes = partition.train_sizes(), partition.test_sizes()
  pair_client, _, counts = partition_lib.client_class_counts(
      partition.train_indices, partition.train_offsets, source.train.labels, c)
  classes = np.bincount(pair_client, minlength=n)
  p = counts / train_sizes[pair_client]
  entropy = np.bincount(pair_client, weights=-p * np.log2(p), minlength=n)
  held = train_sizes > 0
  mean_entropy = float(entropy[held].mean()) if held.any() else 0.0
  lines = [
      f"Partition of {source.name!r}: {n} clients, {c} classes, "
      f"{int(held.sum())} with train data",
      f"  {'':<20}{'min':>8} {'median':>8} {'max':>8} {'total':>10}",
      _stats_row("train examples", train_sizes),
      _stats_row("test examples", test_sizes),
      _stats_row("classes per client", classes, total=False),
      f"  mean label entropy  {mean_entropy:.3f} bits (uniform over C: {np.log2(c):.3f})",
  ]
  if source.domain_names is not None:
    num_domains = len(source.domain_names)
    client = partition_lib.entry_clients(partition.train_offsets)
    keys = np.unique(client * num_domains + source.train.domains[partition.train_indices])
    per_domain = np.bincount(keys % num_domains, minlength=num_domains)
    lines.append("  clients per domain  " + ", ".join(
        f"{name} {count}" for name, count in zip(source.domain_names, per_domain)))
  lines.append(f"  content hash        {partition.content_hash()}")
  return "\n".join(lines)


def save_png(partition: partition_lib.Partition, source: dataset_lib.DataSource,
             path: str | os.PathLike[str], max_clients: int = 50) -> None:
  """Draws class counts of the first clients and the client size histogram.

  Args:
    partition: a partition of `source`.
    source: the data set the partition indexes.
    path: where to write the PNG.
    max_clients: how many leading clients the heat map shows (>= 1).
  """
  if max_clients < 1:
    raise ValueError(f"max_clients={max_clients} must be >= 1")
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  shown = min(max_clients, partition.num_clients)
  end = partition.train_offsets[shown]
  client = partition_lib.entry_clients(partition.train_offsets[:shown + 1])
  keys = client * partition.num_classes + source.train.labels[partition.train_indices[:end]]
  counts = np.bincount(keys, minlength=shown * partition.num_classes).reshape(shown, -1)

  fig, (heat_ax, hist_ax) = plt.subplots(
      1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [2, 1]})
  image = heat_ax.imshow(counts.T, aspect="auto", interpolation="nearest", cmap="viridis")
  heat_ax.set_xlabel(f"client (first {shown} of {partition.num_clients})")
  heat_ax.set_ylabel("class")
  heat_ax.set_title("train examples per class")
  fig.colorbar(image, ax=heat_ax)
  hist_ax.hist(partition.train_sizes(), bins=min(50, max(1, partition.num_clients)))
  hist_ax.set_xlabel("train examples per client")
  hist_ax.set_ylabel("clients")
  hist_ax.set_title("client sizes")
  fig.suptitle(f"{source.name}: {partition.num_clients} clients, "
               f"hash {partition.content_hash()[:12]}")
  fig.tight_layout()
  atomic.save_figure(fig, path)
