"""launch/run.py end to end: outputs, resume after SIGKILL, and bad config values."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from clip_fixtures import fixture_dir
from fedprompt_jax import config as config_lib
from fedprompt_jax import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join(REPO, "launch", "run.py")
# One tinted domain (96 training, 48 test images): the tests here check the run's mechanics
# (resume, exit codes, evaluation), which the default's three domains would only make slower.
SMALL = [f"--config.clip.checkpoint={fixture_dir('clip_tiny_a')}",
         "--config.data.domains=('tinted_photo',)",
         "--config.eval.check_zero_shot=False", "--config.fed.rounds=6", "--config.eval.every=1",
         "--config.data.train_per_class_domain=2", "--config.data.test_per_class_domain=1",
         "--config.fed.num_clients=8", "--config.fed.new_clients=2",
         "--config.fed.clients_per_round=3",
         "--config.fed.local_steps=2", "--config.fed.batch_size=8", "--config.method.depth=2",
         "--config.method.num_tokens=8", "--config.adv.eval=('pgd:linf:eps=1/255:steps=10',)"]


def command(workdir, *extra, config="configs/fedvpt.py"):
  return [sys.executable, RUN, f"--config={os.path.join(REPO, config)}", f"--workdir={workdir}",
          *SMALL, *extra]


def env():
  return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2")


def records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]


def comparable(recs):
  return [{k: v for k, v in r.items() if k != "seconds_per_round"} for r in recs]


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_equals_uninterrupted(tmp_path):
  full, killed = tmp_path / "full", tmp_path / "killed"
  done = subprocess.run(command(full), capture_output=True, text=True, env=env(), timeout=600,
                        check=False)
  assert done.returncode == 0, done.stderr[-2000:]
  for name in ("config.json", "metrics.jsonl", "partition.npz", "partition.png", "curves.png",
               "summary.txt"):
    assert (full / name).exists(), name
  assert any(n.startswith("events.out.tfevents") for n in os.listdir(full))
  reference = records(full)
  assert [r["round"] for r in reference] == list(range(7))
  assert {"pers_acc_mean", "new_client_acc_mean", "robust_acc/worst"} <= set(reference[-1])
  assert "Final results (round 6" in done.stdout

  proc = subprocess.Popen(command(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          env=env())
  deadline = time.time() + 600
  while time.time() < deadline:
    ckpts = os.listdir(killed / "ckpt") if (killed / "ckpt").exists() else []
    if (killed / "metrics.jsonl").exists() and any(r["round"] >= 3 for r in records(killed)) \
        and any(c.isdigit() for c in ckpts):
      break
    time.sleep(0.2)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  partial = records(killed)
  assert 3 <= partial[-1]["round"] < 6, partial[-1]
  again = subprocess.run(command(killed), capture_output=True, text=True, env=env(), timeout=600,
                         check=False)
  assert again.returncode == 0, again.stderr[-2000:]
  assert "resumed from" in again.stdout
  assert comparable(records(killed)) == comparable(reference)


def test_bad_values_give_one_line_and_write_nothing(tmp_path):
  cases = {
      "method.name": ("nope", "method.name='nope' is invalid; valid: "),
      "data.source": ("mnist", "data.source='mnist' is invalid; valid: shapes, digits, tfds"),
      "fed.alpha": (0.0, "fed.alpha=0.0 is invalid; must be > 0"),
      "fed.clients_per_round": (21, "fed.clients_per_round=21 is invalid; must be <= "
                                    "fed.num_clients=20"),
      "fed.batch_size": (0, "fed.batch_size=0 is invalid; must be an integer >= 1"),
      "fed.partition": ("zipf", "fed.partition='zipf' is invalid; valid: iid, dirichlet"),
      "optim.schedule": ("linear", "optim.schedule='linear' is invalid; valid: constant, cosine"),
  }
  for key, (value, message) in cases.items():
    c = config_lib.default_config()
    section, name = key.split(".")
    c[section][name] = value
    workdir = tmp_path / key
    with pytest.raises(config_lib.ConfigError) as err:
      train.train_and_evaluate(c, str(workdir))
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not workdir.exists()


def test_cli_errors_are_one_line(tmp_path):
  for extra, fragment, code in (
      (["--config.fed.no_such_key=1"], "no_such_key", 2),
      (["--config.fed.num_clients=100000", "--config.fed.clients_per_round=2"],
       # SMALL's one domain x 48 classes x 2 images per class
       "fed.num_clients=100000 + fed.new_clients=2 exceeds the 96 training examples", 1),
  ):
    workdir = tmp_path / "w"
    result = subprocess.run(command(workdir, *extra), capture_output=True, text=True, env=env(),
                            timeout=300, check=False)
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines
    assert not workdir.exists()


def test_config_arg_presets_and_pairs():
  sys.path.insert(0, REPO)
  from configs import promptfl  # pylint: disable=import-outside-toplevel
  c = promptfl.get_config("cifar100,fed.alpha=0.3,seed=2")
  assert c.data.tfds_name == "cifar100" and c.fed.alpha == 0.3 and c.seed == 2
  with pytest.raises(config_lib.ConfigError, match="preset 'cifar10' is unknown; valid: at, cifar100"):
    promptfl.get_config("cifar10")
  with pytest.raises(config_lib.ConfigError, match="config key 'fed.alfa' does not exist"):
    promptfl.get_config("fed.alfa=1")
  from configs import fedvpt  # pylint: disable=import-outside-toplevel
  at = fedvpt.get_config("at")
  assert (at.adv.train, fedvpt.get_config().adv.train) == ("pgd", "none")
  assert at.adv.eval == ("pgd:linf:eps=1/255:steps=10", "pgd:linf:eps=2/255:steps=10",
                         "apgd-ce:linf:eps=1/255:steps=20", "apgd-ce:linf:eps=2/255:steps=20")
  assert promptfl.get_config("cifar100").adv.eval == config_lib.default_config().adv.eval


def test_robust_eval_of_a_workdir_reproduces_the_runs_figures(tmp_path):
  sys.path.insert(0, os.path.join(REPO, "launch"))
  import robust_eval  # pylint: disable=import-outside-toplevel
  sys.path.insert(0, REPO)
  from configs import fedvpt  # pylint: disable=import-outside-toplevel
  c = fedvpt.get_config("fed.rounds=2,eval.every=2,eval.personalized=False,"
                        "data.train_per_class_domain=2,data.test_per_class_domain=1,"
                        "fed.num_clients=8,fed.local_steps=2,fed.batch_size=8,method.depth=2,"
                        "method.num_tokens=8,"
                        "eval.check_zero_shot=False")
  c.clip.checkpoint = fixture_dir("clip_tiny_a")
  c.data.domains = ("tinted_photo",)  # as SMALL: 48 test images
  c.adv.eval = ("pgd:linf:eps=4/255:steps=3", "fgsm:linf:eps=4/255")
  workdir = str(tmp_path / "run")
  last = train.train_and_evaluate(c, workdir)[-1]
  assert last["robust_acc/worst"] < last["robust_acc/clean"]  # the attacks do something
  again = robust_eval.evaluate_workdir(workdir, list(c.adv.eval), c.adv.eval_examples, 16)
  assert again["round"] == 2
  assert {k: v for k, v in again.items() if k.startswith("robust_acc/")} == {
      k: v for k, v in last.items() if k.startswith("robust_acc/")}
  checks = lambda r: {k: v for k, v in r.items() if k.startswith("robust_sanity/")}
  assert last["robust_sanity/large_radius_acc"] <= 0.1 and last["robust_sanity/warnings"] == 0
  assert checks(again) == pytest.approx(checks(last))  # the same checks (CE summed in batches)
  stronger = robust_eval.evaluate_workdir(workdir, ["pgd:linf:eps=8/255:steps=5"], 0, 0)
  assert stronger["robust_acc/clean"] == last["robust_acc/clean"]
  assert stronger["robust_acc/worst"] <= last["robust_acc/worst"]
  for args, message in (
      ((str(tmp_path / "nothing"), ["fgsm:linf:eps=1/255"], 0, 0), "has no config.json"),
      ((workdir, ["pgd:linf:eps=-1"], 0, 0), "--attack: "),
      ((workdir, [], 0, 0), "no --attack given"),
  ):
    with pytest.raises((ValueError, FileNotFoundError), match=message) as err:
      robust_eval.evaluate_workdir(*args)
    assert "\n" not in str(err.value)
