"""A CLIP of ViT-B/16's size on CPU: one PEP round with robust evaluation fits its memory plan.

Makes the random ViT-B/16-shaped checkpoint (scripts/make_vitb16_like.py, 600 MB)
in a temporary directory, runs launch/run.py on it as a child of a small wrapper
process that reports the child's peak resident memory (getrusage of its only
child), and checks the peak against a cap and against the plan the run printed.
The setting is the cheapest that still runs every phase on the real-size towers:
1 round of 2 clients x 1 step x 4 images, 48 test images, 8 attacked examples
(PGD-2), no personalised evaluation and no large-radius sanity attack.
"""

import os
import re
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAP_GB = 6.0          # the peak resident memory the run must stay under
RATIO = 1.5           # measured peak / planned total, and planned total / measured peak
TIME_LIMIT_S = 1200   # the run alone, on a loaded 2-core CPU
# Runs argv[2:] and writes its peak resident memory (bytes) to argv[1].
WRAPPER = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[2:]); "
           "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN)"
           ".ru_maxrss * 1024)); sys.exit(rc)")
FLAGS = ["--config.eval.check_zero_shot=False", "--config.fed.num_clients=4",
         "--config.fed.clients_per_round=2", "--config.fed.local_steps=1",
         "--config.fed.batch_size=4", "--config.fed.rounds=1", "--config.data.domains=('photo',)",
         "--config.data.train_per_class_domain=2", "--config.data.test_per_class_domain=1",
         "--config.eval.batch_size=16", "--config.eval.personalized=False",
         "--config.adv.eval=('pgd:linf:eps=1/255:steps=2',)", "--config.adv.eval_examples=8",
         "--config.adv.eval_batch_size=8", "--config.adv.sanity_attack="]


def planned_gb(stdout: str) -> tuple[float, float]:
  """(planned peak, measured resident size after the plan's compiles) in GB, as printed."""
  peak = re.search(r"planned peak: ([\d.]+) GB", stdout)
  after = re.search(r"the process holds ([\d.]+) GB after these compiles", stdout)
  assert peak and after, stdout[-3000:]
  return float(peak.group(1)), float(after.group(1))


@pytest.mark.slow
def test_vitb16_sized_pep_round_with_robust_evaluation_fits_its_plan(tmp_path):
  pytest.importorskip("torch")
  ckpt, workdir, peak_file = tmp_path / "vitb16", tmp_path / "run", tmp_path / "peak"
  env = dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1",
             TOKENIZERS_PARALLELISM="false", XLA_FLAGS="")
  subprocess.run([sys.executable, os.path.join(REPO, "scripts", "make_vitb16_like.py"),
                  f"--out={ckpt}"], check=True, env=env, timeout=600, capture_output=True)
  argv = [sys.executable, "-c", WRAPPER, str(peak_file), sys.executable,
          os.path.join(REPO, "launch", "run.py"),
          f"--config={os.path.join(REPO, 'configs', 'pep.py')}", f"--workdir={workdir}",
          f"--config.clip.checkpoint={ckpt}", *FLAGS]
  start = time.time()
  result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=TIME_LIMIT_S,
                          check=False)
  seconds = time.time() - start
  assert result.returncode == 0, result.stderr[-3000:]
  measured = int(peak_file.read_text()) / 1e9
  planned, after = planned_gb(result.stdout)
  report = (f"measured peak {measured:.2f} GB; planned {planned:.2f} GB (the process held "
            f"{after:.2f} GB after planning); {seconds:.0f} s")
  print(report)
  assert measured < CAP_GB, report
  assert planned / RATIO <= measured <= planned * RATIO, report
  assert "robust evaluation" in result.stdout and "seconds (round 1): round " in result.stdout
  assert "Final results (round 1" in result.stdout
