"""launch/transfer_eval.py on a finished FedMVP run: the target's attribute sentences are used.

A one-round base-to-novel FedMVP run (configs/fedmvp.py: world v2's three tinted domains,
24 base classes) on the tiny test CLIP is evaluated on digits (another class set) and on the
unseen tinted domain (all 48 classes). References: the sentences' text features encoded one by one, and the plain
FedMVP logits with the restored PromptFormer and those features.
"""

import json
import os
import sys

import jax
import ml_collections
import numpy as np
import pytest

from clip_fixtures import fixture_dir
from fedprompt_jax import train, transfer
from fedprompt_jax.assets import world
from fedprompt_jax.data import attributes, digits, shapes
from fedprompt_jax.methods import base, make_method
from fedprompt_jax.models.clip import normalize

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "launch"))
import transfer_eval  # noqa: E402  pylint: disable=wrong-import-position

TINY = ("fed.rounds=1,eval.every=1,eval.personalized=False,data.train_per_class_domain=8,"
        "data.test_per_class_domain=1,fed.num_clients=2,fed.clients_per_round=2,"
        "fed.classes_per_client=2,fed.batch_size=8,eval.batch_size=256,"
        "eval.check_zero_shot=False,adv.sanity_attack=")


@pytest.fixture(scope="module")
def mvp_run(tmp_path_factory):
  """(workdir, transfer_eval.setup of it for digits: run, params, aux, ...)."""
  from configs import fedmvp  # pylint: disable=import-outside-toplevel
  workdir = str(tmp_path_factory.mktemp("fedmvp"))
  c = fedmvp.get_config(TINY)
  c.clip.checkpoint = fixture_dir("clip_tiny_b")
  c.adv.eval = ()
  train.train_and_evaluate(c, workdir)
  return workdir, transfer_eval.setup(workdir, "digits")


def sentence_features(run, table, names):
  """[C, J, E] unit text features of each class's sentences (J per class), one class a call."""
  encode = jax.jit(run.model.encode_text)
  out = []
  for name in names:
    ids, mask = run.tokenizer(list(table[name]))
    out.append(np.asarray(normalize(encode(run.frozen, ids, mask).embeds)))
  return np.stack(out)


_LOGITS = {}


def correct(run, params, aux, split):
  """[N] bool: the plain FedMVP forward (no wrappers) on the whole split in one call."""
  if run not in _LOGITS:
    _LOGITS[run] = jax.jit(make_method("fedmvp", run.model, run.c.method).logits)
  pixels = split.images.astype(np.float32) / 255.0
  logits = _LOGITS[run](run.frozen, params, aux, {}, {}, pixels, None)
  return np.asarray(logits).argmax(-1) == split.labels


def test_shapes_to_digits_swaps_in_digits_attributes(mvp_run, tmp_path):
  workdir, s = mvp_run
  run, params = s["run"], jax.device_get(s["params"])
  names = digits.CLASS_NAMES
  table = attributes.load_attributes(attributes.shipped_path("digits"), names)
  want = sentence_features(run, table, names)
  assert want.shape == (10, 10, 24) and np.asarray(s["aux"]["mask"]).all()
  np.testing.assert_allclose(s["aux"]["text"], want, rtol=1e-5, atol=1e-6)
  # The reported accuracy is the plain FedMVP forward with the run's PromptFormer and them.
  out = transfer_eval.evaluate_transfer(workdir, "digits", attacks=["none"])
  assert (out["round"], out["classes"], out["target"], out["attacks"]) == (1, 10, "digits", [])
  assert not any(k.startswith("robust_acc") for k in out)
  target = s["target"]
  assert out["test_examples"] == len(target.test)
  assert out["clean_acc"] == pytest.approx(correct(run, params, s["aux"], target.test).mean())
  # --attributes_file replaces the shipped sentences: class i gets class i+1's.
  shifted = {n: list(table[names[(i + 1) % 10]]) for i, n in enumerate(names)}
  path = tmp_path / "shifted.json"
  path.write_text(json.dumps(shifted))
  aux = transfer_eval.setup(workdir, "digits", attributes_file=str(path))["aux"]
  np.testing.assert_allclose(aux["text"], np.roll(want, -1, axis=0), rtol=1e-5, atol=1e-6)
  # A class missing from the file: one line naming the class and the file.
  del shifted["seven"]
  path.write_text(json.dumps(shifted))
  with pytest.raises(ValueError) as err:
    transfer_eval.evaluate_transfer(workdir, "digits", attacks=["none"],
                                    attributes_file=str(path))
  assert "'seven'" in str(err.value) and str(path) in str(err.value)
  assert "\n" not in str(err.value)


def test_the_unseen_shapes_domain_uses_all_48_classes_attributes(mvp_run):
  workdir, s = mvp_run
  run, params = s["run"], jax.device_get(s["params"])
  out = transfer_eval.evaluate_transfer(workdir, "shapes", attacks=["none"])
  assert out["domains"] == [world.UNSEEN_DOMAIN] and out["classes"] == 48
  other = shapes.make_shapes(0, 1, run.model.config.vision.image_size, run.c.seed,
                             (world.UNSEEN_DOMAIN,))
  table = other.attributes
  ctx = base.Context(run.model, run.frozen, run.tokenizer, other.class_names, table)
  aux = make_method("fedmvp", run.model, run.c.method).prepare(ctx)
  np.testing.assert_allclose(aux["text"], sentence_features(run, table, other.class_names),
                             rtol=1e-5, atol=1e-6)
  right = correct(run, params, aux, other.test)
  assert out["clean_acc"] == pytest.approx(right.mean())
  for d, name in enumerate(other.domain_names):
    assert out[f"clean_acc/{name}"] == pytest.approx(right[other.test.domains == d].mean())
  with pytest.raises(ValueError, match="--attack=none cannot be combined"):
    transfer_eval.evaluate_transfer(workdir, "shapes", attacks=["none", "fgsm:linf:eps=1/255"])


def test_which_attributes_file_a_target_reads():
  c = ml_collections.ConfigDict({"data": {
      "source": "shapes", "domains": ("falsecolour",), "base_novel": True,
      "train_per_class_domain": 8, "attributes_file": "/runs/shapes_attrs.json",
      "tfds_name": "", "data_dir": "", "tfds_domain_configs": ()}})
  # Other domains of the run's own classes: the run's file.
  assert transfer.target_config(c, "shapes").data.attributes_file == "/runs/shapes_attrs.json"
  # Another data set: its own shipped file (""), never the run's; an explicit file wins.
  assert transfer.target_config(c, "digits").data.attributes_file == ""
  assert transfer.target_config(c, "digits", attributes_file="/d.json").data.attributes_file == (
      "/d.json")
  t = transfer.target_config(c, "tfds", tfds_name="food101", data_dir="/tfds")
  assert t.data.attributes_file == ""
