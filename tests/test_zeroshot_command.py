"""launch/zeroshot.py: a table of accuracies, or one error line and exit 1."""

import os
import subprocess
import sys

from clip_fixtures import fixture_dir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, os.path.join(REPO, "launch", "zeroshot.py"), *args],
                        capture_output=True, text=True, env=env, timeout=300, check=False)


def test_prints_overall_and_per_domain_accuracy():
  result = run(f"--checkpoint={fixture_dir('clip_tiny_a')}", "--data=shapes",
               "--test_per_class_domain=1")
  assert result.returncode == 0, result.stderr
  lines = result.stdout.strip().splitlines()
  assert "48 classes, chance 2.1%" in lines[0] and "240 test images" in lines[0]
  rows = {line.split()[0]: float(line.split()[1].rstrip("%")) for line in lines[1:]}
  domains = ("photo", "sketch", "noisy", "pattern", "falsecolour")
  assert set(rows) == {"all", *domains}
  assert all(0.0 <= v <= 100.0 for v in rows.values())
  assert abs(rows["all"] - sum(rows[d] for d in domains) / len(domains)) < 0.2


def test_bad_inputs_give_one_line():
  for args, fragment in (
      (["--data=imagenet"], "unknown data source 'imagenet'; valid: digits, shapes, tfds"),
      (["--data=tfds"], "--data=tfds needs --tfds_name and --data_dir"),
      (["--checkpoint=/no/such/ckpt"], "does not exist"),
  ):
    result = run(f"--checkpoint={fixture_dir('clip_tiny_a')}", *args)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: {result.stderr.strip()[7:]}"]
    assert fragment in result.stderr
