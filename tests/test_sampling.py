"""Tests of per-round client sampling."""

from __future__ import annotations

import numpy as np
import pytest

from fedprompt_jax.fed import sampling


def test_deterministic_per_seed_and_round():
  first = sampling.sample_clients(1000, 10, seed=3, round_index=7)
  again = sampling.sample_clients(1000, 10, seed=3, round_index=7)
  np.testing.assert_array_equal(first, again)
  assert first.dtype == np.int64 and first.shape == (10,)


def test_differs_across_rounds_and_seeds():
  rounds = [tuple(sampling.sample_clients(1000, 10, seed=0, round_index=r)) for r in range(20)]
  assert len(set(rounds)) == 20
  assert tuple(sampling.sample_clients(1000, 10, seed=1, round_index=0)) != rounds[0]


@pytest.mark.parametrize("num_clients,per_round", [(1, 1), (7, 7), (100, 3), (100_000, 500)])
def test_distinct_sorted_in_range(num_clients, per_round):
  ids = sampling.sample_clients(num_clients, per_round, seed=0, round_index=0)
  assert ids.shape == (per_round,)
  assert np.all(np.diff(ids) > 0)  # Ascending and distinct.
  assert ids.min() >= 0 and ids.max() < num_clients


def test_uniform_over_clients():
  counts = np.bincount(np.concatenate(
      [sampling.sample_clients(20, 5, seed=0, round_index=r) for r in range(2000)]), minlength=20)
  # Each client is expected 500 times; sd ~ 19.
  assert counts.min() > 400 and counts.max() < 600


def test_full_participation():
  np.testing.assert_array_equal(sampling.all_clients(4), np.arange(4))
  np.testing.assert_array_equal(sampling.sample_clients(4, 4, seed=5, round_index=2),
                                np.arange(4))


@pytest.mark.parametrize("args,message", [
    ((10, 11, 0, 0), "fed.clients_per_round=11 exceeds fed.num_clients=10"),
    ((10, 0, 0, 0), "fed.clients_per_round=0 must be an int >= 1"),
    ((0, 1, 0, 0), "fed.num_clients=0 must be an int >= 1"),
    ((10, 2, -1, 0), "seed=-1 must be an int >= 0"),
    ((10, 2, 0, -3), "round_index=-3 must be an int >= 0"),
])
def test_bad_values(args, message):
  with pytest.raises(ValueError) as error:
    sampling.sample_clients(*args)
  assert str(error.value) == message


def test_all_clients_bad_value():
  with pytest.raises(ValueError) as error:
    sampling.all_clients(0)
  assert str(error.value) == "fed.num_clients=0 must be an int >= 1"
