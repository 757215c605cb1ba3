"""launch/transfer_eval.py: a finished run on another class set or other domains; refusals."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from clip_fixtures import fixture_dir
from fedprompt_jax import checkpoint, train, zeroshot_eval
from fedprompt_jax.assets import world
from fedprompt_jax.data import digits, shapes
from fedprompt_jax.methods import base, make_method

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "launch"))
import transfer_eval  # noqa: E402  pylint: disable=wrong-import-position

TINY = ("fed.rounds=2,eval.every=2,eval.personalized=False,data.train_per_class_domain=1,"
        "data.test_per_class_domain=1,fed.num_clients=8,fed.clients_per_round=2,"
        "fed.local_steps=1,fed.batch_size=4,adv.eval_examples=8,eval.batch_size=64,"
        "eval.check_zero_shot=False")
ATTACK = "pgd:linf:eps=1/255:steps=2"


def finished(workdir, preset=""):
  from configs import fedapt  # pylint: disable=import-outside-toplevel
  c = fedapt.get_config(f"{preset},{TINY}" if preset else TINY)
  c.clip.checkpoint = fixture_dir("clip_tiny_b")
  c.adv.eval = (ATTACK,)
  train.train_and_evaluate(c, str(workdir))
  return c


@pytest.fixture(scope="module")
def fedapt_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("fedapt")
  return workdir, finished(workdir)


@pytest.fixture(scope="module")
def zeroshot_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("zeroshot")
  return workdir, finished(workdir, "zeroshot")


def test_shapes_to_digits_uses_digits_g_and_matches_an_independent_forward(fedapt_run):
  workdir, c = fedapt_run
  out = transfer_eval.evaluate_transfer(str(workdir), "digits", examples=6, batch_size=8)
  assert (out["round"], out["classes"], out["source"], out["target"]) == (2, 10, "shapes", "digits")
  assert out["examples"] == 6 and out["attacks"] == [ATTACK]
  # Independently: the plain FedAPT method (no label-space or AT wrappers), digits' own G.
  run = train.Run(c, str(workdir))
  ckpt = checkpoint.Checkpointer(str(workdir))
  _, state, personal = run.restore_latest(ckpt)
  ckpt.close()
  params = jax.device_get(run.global_params(state, personal))
  method = make_method("fedapt", run.model, c.method)
  data = digits.load_digits(run.model.config.vision.image_size, seed=c.seed)
  aux = method.prepare(base.Context(run.model, run.frozen, run.tokenizer, data.class_names))
  assert aux["gle"].shape[0] == 10
  logits_fn = jax.jit(method.logits)
  pixels = data.test.images.astype(np.float32) / 255.0
  logits = np.concatenate([np.asarray(logits_fn(run.frozen, params, aux, {}, {},
                                                pixels[i:i + 128], jax.random.key(0)))
                           for i in range(0, len(pixels), 128)])
  assert logits.shape == (len(data.test), 10)
  correct = logits.argmax(-1) == data.test.labels
  assert out["robust_acc/clean"] == pytest.approx(correct[:6].mean())
  assert out["clean_acc"] == pytest.approx(correct.mean())
  assert out["robust_acc/worst"] <= out["robust_acc/clean"]


def test_zeroshot_transferred_equals_zero_shot_on_the_target(zeroshot_run):
  workdir, c = zeroshot_run
  out = transfer_eval.evaluate_transfer(str(workdir), "digits", attacks=[], examples=4)
  run_model = train.Run(c, str(workdir))
  data = digits.load_digits(run_model.model.config.vision.image_size, seed=c.seed)
  want = zeroshot_eval.accuracy_by_domain(run_model.model, run_model.frozen, run_model.tokenizer,
                                          data, c.method.templates)
  assert out["round"] == 0 and out["classes"] == 10
  assert out["clean_acc"] == pytest.approx(want["all"])
  # Cross-domain: the 48 classes kept, photo and sketch instead of the tinted domains.
  out = transfer_eval.evaluate_transfer(str(workdir), "shapes", ("photo", "sketch"), examples=5)
  other = shapes.make_shapes(0, c.data.test_per_class_domain, run_model.model.config.vision
                             .image_size, c.seed, ("photo", "sketch"))
  want = zeroshot_eval.accuracy_by_domain(run_model.model, run_model.frozen, run_model.tokenizer,
                                          other, c.method.templates)
  assert out["classes"] == 48 and out["domains"] == ["photo", "sketch"]
  for d in ("photo", "sketch"):
    assert out[f"clean_acc/{d}"] == pytest.approx(want[d])
    assert out[f"examples/{d}"] == 5
    assert out[f"robust_acc/{d}/worst"] <= out[f"robust_acc/{d}/clean"]


def test_fedapt_across_shapes_domains_defaults_to_the_unseen_ones(fedapt_run):
  workdir, _ = fedapt_run
  out = transfer_eval.evaluate_transfer(str(workdir), "shapes", examples=2, batch_size=8)
  # configs/fedapt.py trains on world v2's three federated tinted domains: the fourth is unseen.
  assert out["domains"] == [world.UNSEEN_DOMAIN] and out["classes"] == 48
  assert {f"robust_acc/{d}/{ATTACK}" for d in out["domains"]} <= set(out)


def with_config(src, dst, **changes):
  os.makedirs(dst)
  with open(os.path.join(src, "config.json")) as f:
    saved = json.load(f)
  for key, value in changes.items():
    section, leaf = key.split("__")
    saved[section][leaf] = value
  with open(os.path.join(dst, "config.json"), "w") as f:
    json.dump(saved, f)
  return str(dst)


def test_refusals_are_one_line(fedapt_run, tmp_path):
  workdir, _ = fedapt_run
  gle = with_config(workdir, tmp_path / "gle", method__gle_trainable=True)
  pep = with_config(workdir, tmp_path / "pep", method__name="pep", fed__label_space="global",
                    adv__train="none")
  for args, error, message in (
      ((gle, "digits"), ValueError,
       "'fedapt+local_labels+pgd' cannot transfer to another class set: its trained "
       "params/gle_residual [48, 64] is tied to the run's 48 classes (the target has 10)"),
      ((pep, "digits"), ValueError, "params/class"),
      ((str(workdir), "mnist"), ValueError, "--data='mnist' is invalid; valid: shapes, digits, "
                                            "tfds"),
      ((str(workdir), "digits", ("photo",)), ValueError, "only shapes has domains"),
      ((str(workdir), "shapes", ("clay",)), ValueError, "--domains has unknown ['clay']"),
      ((str(tmp_path / "nothing"), "digits"), FileNotFoundError, "has no config.json"),
  ):
    with pytest.raises(error) as err:
      transfer_eval.evaluate_transfer(*args)
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)
  # Within the class set the gle_trainable run would transfer: the refusal is about classes.
  with pytest.raises(FileNotFoundError, match="has no checkpoint yet"):
    transfer_eval.evaluate_transfer(gle, "shapes", ("photo",))
  shutil.rmtree(gle)


def test_cli_bad_data_prints_one_error_line(fedapt_run):
  workdir, _ = fedapt_run
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, "launch", "transfer_eval.py"), f"--workdir={workdir}",
       "--data=mnist"], capture_output=True, text=True, timeout=300, check=False,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert lines == ["error: --data='mnist' is invalid; valid: shapes, digits, tfds"], lines
  assert not any(n.startswith("transfer_") for n in os.listdir(workdir))
