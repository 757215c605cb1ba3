"""Runs that survive faults (issue 15): each row of the fault table, seeded fault injection, kill -9.

Commands run through tests/cli_driver.py: launch/run.py (and robust_eval.py) as
`__main__` in forked children of one warm process, each with its own exit
status, stdout and stderr, and a persistent XLA compilation cache, so a tiny run
costs seconds instead of a fresh interpreter's JAX import and compilation.
Outputs are compared byte for byte before and after each fault.
"""

import glob
import json
import os
import random
import shutil
import subprocess
import sys

import numpy as np
import orbax.checkpoint as ocp
import pytest

import jax
from fault_inputs import CONFIG, DAMAGE, FLAGS, GENERATORS, REPO, ROUNDS, RUN_FILES, Arena
from fedprompt_jax import checkpoint
from fedprompt_jax import config as config_lib

class Driver:
  """A tests/cli_driver.py process: `run(argv)` -> {"rc", "stdout", "stderr", "seconds"}."""

  def __init__(self, cache_dir):
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false",
               XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_COMPILATION_CACHE_DIR=str(cache_dir),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    self.proc = subprocess.Popen([sys.executable, os.path.join(REPO, "tests", "cli_driver.py")],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                 env=env, cwd=REPO)
    assert json.loads(self.proc.stdout.readline()) == {"ready": True}

  def run(self, argv, script="launch/run.py", kill=None):
    self.proc.stdin.write(json.dumps({"script": script, "argv": list(argv), "kill": kill}) + "\n")
    self.proc.stdin.flush()
    line = self.proc.stdout.readline()
    assert line, "the driver died"
    return json.loads(line)

  def train(self, workdir, *extra, config=CONFIG, kill=None):
    return self.run([f"--config={config}", f"--workdir={workdir}", *FLAGS, *extra], kill=kill)

  def close(self):
    self.proc.stdin.close()
    self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
  d = Driver(tmp_path_factory.mktemp("xla_cache"))
  yield d
  d.close()


@pytest.fixture(scope="module")
def reference(driver, tmp_path_factory):
  """An uninterrupted run: rounds 0..6 evaluated, checkpoints 5 and 6 kept."""
  workdir = tmp_path_factory.mktemp("reference") / "run"
  result = driver.train(workdir)
  assert result["rc"] == 0, result["stderr"][-3000:]
  assert checkpoint.step_rounds(str(workdir)) == [6, 5]
  return workdir


def snapshot(root):
  """{relative path: bytes} of every file under root (folders as None)."""
  out = {}
  for path in sorted(glob.glob(os.path.join(root, "**"), recursive=True)):
    rel = os.path.relpath(path, root)
    out[rel] = None if os.path.isdir(path) else open(path, "rb").read()
  return out


def metric_lines(workdir):
  with open(os.path.join(workdir, "metrics.jsonl"), "rb") as f:
    return f.read().splitlines()


def without_timing(line):
  return {k: v for k, v in json.loads(line).items() if k != "seconds_per_round"}


def prompts(workdir, round_index):
  """The saved server state of a checkpoint, as numpy arrays."""
  path = os.path.join(workdir, "ckpt", str(round_index), "default")
  ckptr = ocp.PyTreeCheckpointer()
  tree = ckptr.metadata(path).item_metadata.tree
  args = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  return ckptr.restore(path, args=ocp.args.PyTreeRestore(restore_args=args))


def assert_same_arrays(a, b):
  flat_a, flat_b = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
  assert [p for p, _ in flat_a] == [p for p, _ in flat_b]
  for (path, x), (_, y) in zip(flat_a, flat_b):
    assert np.array_equal(np.asarray(x), np.asarray(y)), path


def assert_one_error_line(result, *fragments, rc=None):
  assert result["rc"] != 0 and (rc is None or result["rc"] == rc), result
  lines = result["stderr"].strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), result["stderr"][-3000:]
  assert "Traceback" not in result["stderr"] + result["stdout"]
  for fragment in fragments:
    assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_latest_checkpoint_resumes_from_the_newest_intact_one(
    driver, reference, tmp_path, kind):
  workdir = tmp_path / "run"
  shutil.copytree(reference, workdir)
  damage, reason = DAMAGE[kind]
  damage(str(workdir / "ckpt" / "6"))
  kept = {name: (workdir / name).read_bytes() for name in RUN_FILES}
  kept_ckpt = snapshot(workdir / "ckpt" / "5")
  before = metric_lines(workdir)

  result = driver.train(workdir)
  assert result["rc"] == 0, result["stderr"][-3000:]
  warnings = result["stderr"].strip().splitlines()
  assert len(warnings) == 1 and warnings[0].startswith(
      f"warning: the checkpoint of round 6 in {workdir}/ckpt is damaged ("), warnings
  assert reason in warnings[0] and "using the newest intact one, round 5" in warnings[0]
  assert f"resumed from {workdir}/ckpt at round 5" in result["stdout"]
  assert os.listdir(workdir / "ckpt_damaged") == ["6"]
  after = metric_lines(workdir)
  assert after[:6] == before[:6]  # rounds 0..5, byte for byte
  assert without_timing(after[6]) == without_timing(metric_lines(reference)[6])
  assert {name: (workdir / name).read_bytes() for name in RUN_FILES} == kept
  assert snapshot(workdir / "ckpt" / "5") == kept_ckpt
  assert_same_arrays(prompts(workdir, 6), prompts(reference, 6))


def test_divergence_stops_with_one_line_and_keeps_what_was_written(driver, tmp_path):
  workdir = tmp_path / "run"
  first = driver.train(workdir, "--config.optim.lr=1e30", "--config.fed.rounds=1")
  assert first["rc"] == 0, first["stderr"][-3000:]  # round 1's update is huge but finite
  before = snapshot(workdir)
  again = driver.train(workdir, "--config.optim.lr=1e30", "--config.fed.rounds=3")
  assert_one_error_line(again, "round 2 diverged: train_loss is nan",
                        "metrics.jsonl and the newest checkpoint (round 1) are as they were",
                        rc=1)
  after = snapshot(workdir)
  config_before, config_after = (json.loads(s["config.json"]) for s in (before, after))
  config_before["fed"]["rounds"] = 3  # fed.rounds may grow on resume: the only change
  assert config_after == config_before
  changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
  assert {k for k in changed if not k.startswith("events.out.tfevents")} == {"config.json"}
  assert checkpoint.step_rounds(str(workdir)) == [1]
  saved = jax.tree_util.tree_leaves(prompts(workdir, 1))
  assert saved and all(np.isfinite(x).all() for x in saved)


def test_changed_config_is_refused_before_anything_is_written(driver, reference, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(reference, workdir)
  before = snapshot(workdir)
  promptfl = os.path.join(REPO, "configs", "promptfl.py")
  for extra, config, fragments in (
      (["--config.fed.alpha=0.5", "--config.fed.rounds=8"], CONFIG,
       ["fed.alpha 0.1 -> 0.5;"]),  # more rounds alone would be fine
      (["--config.seed=1"], CONFIG, ["seed 0 -> 1;"]),
      ([], promptfl, ['method.name "fedvpt" -> "promptfl"']),
  ):
    flags = [f for f in FLAGS if "method.depth" not in f and "num_tokens" not in f] \
        if config == promptfl else []
    argv = [f"--config={config}", f"--workdir={workdir}", *(flags or FLAGS), *extra]
    result = driver.run(argv)
    assert_one_error_line(result, f"workdir '{workdir}' holds a run with another config",
                          *fragments, rc=1)
    assert "fed.rounds" not in result["stderr"].split("changeable")[0]
    assert snapshot(workdir) == before


def test_repeated_config_flag_takes_its_last_value(driver, tmp_path):
  bad, good = "--config.adv.eval=('pgd:linf:eps=abc',)", "--config.adv.eval=('fgsm:linf:eps=1/255',)"
  result = driver.train(tmp_path / "a", bad, good, "--config.adv.eval_examples=0")
  assert_one_error_line(result, "adv.eval_examples=0 is invalid", rc=1)  # `bad` was replaced
  result = driver.train(tmp_path / "b", good, bad)
  assert_one_error_line(result, "adv.eval: ", rc=1)
  assert not os.listdir(tmp_path)


def test_robust_eval_without_checkpoints_has_no_side_effects(driver, reference, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(reference, workdir, ignore=shutil.ignore_patterns("ckpt"))
  before = snapshot(workdir)
  result = driver.run([f"--workdir={workdir}", "--attack=fgsm:linf:eps=1/255"],
                      script="launch/robust_eval.py")
  assert_one_error_line(result, "has no checkpoint yet", rc=1)
  assert snapshot(workdir) == before and not (workdir / "ckpt").exists()


# ---- seeded fault injection (the inputs: tests/fault_inputs.py) ------------------------------

def test_fault_injection_each_bad_input_is_one_line_and_writes_nothing(
    driver, reference, tmp_path):
  rng = random.Random(15)
  arena = Arena(tmp_path, reference, rng)
  cases = [getattr(arena, name)() for name in GENERATORS]
  cases += [arena.every_checkpoint_damaged(kind) for kind in sorted(DAMAGE)]
  cases += [getattr(arena, rng.choice(GENERATORS[:-1]))() for _ in range(20)]
  assert len(cases) >= 30
  before = snapshot(tmp_path)
  for argv, fragments in cases:
    result = driver.run(argv)
    assert_one_error_line(result, *fragments)
    assert result["stdout"] == "", (argv, result["stdout"][-2000:])
  assert snapshot(tmp_path) == before


# ---- kill -9 at five seeded moments -------------------------------------------------------------

def newest_trusted_round(workdir):
  rounds = [r for r in checkpoint.step_rounds(str(workdir))
            if checkpoint.inspect_step(os.path.join(workdir, "ckpt", str(r))) is None]
  return rounds[0] if rounds else 0


@pytest.mark.slow
def test_kill9_at_five_seeded_moments_then_resume_equals_uninterrupted(
    driver, reference, tmp_path):
  rng = random.Random(15)
  moments = ["round", "metrics", "ckpt_write", "seal"]  # see tests/cli_driver.py
  rng.shuffle(moments)
  moments.append("final_eval")  # last: it leaves the run one round short
  workdir = tmp_path / "run"
  for kind in moments:
    left = ROUNDS - newest_trusted_round(workdir)
    kind = "round" if kind == "seal" and left < 2 else kind
    limit = left - 1 if kind == "seal" else left  # a sealed last round leaves nothing to kill
    n = rng.randint(1, max(1, (limit + 1) // 2))
    result = driver.train(workdir, kill={"kind": kind, "n": n})
    assert result["rc"] == -9, (kind, n, result["stderr"][-3000:])
    if kind == "ckpt_write":  # killed with the step complete under orbax's temporary name
      assert any(".orbax-checkpoint-tmp" in name for name in os.listdir(workdir / "ckpt"))
  result = driver.train(workdir)
  assert result["rc"] == 0, result["stderr"][-3000:]
  assert "resumed from" in result["stdout"]
  assert [without_timing(line) for line in metric_lines(workdir)] == [
      without_timing(line) for line in metric_lines(reference)]
  assert_same_arrays(prompts(workdir, ROUNDS), prompts(reference, ROUNDS))


# ---- in-process checks -----------------------------------------------------------------------

def test_changed_keys_rules():
  from fedprompt_jax import workdir as workdir_lib  # pylint: disable=import-outside-toplevel
  defaults = {"fed.label_space": "global", "seed": 0}
  old = {"seed": 0, "fed.rounds": 5, "optim.schedule": "constant", "gone.key": 1}
  same = dict(old, **{"fed.label_space": "global"})
  assert workdir_lib.changed_keys(old, {k: v for k, v in same.items() if k != "gone.key"},
                                  defaults) == []
  assert workdir_lib.changed_keys(old, dict(same, **{"fed.label_space": "local"}), defaults) == [
      'fed.label_space absent -> "local"']
  assert workdir_lib.changed_keys(old, dict(same, **{"fed.rounds": 9, "eval.every": 3}),
                                  {**defaults, "eval.every": 5}) == []
  assert workdir_lib.changed_keys(old, dict(same, **{"fed.rounds": 4}), defaults) == [
      "fed.rounds 5 -> 4 (may only grow)"]
  cosine = dict(old, **{"optim.schedule": "cosine"})
  assert workdir_lib.changed_keys(cosine, dict(cosine, **{"fed.rounds": 9}), defaults) == [
      "fed.rounds 5 -> 9 (fixed with optim.schedule='cosine')"]


def test_a_workdir_without_results_may_be_rerun_with_another_config(tmp_path):
  from fedprompt_jax import workdir as workdir_lib  # pylint: disable=import-outside-toplevel
  c = config_lib.default_config()
  (tmp_path / "config.json").write_text(c.to_json_best_effort(indent=2, sort_keys=True))
  c.seed = 3
  workdir_lib.check_same_config(c, str(tmp_path))  # stopped before its first evaluation
  (tmp_path / "metrics.jsonl").write_text("")
  with pytest.raises(workdir_lib.WorkdirError, match="another config .*: seed 0 -> 3;"):
    workdir_lib.check_same_config(c, str(tmp_path))


def test_workdir_that_is_read_only_is_refused(tmp_path, monkeypatch):
  from fedprompt_jax import workdir as workdir_lib  # pylint: disable=import-outside-toplevel
  locked = tmp_path / "locked"
  locked.mkdir()
  locked.chmod(0o555)
  if os.geteuid() == 0:  # root writes anyway: make the check see what a user would
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if os.fspath(p).startswith(
        str(locked)) else real(p, mode))
  for workdir, fragment in ((locked, "is not writable"),
                            (locked / "new", f"cannot be created in '{locked}'")):
    with pytest.raises(workdir_lib.WorkdirError, match=fragment):
      workdir_lib.check_writable(str(workdir))
  assert not os.listdir(locked)


def test_last_overrides_win_and_nearest_keys():
  from fedprompt_jax import cli  # pylint: disable=import-outside-toplevel
  argv = ["run.py", "--config=c.py", "--config.adv.eval=a", "--config.fed.rounds", "3",
          "--workdir=w", "--config.adv.eval=b", "--config.fed.rounds=4"]
  assert cli.last_overrides_win(argv) == ["run.py", "--config=c.py", "--workdir=w",
                                          "--config.adv.eval=b", "--config.fed.rounds=4"]
  c = config_lib.default_config()
  assert str(config_lib.unknown_key_error(c, "fed.alfa")).endswith("nearest: fed.alpha")
  assert cli.check_argv(["run.py"]).startswith("--config is required")


def test_tfds_is_core_and_imports_without_tensorflow_and_no_torch_notice():
  setup = open(os.path.join(REPO, "setup.py")).read()
  core = setup.split("CORE = [", 1)[1].split("]", 1)[0]
  assert '"tensorflow-datasets' in core and '"array-record' in core
  hide_torch = ("import importlib.util as u; f = u.find_spec; "
                "u.find_spec = lambda n, *a, **k: None if n.split('.')[0] == 'torch' "
                "else f(n, *a, **k); import sys; ")
  ours = hide_torch + (
      "import tensorflow_datasets; assert 'tensorflow' not in sys.modules; "
      "from fedprompt_jax import assets; from fedprompt_jax.models.tokenizer import "
      "load_tokenizer; print(load_tokenizer(assets.TINY_CLIP_DIR, 16)(['a photo'])[0].shape)")
  plain = hide_torch + "from transformers import CLIPTokenizer"
  env = dict(os.environ, PYTHONPATH=REPO)
  results = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=120, check=False) for code in (ours, plain)]
  assert results[0].returncode == 0 and results[0].stdout.strip() == "(1, 16)", results[0]
  assert "PyTorch was not found" not in results[0].stderr, results[0].stderr
  assert "PyTorch was not found" in results[1].stderr  # the notice this checks is real
