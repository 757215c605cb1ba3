"""The robust evaluation's examples (`adv.eval_subset`) and the per-radius worst case."""

import os
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedprompt_jax import config as config_lib
from fedprompt_jax import eval_subset
from fedprompt_jax import evaluate
from fedprompt_jax import train
from fedprompt_jax.attacks.spec import radius_groups, robust_accuracy
from fedprompt_jax.data.source import Split

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "launch"))


def _ordered_split() -> Split:
  """A test split ordered by domain, then class (as the shapes world's domains are
  concatenated): 3 domains x 4 classes, unequal cells; cell (class 3, domain 2) has 1 row."""
  labels, domains = [], []
  for d in range(3):
    for k in range(4):
      size = 1 if (k, d) == (3, 2) else 5 + k + d
      labels += [k] * size
      domains += [d] * size
  n = len(labels)
  return Split(np.zeros((n, 2, 2, 3), np.uint8), np.asarray(labels, np.int32),
               np.asarray(domains, np.int32))


def _cells(split, rows):
  return {(int(k), int(d)): int(((split.labels[rows] == k) & (split.domains[rows] == d)).sum())
          for k in range(4) for d in range(3)}


def test_first_is_the_first_rows():
  split = _ordered_split()
  np.testing.assert_array_equal(eval_subset.robust_rows(split, 10, "first"), np.arange(10))
  # Why "stratified" exists: the first rows of a split ordered by domain are one domain.
  assert set(split.domains[:10].tolist()) == {0} and set(split.labels[:10].tolist()) == {0, 1}


def test_stratified_spreads_over_every_class_and_domain():
  split = _ordered_split()
  n = 36  # 12 cells: 3 each, but cell (3, 2) has only 1 row: its 2 go to other cells
  rows = eval_subset.robust_rows(split, n, "stratified", seed=0)
  assert len(rows) == n and len(np.unique(rows)) == n and np.all(np.diff(rows) > 0)
  counts = _cells(split, rows)
  assert counts[(3, 2)] == 1
  assert sorted(v for cell, v in counts.items() if cell != (3, 2)) == [3] * 9 + [4] * 2


def test_stratified_is_seeded_and_the_same_for_any_run():
  split = _ordered_split()
  a = eval_subset.robust_rows(split, 20, "stratified", seed=0)
  np.testing.assert_array_equal(a, eval_subset.robust_rows(split, 20, "stratified", seed=0))
  assert not np.array_equal(a, eval_subset.robust_rows(split, 20, "stratified", seed=1))
  counts = _cells(split, a)  # 20 over 12 cells: each holds 1 or 2
  assert set(counts.values()) == {1, 2}


def test_stratified_without_domains_and_beyond_the_split():
  split = _ordered_split()
  plain = Split(split.images, split.labels)
  rows = eval_subset.robust_rows(plain, 8, "stratified", seed=3)
  assert np.bincount(plain.labels[rows], minlength=4).tolist() == [2, 2, 2, 2]
  np.testing.assert_array_equal(eval_subset.robust_rows(plain, 10**6, "stratified"),
                                np.arange(len(plain)))


def test_run_attacks_the_stratified_rows():
  """Run.robust_report attacks exactly the stratified sample (labels seen by the attack)."""
  split = _ordered_split()
  seen = []

  def fake(frozen, params, aux, extra, client, pixels, labels, indices, key):
    seen.append(np.asarray(labels))
    return {"clean": labels == 0}, {"clean": jnp.zeros(pixels.shape[0])}

  c = config_lib.default_config()
  c.adv.eval_subset, c.adv.eval_subset_seed = "stratified", 4
  run = types.SimpleNamespace(c=c, source=types.SimpleNamespace(test=split), frozen=None,
                              aux=None, global_client=None, sanity_robust=None)
  out = train.Run.robust_report(run, evaluate.Robust({}, fake), None, None, 24, 64)
  rows = eval_subset.robust_rows(split, 24, "stratified", 4)
  labels = np.concatenate(seen)[:24]
  np.testing.assert_array_equal(labels, split.labels[rows])
  assert out["robust_acc/clean"] == pytest.approx(np.mean(split.labels[rows] == 0))


@pytest.mark.parametrize("key,value,match", [
    ("eval_subset", "random", "adv.eval_subset='random'"),
    ("eval_subset_seed", -1, "adv.eval_subset_seed=-1"),
    ("eval_subset_seed", True, "adv.eval_subset_seed=True")])
def test_bad_subset_keys_are_refused(key, value, match):
  c = config_lib.default_config()
  c.adv[key] = value
  with pytest.raises(config_lib.ConfigError, match=match):
    config_lib.validate(c)


def test_worst_case_per_radius():
  w = jax.random.normal(jax.random.key(0), (4 * 4 * 3, 5))
  model = lambda x: x.reshape(x.shape[0], -1) @ (3 * w)
  x = jax.random.uniform(jax.random.key(1), (32, 4, 4, 3))
  y = jnp.argmax(model(x), -1)
  specs = ["pgd:linf:eps=2/255:steps=3", "fgsm:linf:eps=8/255", "pgd:linf:eps=8/255:steps=3",
           "pgd:l2:eps=0.5:steps=2"]
  groups = radius_groups(specs)
  assert groups == {"worst@linf:eps=2/255": (specs[0],), "worst@linf:eps=8/255": tuple(specs[1:3]),
                    "worst@l2:eps=0.5": (specs[3],)}
  out = {k: np.asarray(v) for k, v in robust_accuracy(model, specs, x, y, jax.random.key(2)).items()}
  for group, names in groups.items():
    np.testing.assert_array_equal(out[group], np.all([out[n] for n in names], axis=0))
  np.testing.assert_array_equal(out["worst"], np.all([out[g] for g in groups], axis=0))
  assert out["worst@linf:eps=8/255"].sum() < out["worst@linf:eps=2/255"].sum()  # not trivial
  assert radius_groups(specs[1:3]) == {}  # one radius: "worst" is that radius's worst case


def test_per_radius_worst_case_is_labelled_and_ordered():
  from fedprompt_jax import plot_compare  # pylint: disable=import-outside-toplevel
  import compare  # pylint: disable=import-outside-toplevel
  assert plot_compare.metric_label("robust_acc/worst@linf:eps=1/255") == "worst case\nlinf:eps=1/255"
  record = {"robust_acc/worst": 0.1, "robust_acc/worst@linf:eps=1/255": 0.2,
            "robust_acc/pgd:linf:eps=1/255:steps=10": 0.3, "robust_acc/clean": 0.5}
  assert compare.robust_keys({"run": [record]}) == (
      "robust_acc/clean", "robust_acc/pgd:linf:eps=1/255:steps=10",
      "robust_acc/worst@linf:eps=1/255", "robust_acc/worst")
