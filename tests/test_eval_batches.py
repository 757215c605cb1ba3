"""Evaluation batches: attacks use adv.eval_batch_size, and a partial last batch is padded only
to the next power of two (>= 8) that holds it, never to the full batch."""

import jax.numpy as jnp
import numpy as np
import pytest

from fedprompt_jax import config as config_lib
from fedprompt_jax import evaluate
from fedprompt_jax.data.source import Split


def _split(n: int) -> Split:
  rng = np.random.default_rng(0)
  return Split(rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8),
               rng.integers(0, 3, n).astype(np.int32))


@pytest.mark.parametrize("valid,batch,expected", [
    (1, 64, 8), (8, 64, 8), (9, 64, 16), (33, 64, 64), (64, 64, 64), (5, 4, 4), (100, 256, 128)])
def test_padded_size(valid, batch, expected):
  assert evaluate.padded_size(valid, batch) == expected


def test_robust_totals_pads_the_last_batch_only_as_far_as_needed():
  shapes = []

  def fake(frozen, params, aux, extra, client, pixels, labels, indices, key):
    shapes.append(pixels.shape[0])
    correct = labels == 0  # a "model" that is right exactly on class 0
    return {"clean": correct}, {"clean": jnp.zeros(pixels.shape[0])}

  robust = evaluate.Robust({}, fake)
  split = _split(70)
  totals, first = evaluate.robust_totals(robust, None, None, None, None, None, split, 70, 32,
                                         key=None, subset=10)
  assert shapes == [32, 32, 8]  # 6 left over: padded to 8, not to 32
  assert totals.correct["clean"] == int((split.labels == 0).sum())  # padding never counted
  assert first.correct["clean"] == int((split.labels[:10] == 0).sum())


def test_predict_split_pads_the_last_batch_only_as_far_as_needed():
  shapes = []

  def predict(frozen, params, aux, extra, client, pixels):
    shapes.append(pixels.shape[0])
    return np.asarray(pixels[:, 0, 0, 0], np.int32)

  split = _split(300)
  preds = evaluate.predict_split(predict, None, None, None, None, None, split, 256)
  assert shapes == [256, 64]
  np.testing.assert_array_equal(preds, split.images[:, 0, 0, 0])


def test_attack_batch_size_is_its_own_key_and_checked():
  c = config_lib.default_config()
  assert c.adv.eval_batch_size < c.eval.batch_size
  c.adv.eval_batch_size = 0
  with pytest.raises(config_lib.ConfigError, match="adv.eval_batch_size=0"):
    config_lib.validate(c)


def _tiny_robust_run(eval_rounds: str):
  """configs/fedvpt.py shrunk to seconds: 2 rounds evaluated after each, PGD-2 on 16 images."""
  import os  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  sys.path.insert(0, repo)
  from configs import fedvpt  # pylint: disable=import-outside-toplevel
  from clip_fixtures import fixture_dir  # pylint: disable=import-outside-toplevel
  c = fedvpt.get_config()
  c.clip.checkpoint = fixture_dir("clip_tiny_a")
  c.eval.check_zero_shot, c.eval.every, c.eval.personalized = False, 1, False
  c.data.train_per_class_domain, c.data.test_per_class_domain = 2, 1
  c.fed.num_clients, c.fed.clients_per_round, c.fed.partition = 8, 2, "iid"
  c.fed.rounds, c.fed.local_steps, c.fed.batch_size = 2, 1, 4
  c.method.depth, c.method.num_tokens, c.optim.schedule = 2, 8, "constant"
  c.adv.eval, c.adv.sanity_attack = ("pgd:linf:eps=1/255:steps=2",), ""
  c.adv.eval_examples, c.adv.eval_batch_size = 16, 16
  c.adv.eval_rounds = eval_rounds
  return c


@pytest.mark.slow
def test_robust_evaluation_at_the_final_round_only(tmp_path):
  from fedprompt_jax import train  # pylint: disable=import-outside-toplevel
  every = train.train_and_evaluate(_tiny_robust_run("every"), str(tmp_path / "every"))
  final = train.train_and_evaluate(_tiny_robust_run("final"), str(tmp_path / "final"))
  robust = lambda record: {k: v for k, v in record.items() if k.startswith("robust_")}
  assert [bool(robust(r)) for r in every] == [True, True, True]
  assert [bool(robust(r)) for r in final] == [False, False, True]
  # Skipping the earlier robust evaluations changes nothing that is trained or measured.
  assert robust(final[-1]) == robust(every[-1])
  drop = lambda record: {k: v for k, v in record.items()
                         if not k.startswith("robust_") and k != "seconds_per_round"}
  assert [drop(r) for r in final] == [drop(r) for r in every]


def test_eval_rounds_is_checked():
  c = config_lib.default_config()
  c.adv.eval_rounds = "last"
  with pytest.raises(config_lib.ConfigError, match="adv.eval_rounds='last'"):
    config_lib.validate(c)
