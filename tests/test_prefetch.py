"""Round inputs built ahead (fed/prefetch.py) and read-back after the next dispatch (train.py):
bounded, ordered, errors on the caller's thread, and runs identical with fed.prefetch 0, 1, 2."""

import json
import os
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from fedprompt_jax import config as config_lib
from fedprompt_jax import finite
from fedprompt_jax import workdir as workdir_lib
from fedprompt_jax.fed import prefetch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---- the prefetcher ----------------------------------------------------------------------------

class Builds:
  """build(i) -> i * 10, recording how far it ran ahead of what was taken."""

  def __init__(self, fail_at=None):
    self.built, self.taken, self.most_ahead, self.fail_at = 0, 0, 0, fail_at
    self.threads = set()

  def __call__(self, i):
    self.threads.add(threading.get_ident())
    if i == self.fail_at:
      raise KeyError(f"item {i}")
    time.sleep(0.01)
    self.built += 1
    self.most_ahead = max(self.most_ahead, self.built - self.taken)
    return i * 10


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_results_in_order_and_at_most_depth_ahead(depth):
  b = Builds()
  with prefetch.Prefetcher(b, range(6), depth) as p:
    got = []
    for _ in range(6):
      time.sleep(0.05)  # the consumer is slow: the thread would run far ahead if unbounded
      got.append(p.next())
      b.taken += 1
    with pytest.raises(StopIteration):
      p.next()
  assert got == [0, 10, 20, 30, 40, 50]
  assert b.most_ahead == max(depth, 1)  # depth 0: built when taken
  assert (threading.get_ident() in b.threads) == (depth == 0)


def test_a_build_error_is_raised_on_the_callers_thread_and_again_after():
  b = Builds(fail_at=2)
  with prefetch.Prefetcher(b, range(5), 1) as p:
    assert [p.next(), p.next()] == [0, 10]
    for _ in range(2):
      with pytest.raises(KeyError, match="item 2"):
        p.next()


def test_close_stops_the_thread_early():
  b = Builds()
  p = prefetch.Prefetcher(b, range(1000), 2)
  p.next()
  p.close()
  assert b.built <= 4 and not any(t.name == "round-prefetch" for t in threading.enumerate())


def test_bad_depth():
  with pytest.raises(ValueError, match="prefetch depth 3 is not in 0..2"):
    prefetch.Prefetcher(lambda i: i, range(2), 3)


# ---- the read-back check ----------------------------------------------------------------------

def test_check_round_reads_the_flags_and_names_the_first_bad_leaf():
  state = {"a": jnp.ones(3), "b": jnp.array([1.0, jnp.inf]), "n": jnp.arange(3)}
  personal = {"p": jnp.array([jnp.nan])}
  check = finite.start_check(jnp.float32(0.5), {"server": state, "personal": personal})
  assert check.names == ("server.a", "server.b", "personal.p")  # the int leaf is not checked
  with pytest.raises(finite.DivergenceError,
                     match=r"^round 4 diverged: the update of server.b is not finite$"):
    finite.check_round(4, check)
  with pytest.raises(finite.DivergenceError, match=r"^round 1 diverged: train_loss is nan$"):
    finite.check_round(1, finite.start_check(jnp.float32(jnp.nan), {"server": {}}))
  ok = finite.start_check(jnp.float32(0.25), {"server": {"a": jnp.ones(2)}, "personal": {}})
  assert finite.check_round(2, ok) == 0.25


# ---- the config key ---------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [3, -1, True])
def test_bad_prefetch_is_one_config_error(bad):
  c = config_lib.default_config()
  c.fed.prefetch = bad
  with pytest.raises(config_lib.ConfigError,
                     match=r"^fed.prefetch=.* is invalid; valid: 0 \(off\), 1 or 2 rounds built "
                           "ahead$"):
    config_lib.validate(c)


def test_prefetch_default_and_resumable():
  assert config_lib.default_config().fed.prefetch == 1
  assert "fed.prefetch" in workdir_lib.RESUMABLE_KEYS


# ---- whole runs -------------------------------------------------------------------------------

def tiny_config(prefetch_depth, **values):
  """configs/fedvpt.py shrunk to seconds: 5 rounds, evaluated at 2, 4 and 5."""
  sys.path.insert(0, REPO)
  from configs import fedvpt  # pylint: disable=import-outside-toplevel
  from clip_fixtures import fixture_dir  # pylint: disable=import-outside-toplevel
  c = fedvpt.get_config()
  c.clip.checkpoint = fixture_dir("clip_tiny_a")
  c.eval.check_zero_shot, c.eval.every, c.eval.personalized = False, 2, False
  c.data.train_per_class_domain, c.data.test_per_class_domain = 2, 1
  c.fed.num_clients, c.fed.clients_per_round, c.fed.partition = 12, 3, "iid"
  c.fed.rounds, c.fed.local_steps, c.fed.batch_size = 5, 1, 4
  c.eval.batch_size = 64
  c.method.depth, c.method.num_tokens, c.optim.schedule = 2, 8, "constant"
  c.adv.eval, c.adv.sanity_attack = (), ""
  c.fed.prefetch = prefetch_depth
  for k, v in values.items():
    section, key = k.split("__")
    c[section][key] = v
  return c


def comparable(records):
  return [{k: v for k, v in r.items() if k != "seconds_per_round"} for r in records]


def saved(workdir, step):
  """The saved checkpoint of a round (server and personal state), as numpy arrays."""
  path = os.path.join(workdir, "ckpt", str(step), "default")
  ckptr = ocp.PyTreeCheckpointer()
  tree = ckptr.metadata(path).item_metadata.tree
  args = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  return ckptr.restore(path, args=ocp.args.PyTreeRestore(restore_args=args))


@pytest.mark.slow  # 20 s each on the 2-core host when idle, 80 s when loaded
@pytest.mark.parametrize("values,depths", [
    ({}, (0, 1, 2)),
    # Personal leaves: batches built ahead, but each round read back before the next.
    ({"fed__local_only": True, "eval__personalized": True}, (0, 1))], ids=["shared", "personal"])
def test_runs_are_identical_with_prefetch_on_and_off(tmp_path, values, depths):
  from fedprompt_jax import train  # pylint: disable=import-outside-toplevel
  runs = {d: train.train_and_evaluate(tiny_config(d, **values), str(tmp_path / str(d)))
          for d in depths}
  assert [r["round"] for r in runs[0]] == [0, 2, 4, 5]
  assert runs[0][-1]["train_loss"] != runs[0][1]["train_loss"]  # it trained
  for d in depths[1:]:
    assert comparable(runs[d]) == comparable(runs[0])  # exactly: the same computations
    ref, got = saved(tmp_path / "0", 5), saved(tmp_path / str(d), 5)
    jax.tree_util.tree_map(np.testing.assert_array_equal, got, ref)


def test_divergence_with_a_round_dispatched_ahead_names_the_first_bad_round(tmp_path):
  from fedprompt_jax import train  # pylint: disable=import-outside-toplevel
  c = tiny_config(1, optim__lr=1e30)
  c.fed.rounds, c.eval.every = 4, 4  # round 3 is dispatched before round 2 is read back
  workdir = tmp_path / "run"
  with pytest.raises(finite.DivergenceError,
                     match=r"^round 2 diverged: train_loss is nan; stopped before evaluating or "
                           "saving it: metrics.jsonl are as they were; "):
    train.train_and_evaluate(c, str(workdir))
  with open(workdir / "metrics.jsonl") as f:
    assert [json.loads(line)["round"] for line in f if line.strip()] == [0]
  assert not [n for n in os.listdir(workdir / "ckpt") if n.isdigit()]
