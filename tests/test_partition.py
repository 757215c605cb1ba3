"""Tests of federated partitioning and its report."""

from __future__ import annotations

import time

import numpy as np
import pytest

from fedprompt_jax.data import partition
from fedprompt_jax.data import partition_report
from fedprompt_jax.data import source

_SCHEMES = ("iid", "dirichlet", "disjoint", "shards", "domains", "domain_dirichlet")


def _split(rng: np.random.Generator, n: int, num_classes: int,
           num_domains: int | None) -> source.Split:
  images = np.broadcast_to(np.zeros((1, 1, 1, 3), np.uint8), (n, 1, 1, 3))
  labels = rng.integers(0, num_classes, n).astype(np.int32)
  domains = None if num_domains is None else rng.integers(0, num_domains, n).astype(np.int32)
  return source.Split(images, labels, domains)


def _fake(n_train: int = 2000, n_test: int = 600, num_classes: int = 10,
          num_domains: int | None = 4, seed: int = 0) -> source.DataSource:
  """A DataSource of 1x1 black images with random labels (and domains)."""
  rng = np.random.default_rng(seed)
  return source.DataSource(
      name="fake", class_names=tuple(f"class {i}" for i in range(num_classes)),
      train=_split(rng, n_train, num_classes, num_domains),
      test=_split(rng, n_test, num_classes, num_domains),
      domain_names=None if num_domains is None else tuple(f"d{i}" for i in range(num_domains)))


@pytest.fixture(scope="module")
def data() -> source.DataSource:
  return _fake()


def _make(data, scheme, seed=0, **kwargs) -> partition.Partition:
  kwargs.setdefault("num_clients", 5)
  return partition.make_partition(data, scheme=scheme, seed=seed, **kwargs)


def _classes_and_entropy(p: partition.Partition, labels: np.ndarray) -> tuple[float, float]:
  hist = p.label_histograms(labels)
  probs = hist / hist.sum(1, keepdims=True)
  entropy = -np.sum(np.where(probs > 0, probs * np.log(np.where(probs > 0, probs, 1)), 0), 1)
  return float((hist > 0).sum(1).mean()), float(entropy.mean())


@pytest.mark.parametrize("scheme", _SCHEMES)
def test_same_seed_same_partition_other_seed_differs(data, scheme):
  first, again = _make(data, scheme, seed=0), _make(data, scheme, seed=0)
  assert first.content_hash() == again.content_hash()
  np.testing.assert_array_equal(first.train_indices, again.train_indices)
  np.testing.assert_array_equal(first.test_indices, again.test_indices)
  other = _make(data, scheme, seed=1)
  assert other.content_hash() != first.content_hash()


@pytest.mark.parametrize("scheme", _SCHEMES)
def test_indices_in_range_and_train_used_once(data, scheme):
  p = _make(data, scheme)
  assert p.num_clients == 5
  assert np.unique(p.train_indices).size == p.train_indices.size
  assert p.train_indices.min() >= 0 and p.train_indices.max() < len(data.train)
  assert p.test_indices.min() >= 0 and p.test_indices.max() < len(data.test)
  assert p.train_sizes().sum() == p.train_indices.size
  for k in range(p.num_clients):
    assert np.all(np.diff(p.train_of(k)) > 0)
    assert np.all(np.diff(p.test_of(k)) >= 0)
  hist = p.label_histograms(data.train.labels)
  assert hist.shape == (5, 10)
  np.testing.assert_array_equal(hist.sum(1), p.train_sizes())
  np.testing.assert_array_equal(p.label_histograms(data.test.labels, "test").sum(1),
                                p.test_sizes())


def test_seed_zero_is_an_ordinary_seed(data):
  hashes = {_make(data, "iid", seed=s).content_hash() for s in (0, 1, 2)}
  assert len(hashes) == 3


def test_iid_sizes_differ_by_at_most_one(data):
  p = _make(data, "iid", num_clients=7)
  assert p.train_sizes().max() - p.train_sizes().min() <= 1
  assert p.train_sizes().sum() == len(data.train)


def test_dirichlet_small_alpha_is_more_skewed(data):
  labels = data.train.labels
  skewed = _classes_and_entropy(_make(data, "dirichlet", num_clients=20, alpha=0.05), labels)
  flat = _classes_and_entropy(_make(data, "dirichlet", num_clients=20, alpha=100.0), labels)
  assert skewed[0] < 5 < flat[0] == 10
  assert skewed[1] < 1.0 < 2.0 < flat[1]


def test_dirichlet_has_no_client_id_bias():
  # 1000 clients, ~20 examples per class: every client expects 2 examples, so
  # the first 50 expect 100 (sd ~5); rounding cuts down at a fixed grid gave ~50.
  data = _fake(n_train=2000, num_classes=100, num_domains=None)
  p = partition.make_partition(data, scheme="dirichlet", num_clients=1000, seed=0, alpha=1.0,
                               min_size=0)
  sizes = p.train_sizes()
  assert 80 < sizes[:50].sum() < 120
  assert 80 < sizes[-50:].sum() < 120


def test_dirichlet_min_size(data):
  p = _make(data, "dirichlet", num_clients=20, alpha=0.3, min_size=40)
  assert p.train_sizes().min() >= 40
  with pytest.raises(ValueError) as error:
    _make(data, "dirichlet", num_clients=50, alpha=0.01, min_size=30)
  assert str(error.value) == (
      "fed.min_size=30 not met after 100 Dirichlet draws with fed.alpha=0.01 and "
      "fed.num_clients=50; use a larger fed.alpha or fewer fed.num_clients")


def test_disjoint_classes(data):
  p = _make(data, "disjoint", num_clients=4, classes_per_client=2)
  held = p.label_histograms(data.train.labels) > 0
  np.testing.assert_array_equal(held.sum(1), 2)
  assert held.sum(0).max() == 1  # No class shared by two clients.
  for k in range(4):  # Every train example of its classes.
    assert p.train_sizes()[k] == np.isin(data.train.labels, np.flatnonzero(held[k])).sum()


def test_shards_are_label_sorted_runs(data):
  p = _make(data, "shards", num_clients=10, shards_per_client=2)
  np.testing.assert_array_equal(p.train_sizes(), 200)  # 2000 examples in 20 shards.
  ranks = np.empty(len(data.train), np.int64)  # Position in label-sorted order.
  ranks[np.argsort(data.train.labels, kind="stable")] = np.arange(len(data.train))
  sorted_labels = np.sort(data.train.labels)
  for k in range(10):
    mine = np.sort(sorted_labels[ranks[p.train_of(k)]])
    # Two shards of 100 label-sorted examples each span at most 2 classes.
    assert np.unique(mine).size <= 4
  assert _classes_and_entropy(p, data.train.labels)[0] <= 4


def test_domains(data):
  p = _make(data, "domains", num_clients=6, domains_per_client=2)
  own = [set(np.unique(data.train.domains[p.train_of(k)])) for k in range(6)]
  assert all(len(domains) == 2 for domains in own)
  holders = np.bincount([d for domains in own for d in domains], minlength=4)
  assert holders.min() == holders.max() == 3  # All 4 domains, 6 * 2 / 4 holders each.
  assert p.train_sizes().sum() == len(data.train)
  for k in range(6):  # Test examples come from the client's own domains too.
    assert set(np.unique(data.test.domains[p.test_of(k)])) <= own[k]


def _domain_skew(p: partition.Partition, data: source.DataSource) -> float:
  """Mean over clients of the total-variation distance between a client's label
  distribution and that of its whole domain (0 = iid labels inside the domain)."""
  labels, domains = data.train.labels, data.train.domains
  distances = []
  for k in range(p.num_clients):
    mine = p.train_of(k)
    (d,) = np.unique(domains[mine])
    own = np.bincount(labels[mine], minlength=data.num_classes) / mine.size
    pool = labels[domains == d]
    ref = np.bincount(pool, minlength=data.num_classes) / pool.size
    distances.append(0.5 * np.abs(own - ref).sum())
  return float(np.mean(distances))


def test_domain_dirichlet(data):
  p = _make(data, "domain_dirichlet", num_clients=10, alpha=0.5)
  own = [np.unique(data.train.domains[p.train_of(k)]) for k in range(10)]
  assert all(d.size == 1 for d in own)  # One domain per client ...
  holders = np.bincount([int(d[0]) for d in own], minlength=4)
  assert sorted(holders) == [2, 2, 3, 3]  # ... clients spread evenly over the 4 domains.
  used = np.sort(p.train_indices)  # Every train example assigned exactly once.
  np.testing.assert_array_equal(used, np.arange(len(data.train)))
  for k in range(10):  # Test examples from the client's own domain.
    assert set(np.unique(data.test.domains[p.test_of(k)])) == {int(own[k][0])}


def test_domain_dirichlet_skew_decreases_with_alpha(data):
  skew = [_domain_skew(_make(data, "domain_dirichlet", num_clients=8, alpha=a), data)
          for a in (0.05, 1.0, 1000.0)]
  assert skew[0] > skew[1] > skew[2]
  assert skew[0] > 0.4 and skew[2] < 0.1  # Strong skew at 0.05, near-iid labels at 1000.
  # "domains" (iid inside a domain) has the skew of near-iid labels too.
  assert _domain_skew(_make(data, "domains", num_clients=8), data) < 0.1


def test_domain_dirichlet_errors(data):
  with pytest.raises(ValueError) as error:
    _make(data, "domain_dirichlet", num_clients=3)
  assert str(error.value) == ("fed.num_clients=3 is below the 4 domains of 'fake'; "
                              "fed.scheme='domain_dirichlet' gives each domain a client")
  with pytest.raises(ValueError) as error:
    _make(_fake(num_domains=None), "domain_dirichlet")
  assert "needs a data source with domains" in str(error.value)
  with pytest.raises(ValueError) as error:
    _make(data, "domain_dirichlet", num_clients=40, alpha=0.01, min_size=10)
  assert str(error.value).startswith("fed.min_size=10 not met after 100 Dirichlet draws in domain")


def test_domains_test_split_falls_back_to_any_domain():
  data = _fake()
  only_d0 = source.Split(data.test.images, data.test.labels, np.zeros_like(data.test.domains))
  data = source.DataSource(data.name, data.class_names, data.train, only_d0, data.domain_names)
  p = partition.make_partition(data, scheme="domains", num_clients=4, seed=0)
  np.testing.assert_array_equal(
      p.test_sizes(), np.maximum(1, np.floor(0.25 * p.train_sizes() + 0.5)))
  np.testing.assert_array_equal(data.test.domains[p.test_indices], 0)


def test_shots_cap_keeps_a_subset(data):
  full = _make(data, "iid", num_clients=4)
  few = _make(data, "iid", num_clients=4, shots=3)
  hist = few.label_histograms(data.train.labels)
  np.testing.assert_array_equal(hist, 3)  # Every class has >= 3 examples per client.
  for k in range(4):
    assert set(few.train_of(k)) <= set(full.train_of(k))


@pytest.mark.parametrize("scheme,kwargs", [
    ("dirichlet", {"alpha": 0.3}), ("shards", {}), ("domains", {"domains_per_client": 2}),
    ("iid", {"test_fraction": 0.1, "min_test": 3}), ("dirichlet", {"test_fraction": 1.0})])
def test_test_split_matches_train_proportions(data, scheme, kwargs):
  p = _make(data, scheme, num_clients=8, **kwargs)
  train = p.label_histograms(data.train.labels)
  test = p.label_histograms(data.test.labels, "test")
  sizes = p.train_sizes()
  wanted = np.maximum(kwargs.get("min_test", 1),
                      np.floor(kwargs.get("test_fraction", 0.25) * sizes + 0.5))
  np.testing.assert_array_equal(p.test_sizes(), wanted)
  ideal = train * (wanted / sizes)[:, None]
  assert np.all(np.abs(test - ideal) < 1)  # Largest-remainder rounding.
  for k in range(8):  # Without replacement where each class pool is large enough.
    within = test[k] <= np.bincount(data.test.labels, minlength=10)
    if within.all() and scheme != "domains":
      assert np.unique(p.test_of(k)).size == p.test_of(k).size


def test_test_split_with_replacement_when_pool_is_small():
  data = _fake(n_train=400, n_test=12, num_classes=2, num_domains=None)
  p = partition.make_partition(data, scheme="iid", num_clients=2, seed=0, test_fraction=0.5)
  np.testing.assert_array_equal(p.test_sizes(), 100)
  np.testing.assert_array_equal(np.abs(p.label_histograms(data.test.labels, "test")
                                       - p.label_histograms(data.train.labels) / 2) < 1, True)


def test_golden_hashes(data):
  # Computed once; a change here means partitions differ across machines or versions.
  assert _make(data, "iid").content_hash() == (
      "6a08ca753c55168b0eaa1960ac21566ab7caf00ad14b7c31701feb456b37283a")
  assert _make(data, "dirichlet", alpha=0.5).content_hash() == (
      "5f9455d7a9c16540ef298d75456d4003f4486ec57399946d75dbd1ca8c66669b")


def test_save_load_round_trip(data, tmp_path):
  p = _make(data, "domains", shots=5)
  p.save(tmp_path / "p.npz")
  loaded = partition.Partition.load(tmp_path / "p.npz")
  assert loaded.content_hash() == p.content_hash()
  for name in ("train_indices", "train_offsets", "test_indices", "test_offsets"):
    np.testing.assert_array_equal(getattr(loaded, name), getattr(p, name))
  assert loaded.num_classes == p.num_classes


def test_bad_offsets_rejected():
  with pytest.raises(ValueError, match="train_offsets must rise from 0 to 3"):
    partition.Partition(np.arange(3), np.array([0, 2]), np.arange(0), np.array([0, 0]), 2)


def test_hundred_thousand_clients_fast():
  rng = np.random.default_rng(0)
  data = source.DataSource(
      name="big", class_names=tuple(f"c{i}" for i in range(10)),
      train=_split(rng, 120_000, 10, None), test=_split(rng, 20_000, 10, None))
  start = time.perf_counter()
  p = partition.make_partition(data, scheme="dirichlet", num_clients=100_000, seed=0,
                               alpha=0.5, min_size=0)
  elapsed = time.perf_counter() - start
  assert elapsed < 10, elapsed
  assert p.num_clients == 100_000 and p.train_indices.size == 120_000
  assert np.unique(p.train_indices).size == 120_000


@pytest.mark.parametrize("kwargs,message", [
    ({"scheme": "pathological"},
     "fed.scheme='pathological' is unknown; valid: dirichlet, disjoint, domain_dirichlet, "
     "domains, iid, shards"),
    ({"num_clients": 0}, "fed.num_clients=0 must be an int >= 1"),
    ({"num_clients": 2001}, "fed.num_clients=2001 exceeds the 2000 training examples"),
    ({"alpha": 0.0}, "fed.alpha=0.0 must be > 0"),
    ({"alpha": float("nan")}, "fed.alpha=nan must be > 0"),
    ({"seed": -1}, "seed=-1 must be a non-negative int"),
    ({"classes_per_client": 0}, "fed.classes_per_client=0 must be an int >= 1"),
    ({"scheme": "disjoint", "num_clients": 6, "classes_per_client": 2},
     "fed.num_clients=6 times fed.classes_per_client=2 exceeds the 10 classes"),
    ({"shards_per_client": 0}, "fed.shards_per_client=0 must be an int >= 1"),
    ({"scheme": "shards", "num_clients": 1000, "shards_per_client": 3},
     "fed.num_clients=1000 times fed.shards_per_client=3 exceeds the 2000 training examples"),
    ({"domains_per_client": 0}, "fed.domains_per_client=0 must be an int >= 1"),
    ({"scheme": "domains", "domains_per_client": 5},
     "fed.domains_per_client=5 exceeds the 4 domains of 'fake'"),
    ({"shots": 0}, "fed.shots=0 must be an int >= 1, or None for all examples"),
    ({"min_size": -1}, "fed.min_size=-1 must be an int >= 0"),
    ({"num_clients": 100, "min_size": 21},
     "fed.num_clients=100 times fed.min_size=21 exceeds the 2000 training examples"),
    ({"test_fraction": 0.0}, "fed.test_fraction=0.0 must lie in (0, 1]"),
    ({"test_fraction": 1.5}, "fed.test_fraction=1.5 must lie in (0, 1]"),
    ({"min_test": -1}, "fed.min_test=-1 must be an int >= 0"),
    ({"scheme": "disjoint", "num_clients": 5, "classes_per_client": 2, "min_size": 399},
     "fed.min_size=399 not met: fed.scheme='disjoint' gives client 3 381 training examples"),
])
def test_bad_values(data, kwargs, message):
  kwargs = {"scheme": "iid", "num_clients": 5, "seed": 0, **kwargs}
  with pytest.raises(ValueError) as error:
    partition.make_partition(data, **kwargs)
  assert str(error.value) == message


def test_domains_scheme_needs_domains():
  data = _fake(num_domains=None)
  with pytest.raises(ValueError) as error:
    partition.make_partition(data, scheme="domains", num_clients=2, seed=0)
  assert str(error.value) == ("fed.scheme='domains' needs a data source with domains; "
                              "'fake' has none")


def test_report(data, tmp_path):
  p = _make(data, "domains", num_clients=6, domains_per_client=2)
  text = partition_report.summary(p, data)
  assert p.content_hash() in text
  assert "6 clients" in text and "d0 3, d1 3, d2 3, d3 3" in text
  assert f"{p.train_sizes().sum():>10g}" in text.splitlines()[2]
  partition_report.save_png(p, data, tmp_path / "p.png", max_clients=4)
  assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
