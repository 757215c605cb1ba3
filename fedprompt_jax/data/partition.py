"""Splits a DataSource among federated clients, stored as CSR index lists.

A `Partition` costs only index arrays, so N = 100,000 clients is cheap: client
k owns `train_indices[train_offsets[k]:train_offsets[k + 1]]` (indices into
`source.train`, ascending within a client) and a per-client test split drawn
from `source.test` with the class proportions of its train split.

Shape legend: N clients, C classes, n train examples.

Every scheme first decides an owner for each train example ([n] int64, -1 for
unused), so no example goes to two clients. Randomness comes from
`np.random.SeedSequence(seed).spawn(3)`: one stream for the scheme, one for the
`shots` cap and one for the test split, so changing `shots` leaves the scheme's
draw unchanged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from typing import Callable

import numpy as np

from fedprompt_jax import atomic
from fedprompt_jax.data import dataset as dataset_lib

_HASH_TAG = b"fedprompt_jax.Partition/v1"
_MAX_DIRICHLET_TRIES = 100


@dataclasses.dataclass(frozen=True)
class Partition:
  """Per-client train and test index lists in CSR form.

  Attributes:
    train_indices: [total_train] int64 indices into source.train, client-major,
      ascending within a client.
    train_offsets: [N+1] int64; client k owns
      train_indices[train_offsets[k]:train_offsets[k+1]].
    test_indices: [total_test] int64 indices into source.test, client-major,
      ascending within a client (may repeat within and across clients).
    test_offsets: [N+1] int64, as train_offsets.
    num_classes: C, the number of classes of the source.
  """

  train_indices: np.ndarray
  train_offsets: np.ndarray
  test_indices: np.ndarray
  test_offsets: np.ndarray
  num_classes: int

  def __post_init__(self):
    for name in ("train_indices", "train_offsets", "test_indices", "test_offsets"):
      value = np.array(getattr(self, name), dtype=np.int64, copy=True).reshape(-1)
      value.setflags(write=False)
      object.__setattr__(self, name, value)
    object.__setattr__(self, "num_classes", int(self.num_classes))
    for split in ("train", "test"):
      indices, offsets = getattr(self, f"{split}_indices"), getattr(self, f"{split}_offsets")
      if (offsets.size < 2 or offsets[0] != 0 or offsets[-1] != indices.size
          or np.any(np.diff(offsets) < 0)):
        raise ValueError(f"{split}_offsets must rise from 0 to {indices.size} with N+1 >= 2 "
                         f"entries, got {offsets.size} entries")
    if self.train_offsets.size != self.test_offsets.size:
      raise ValueError(f"train_offsets ({self.train_offsets.size}) and test_offsets "
                       f"({self.test_offsets.size}) must have the same length N+1")
    if self.num_classes < 1:
      raise ValueError(f"num_classes={self.num_classes} must be >= 1")

  @property
  def num_clients(self) -> int:
    return int(self.train_offsets.size - 1)

  def train_of(self, k: int) -> np.ndarray:
    """[n_k] int64 indices into source.train held by client k."""
    return self.train_indices[self.train_offsets[k]:self.train_offsets[k + 1]]

  def test_of(self, k: int) -> np.ndarray:
    """[t_k] int64 indices into source.test of client k's test split."""
    return self.test_indices[self.test_offsets[k]:self.test_offsets[k + 1]]

  def train_sizes(self) -> np.ndarray:
    """[N] int64 train examples per client."""
    return np.diff(self.train_offsets)

  def test_sizes(self) -> np.ndarray:
    """[N] int64 test examples per client."""
    return np.diff(self.test_offsets)

  def label_histograms(self, labels: np.ndarray, split: str = "train") -> np.ndarray:
    """Counts each client's examples per class.

    Args:
      labels: [n] int labels of the split the indices point into
        (source.train.labels or source.test.labels).
      split: "train" or "test".

    Returns:
      [N, C] int64 counts (dense: N * C * 8 bytes).
    """
    if split not in ("train", "test"):
      raise ValueError(f"split={split!r} is unknown; valid: test, train")
    indices, offsets = getattr(self, f"{split}_indices"), getattr(self, f"{split}_offsets")
    n, c = self.num_clients, self.num_classes
    keys = entry_clients(offsets) * c + np.asarray(labels, dtype=np.int64)[indices]
    return np.bincount(keys, minlength=n * c).reshape(n, c)

  def content_hash(self) -> str:
    """SHA-256 hex digest of the partition, equal on any machine.

    Hashes a tag, then for each of train_indices, train_offsets, test_indices,
    test_offsets its length and values as little-endian int64, then num_classes.
    """
    digest = hashlib.sha256(_HASH_TAG)
    for array in (self.train_indices, self.train_offsets, self.test_indices, self.test_offsets):
      digest.update(np.int64(array.size).astype("<i8").tobytes())
      digest.update(np.ascontiguousarray(array, dtype="<i8").tobytes())
    digest.update(np.int64(self.num_classes).astype("<i8").tobytes())
    return digest.hexdigest()

  def save(self, path: str | os.PathLike[str]) -> None:
    """Writes the partition to an uncompressed .npz file at `path` (through a temporary name)."""
    with atomic.replacing(path, "wb") as f:
      np.savez(f, train_indices=self.train_indices, train_offsets=self.train_offsets,
               test_indices=self.test_indices, test_offsets=self.test_offsets,
               num_classes=np.int64(self.num_classes))

  @classmethod
  def load(cls, path: str | os.PathLike[str]) -> Partition:
    """Reads a partition written by `save`."""
    with np.load(path, allow_pickle=False) as data:
      names = ("train_indices", "train_offsets", "test_indices", "test_offsets", "num_classes")
      missing = [name for name in names if name not in data.files]
      if missing:
        raise ValueError(f"{path} is not a saved Partition; missing arrays: {missing}")
      return cls(**{name: data[name] for name in names[:-1]},
                 num_classes=int(data["num_classes"]))


@dataclasses.dataclass(frozen=True)
class _Config:
  num_clients: int
  alpha: float
  classes_per_client: int
  shards_per_client: int
  domains_per_client: int
  min_size: int


@dataclasses.dataclass(frozen=True)
class _Assignment:
  owner: np.ndarray  # [n] int64 client of each train example, -1 if unused.
  client_domains: np.ndarray | None = None  # [N, D] bool, domain schemes only.


def _near_equal(count: int, parts: int) -> np.ndarray:
  """[count] part ids 0, 0, .., 1, .. of `parts` sizes differing by at most 1."""
  base, extra = divmod(count, parts)
  sizes = np.full(parts, base, np.int64)
  sizes[:extra] += 1
  return np.repeat(np.arange(parts, dtype=np.int64), sizes)


def _even_owner(rng, count: int, num_clients: int) -> np.ndarray:
  """[count] owners in a random order, client sizes differing by at most 1."""
  owner = np.empty(count, np.int64)
  owner[rng.permutation(count)] = _near_equal(count, num_clients)
  return owner


def _iid(rng, source: dataset_lib.DataSource, cfg: _Config) -> _Assignment:
  return _Assignment(_even_owner(rng, len(source.train), cfg.num_clients))


def _dirichlet_owner(rng, labels: np.ndarray, num_classes: int, num_clients: int,
                     alpha: float) -> np.ndarray:
  """[n] owner in [0, num_clients): per class, client proportions ~ Dir(alpha * ones)."""
  by_class = np.argsort(labels, kind="stable")
  class_bounds = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=num_classes))])
  clients = np.arange(num_clients, dtype=np.int64)
  concentration = np.full(num_clients, alpha)
  owner = np.empty(labels.size, np.int64)
  for c in range(num_classes):
    members = by_class[class_bounds[c]:class_bounds[c + 1]]
    if not members.size:
      continue
    proportions = rng.dirichlet(concentration)
    # Cut the permuted class at floor(cumsum(p) * n_c + u), the FedMA np.split
    # rule with a random offset u ~ U[0, 1): without it every class rounds
    # down at the same low client ids, which then hold too few examples.
    cuts = np.floor(np.cumsum(proportions) * members.size + rng.random()).astype(np.int64)
    cuts = np.minimum(cuts, members.size)
    cuts[-1] = members.size
    owner[rng.permutation(members)] = np.repeat(clients, np.diff(cuts, prepend=0))
  return owner


def _dirichlet(rng, source: dataset_lib.DataSource, cfg: _Config) -> _Assignment:
  """Per class, client proportions ~ Dir(alpha * ones(N)) (Hsu et al. 2019)."""
  labels, num_classes = source.train.labels, source.num_classes
  for _ in range(_MAX_DIRICHLET_TRIES):
    owner = _dirichlet_owner(rng, labels, num_classes, cfg.num_clients, cfg.alpha)
    if np.bincount(owner, minlength=cfg.num_clients).min() >= cfg.min_size:
      return _Assignment(owner)
  raise ValueError(
      f"fed.min_size={cfg.min_size} not met after {_MAX_DIRICHLET_TRIES} Dirichlet draws with "
      f"fed.alpha={cfg.alpha} and fed.num_clients={cfg.num_clients}; use a larger fed.alpha "
      "or fewer fed.num_clients")


def _disjoint(rng, source: dataset_lib.DataSource, cfg: _Config) -> _Assignment:
  """Client k holds all examples of `classes_per_client` classes of its own."""
  n, per, num_classes = cfg.num_clients, cfg.classes_per_client, source.num_classes
  if n * per > num_classes:
    raise ValueError(f"fed.num_clients={n} times fed.classes_per_client={per} exceeds the "
                     f"{num_classes} classes")
  class_owner = np.full(num_classes, -1, np.int64)
  class_owner[rng.permutation(num_classes)[:n * per]] = np.repeat(np.arange(n), per)
  return _Assignment(class_owner[source.train.labels])


def _shards(rng, source: dataset_lib.DataSource, cfg: _Config) -> _Assignment:
  """Label-sorted shards, `shards_per_client` random ones each (McMahan et al.)."""
  count, n, per = len(source.train), cfg.num_clients, cfg.shards_per_client
  if n * per > count:
    raise ValueError(f"fed.num_clients={n} times fed.shards_per_client={per} exceeds the "
                     f"{count} training examples")
  shuffled = rng.permutation(count)  # Random order within a label.
  by_label = shuffled[np.argsort(source.train.labels[shuffled], kind="stable")]
  shard_owner = np.repeat(np.arange(n, dtype=np.int64), per)[rng.permutation(n * per)]
  owner = np.empty(count, np.int64)
  owner[by_label] = shard_owner[_near_equal(count, n * per)]
  return _Assignment(owner)


def _domains(rng, source: dataset_lib.DataSource, cfg: _Config) -> _Assignment:
  """Each client holds `domains_per_client` domains, each split iid among its holders."""
  n, per = cfg.num_clients, cfg.domains_per_client
  if source.domain_names is None:
    raise ValueError(f"fed.scheme='domains' needs a data source with domains; "
                     f"{source.name!r} has none")
  num_domains = len(source.domain_names)
  if per > num_domains:
    raise ValueError(f"fed.domains_per_client={per} exceeds the {num_domains} domains of "
                     f"{source.name!r}")
  # Client k takes slots k*per .. k*per+per-1 of a cyclic seeded domain order:
  # distinct domains per client, each domain held by floor or ceil of N*per/D.
  order = rng.permutation(num_domains)
  slots = order[(np.arange(n)[:, None] * per + np.arange(per)[None, :]) % num_domains]
  client_domains = np.zeros((n, num_domains), bool)
  client_domains[np.arange(n)[:, None], slots] = True
  owner = np.full(len(source.train), -1, np.int64)
  for d in range(num_domains):
    holders = np.flatnonzero(client_domains[:, d])
    members = np.flatnonzero(source.train.domains == d)
    if holders.size and members.size:
      owner[members] = holders[_even_owner(rng, members.size, holders.size)]
  return _Assignment(owner, client_domains)


def _domain_dirichlet(rng, source: dataset_lib.DataSource, cfg: _Config) -> _Assignment:
  """Domain x Dirichlet: each client one domain, labels Dir(alpha)-skewed inside it.

  Client k holds domain order[k % D] of a seeded domain order (so domains have
  floor or ceil of N/D clients each); the examples of domain d are split among
  its clients as "dirichlet" splits a whole data set (per class, proportions
  ~ Dir(alpha * ones)), redrawn per domain until each client has min_size.
  """
  n = cfg.num_clients
  if source.domain_names is None:
    raise ValueError(f"fed.scheme='domain_dirichlet' needs a data source with domains; "
                     f"{source.name!r} has none")
  num_domains = len(source.domain_names)
  if n < num_domains:
    raise ValueError(f"fed.num_clients={n} is below the {num_domains} domains of "
                     f"{source.name!r}; fed.scheme='domain_dirichlet' gives each domain a client")
  order = rng.permutation(num_domains)
  domain_of = order[np.arange(n) % num_domains]
  client_domains = np.zeros((n, num_domains), bool)
  client_domains[np.arange(n), domain_of] = True
  owner = np.full(len(source.train), -1, np.int64)
  labels = source.train.labels
  for d in range(num_domains):
    holders = np.flatnonzero(domain_of == d)
    members = np.flatnonzero(source.train.domains == d)
    for _ in range(_MAX_DIRICHLET_TRIES):
      local = _dirichlet_owner(rng, labels[members], source.num_classes, holders.size, cfg.alpha)
      if np.bincount(local, minlength=holders.size).min() >= cfg.min_size:
        break
    else:
      raise ValueError(
          f"fed.min_size={cfg.min_size} not met after {_MAX_DIRICHLET_TRIES} Dirichlet draws "
          f"in domain {source.domain_names[d]!r} ({members.size} examples, {holders.size} "
          f"clients) with fed.alpha={cfg.alpha}; use a larger fed.alpha or fewer fed.num_clients")
    owner[members] = holders[local]
  return _Assignment(owner, client_domains)


SCHEMES: dict[str, Callable[..., _Assignment]] = {
    "dirichlet": _dirichlet,
    "disjoint": _disjoint,
    "domain_dirichlet": _domain_dirichlet,
    "domains": _domains,
    "iid": _iid,
    "shards": _shards,
}


def make_partition(source: dataset_lib.DataSource, *, scheme: str, num_clients: int, seed: int,
                   alpha: float = 0.5, classes_per_client: int = 2, shards_per_client: int = 2,
                   domains_per_client: int = 1, shots: int | None = None, min_size: int = 1,
                   test_fraction: float = 0.25, min_test: int = 1) -> Partition:
  """Splits `source` among `num_clients` clients.

  Args:
    source: the data set; train examples are split, test examples are drawn.
    scheme: a key of `SCHEMES`: "iid" (near-equal random parts), "dirichlet"
      (per-class Dir(alpha) proportions), "disjoint" (classes_per_client
      classes no other client holds), "shards" (shards_per_client label-sorted
      shards), "domains" (domains_per_client visual domains, split iid),
      "domain_dirichlet" (one domain per client, clients spread evenly over
      the domains, each domain's labels split Dir(alpha) among its clients).
    num_clients: N >= 1, at most the number of train examples.
    seed: non-negative int; the partition is a pure function of its arguments.
    alpha: Dirichlet concentration, > 0; small alpha means skewed labels.
    classes_per_client: classes per client for "disjoint".
    shards_per_client: shards per client for "shards".
    domains_per_client: domains per client for "domains".
    shots: if set, each client then keeps at most `shots` train examples per
      class (a seeded choice).
    min_size: fewest train examples per client before the `shots` cap;
      "dirichlet" redraws up to 100 times to meet it, other schemes raise.
    test_fraction: in (0, 1]; client k gets max(min_test, round(test_fraction
      * n_k)) test examples (none if n_k = 0) in its train class proportions,
      from its own domains under "domains" and "domain_dirichlet" where the
      test split has them.
      Classes missing from source.test contribute no test examples.
    min_test: fewest test examples of a non-empty client, >= 0.

  Returns:
    The Partition.
  """
  split, num_classes = source.train, source.num_classes
  if scheme not in SCHEMES:
    raise ValueError(f"fed.scheme={scheme!r} is unknown; valid: {', '.join(SCHEMES)}")
  _validate(len(split), num_clients=num_clients, seed=seed, alpha=alpha,
            classes_per_client=classes_per_client, shards_per_client=shards_per_client,
            domains_per_client=domains_per_client, shots=shots, min_size=min_size,
            test_fraction=test_fraction, min_test=min_test)
  cfg = _Config(num_clients=num_clients, alpha=float(alpha), classes_per_client=classes_per_client,
                shards_per_client=shards_per_client, domains_per_client=domains_per_client,
                min_size=min_size)
  scheme_seed, shots_seed, test_seed = np.random.SeedSequence(seed).spawn(3)
  assignment = SCHEMES[scheme](np.random.default_rng(scheme_seed), source, cfg)
  owner = assignment.owner
  sizes = np.bincount(owner[owner >= 0], minlength=num_clients)
  if sizes.min() < min_size:
    k = int(sizes.argmin())
    raise ValueError(f"fed.min_size={min_size} not met: fed.scheme={scheme!r} gives client {k} "
                     f"{sizes[k]} training examples")
  if shots is not None:
    owner = _cap_shots(np.random.default_rng(shots_seed), owner, split.labels, num_classes, shots)
  train_indices, train_offsets = _csr(owner, np.arange(owner.size, dtype=np.int64), num_clients)
  test_owner, test_indices = _draw_tests(
      np.random.default_rng(test_seed), train_indices, train_offsets, split.labels, source.test,
      num_classes, assignment.client_domains, test_fraction, min_test)
  test_indices, test_offsets = _csr(test_owner, test_indices, num_clients)
  return Partition(train_indices, train_offsets, test_indices, test_offsets, num_classes)


def _validate(num_train: int, *, num_clients, seed, alpha, classes_per_client, shards_per_client,
              domains_per_client, shots, min_size, test_fraction, min_test) -> None:
  """Checks each argument's own range; schemes check how arguments combine."""
  if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
    raise ValueError(f"seed={seed!r} must be a non-negative int")
  for name, value, low in (("num_clients", num_clients, 1),
                           ("classes_per_client", classes_per_client, 1),
                           ("shards_per_client", shards_per_client, 1),
                           ("domains_per_client", domains_per_client, 1),
                           ("min_size", min_size, 0), ("min_test", min_test, 0)):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
      raise ValueError(f"fed.{name}={value!r} must be an int >= {low}")
  if shots is not None and (not isinstance(shots, (int, np.integer)) or isinstance(shots, bool)
                            or shots < 1):
    raise ValueError(f"fed.shots={shots!r} must be an int >= 1, or None for all examples")
  if not (isinstance(alpha, (int, float, np.number)) and math.isfinite(alpha) and alpha > 0):
    raise ValueError(f"fed.alpha={alpha!r} must be > 0")
  if not (isinstance(test_fraction, (int, float, np.number)) and 0 < test_fraction <= 1):
    raise ValueError(f"fed.test_fraction={test_fraction!r} must lie in (0, 1]")
  if num_clients > num_train:
    raise ValueError(f"fed.num_clients={num_clients} exceeds the {num_train} training examples")
  if num_clients * min_size > num_train:
    raise ValueError(f"fed.num_clients={num_clients} times fed.min_size={min_size} exceeds the "
                     f"{num_train} training examples")


def _cap_shots(rng, owner: np.ndarray, labels: np.ndarray, num_classes: int,
               shots: int) -> np.ndarray:
  """Returns [n] owner with all but a random `shots` per (client, class) set to -1."""
  used = np.flatnonzero(owner >= 0)
  used = used[rng.permutation(used.size)]
  keys = owner[used] * num_classes + labels[used]
  order = np.argsort(keys, kind="stable")
  capped = owner.copy()
  capped[used[order][_rank_in_runs(keys[order]) >= shots]] = -1
  return capped


def entry_clients(offsets: np.ndarray) -> np.ndarray:
  """[m] int64 client of each entry of a CSR list with [N+1] `offsets`."""
  return np.repeat(np.arange(offsets.size - 1, dtype=np.int64), np.diff(offsets))


def client_class_counts(indices: np.ndarray, offsets: np.ndarray, labels: np.ndarray,
                        num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Sparse per-client class counts of a CSR split.

  Args:
    indices, offsets: the split's CSR lists ([m] indices into `labels`, [N+1]).
    labels: [n] int labels the indices point into.
    num_classes: C.

  Returns:
    ([P] client, [P] class, [P] count) for the P (client, class) pairs with a
    non-zero count, sorted by client then class.
  """
  keys, counts = np.unique(entry_clients(offsets) * num_classes + labels[indices],
                           return_counts=True)
  return keys // num_classes, keys % num_classes, counts


def _rank_in_runs(keys: np.ndarray) -> np.ndarray:
  """[m] position of each entry within its run of equal consecutive [m] keys."""
  starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
  return np.arange(keys.size) - np.repeat(starts, np.diff(np.r_[starts, keys.size]))


def _csr(owner: np.ndarray, values: np.ndarray,
         num_clients: int) -> tuple[np.ndarray, np.ndarray]:
  """Groups [m] values by [m] owner (-1 dropped), ascending within a client.

  Returns:
    ([m'] int64 values client-major, [N+1] int64 offsets).
  """
  keep = owner >= 0
  owner, values = owner[keep], values[keep]
  order = np.lexsort((values, owner))
  offsets = np.zeros(num_clients + 1, np.int64)
  np.cumsum(np.bincount(owner, minlength=num_clients), out=offsets[1:])
  return values[order].astype(np.int64), offsets


def _draw_tests(rng, train_indices: np.ndarray, train_offsets: np.ndarray,
                train_labels: np.ndarray, test: dataset_lib.Split, num_classes: int,
                client_domains: np.ndarray | None, test_fraction: float,
                min_test: int) -> tuple[np.ndarray, np.ndarray]:
  """Draws each client's test examples in its train class proportions.

  Works on the P (client, class) pairs present in the train split, never on a
  dense [N, C] table. Per pair, quotas use largest-remainder rounding (ties to
  the lower class); the draw is without replacement when the pool (test
  examples of that class, in the client's domains if any) is large enough.

  Returns:
    ([m] int64 owning client, [m] int64 indices into `test`).
  """
  num_clients, c = train_offsets.size - 1, num_classes
  sizes = np.diff(train_offsets)
  wanted = np.maximum(min_test, np.floor(test_fraction * sizes + 0.5).astype(np.int64))
  wanted[sizes == 0] = 0
  pair_client, pair_class, counts = client_class_counts(  # Sorted by client, then class.
      train_indices, train_offsets, train_labels, c)
  quota, remainder = np.divmod(counts * wanted[pair_client], sizes[pair_client])
  placed = np.bincount(pair_client, weights=quota, minlength=num_clients).astype(np.int64)
  order = np.lexsort((pair_class, -remainder, pair_client))
  quota[order] += _rank_in_runs(pair_client[order]) < (wanted - placed)[pair_client[order]]
  members, pool_start, pool_size = _pools(test, c, client_domains, pair_client, pair_class)
  quota[pool_size == 0] = 0
  pair, position = _draw_positions(rng, pool_size, quota)
  return pair_client[pair], members[pool_start[pair] + position]


def _pools(test: dataset_lib.Split, num_classes: int, client_domains: np.ndarray | None,
           pair_client: np.ndarray,
           pair_class: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Finds the test examples each (client, class) pair may draw from.

  Pools are the test examples of one class within one of the client domain
  sets (D-bit rows of client_domains), falling back to the class in any domain
  when that is empty.

  Returns:
    ([t'] int64 test indices grouped by pool, [P] start and [P] size of each
    pair's pool within it).
  """
  masks = [np.ones(len(test), bool)]
  pair_set = np.zeros(pair_client.size, np.int64)
  if client_domains is not None:
    domain_sets, client_set = np.unique(client_domains, axis=0, return_inverse=True)
    masks += [np.isin(test.domains, np.flatnonzero(row)) for row in domain_sets]
    pair_set = client_set.reshape(-1)[pair_client] + 1
  members, sizes = [], []
  for mask in masks:
    chosen = np.flatnonzero(mask)
    members.append(chosen[np.argsort(test.labels[chosen], kind="stable")])
    sizes.append(np.bincount(test.labels[chosen], minlength=num_classes))
  sizes = np.concatenate(sizes)
  starts = np.cumsum(sizes) - sizes
  pool = pair_set * num_classes + pair_class
  pool = np.where(sizes[pool] > 0, pool, pair_class)
  return np.concatenate(members).astype(np.int64), starts[pool], sizes[pool]


def _draw_positions(rng, pool_size: np.ndarray,
                    count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Draws count[g] positions in [0, pool_size[g]) for each of G groups.

  Distinct within a group when count <= pool_size (uniform over subsets),
  else with replacement. Costs O(sum(count) log) time: groups needing over
  half their pool shuffle it, sparser ones redraw duplicates until none remain.

  Returns:
    ([m] group of each draw, ascending, and [m] int64 positions).
  """
  group = np.repeat(np.arange(count.size, dtype=np.int64), count)
  size = pool_size[group]
  position = rng.integers(0, size)  # Final for groups drawn with replacement.
  is_dense = (count <= pool_size) & (2 * count > pool_size)
  dense = np.flatnonzero(is_dense & (count > 0))
  segment = np.repeat(dense, pool_size[dense])  # Shuffle whole pools, keep a prefix.
  local = _rank_in_runs(segment)  # position within its pool
  order = np.lexsort((rng.random(segment.size), segment))
  position[is_dense[group]] = local[order[_rank_in_runs(segment[order]) < count[segment[order]]]]
  sparse = np.flatnonzero((count <= pool_size)[group] & ~is_dense[group])
  while True:  # Redraw repeats in sparse groups; symmetry keeps subsets uniform.
    order = sparse[np.lexsort((position[sparse], group[sparse]))]
    repeat = order[1:][(group[order][1:] == group[order][:-1])
                       & (position[order][1:] == position[order][:-1])]
    if not repeat.size:
      return group, position
    position[repeat] = rng.integers(0, size[repeat])
