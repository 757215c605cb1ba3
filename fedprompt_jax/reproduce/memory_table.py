"""Producer of the `vitb16_memory` table: a CLIP of ViT-B/16's size on this host, planned memory
against measured peak.

scripts/make_vitb16_like.py writes a random checkpoint with openai/clip-vit-base-patch16's
shapes (600 MB, needs torch) under WORKDIR (made once, reused). `launch/run.py
--config=configs/pep.py` then runs on it as the only child of a small wrapper that reports the
child's peak resident memory (getrusage); the run prints its memory plan (memory_plan.py), which
is read back from its output. Every call runs afresh: the peak is a property of the run, not of
its results. Settings: `setting=test` (the default) is tests/test_vitb16_memory.py's cheapest
run that still takes every phase on the real-size towers; `setting=readme` is the README's
larger run (configs/pep.py's domains, batches and attacks on 8 examples; under an hour here).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time

from fedprompt_jax.reproduce import results_io
from fedprompt_jax.reproduce.tables import REPO, Options, Produced, ProducerError, settings

DEFAULTS = {"setting": "test"}
# Runs argv[2:] and writes its peak resident memory (bytes) to argv[1].
WRAPPER = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[2:]); "
           "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN)"
           ".ru_maxrss * 1024)); sys.exit(rc)")
SMALL_RUN = ("--config.fed.num_clients=4", "--config.fed.clients_per_round=2",
             "--config.fed.local_steps=1", "--config.fed.batch_size=4", "--config.fed.rounds=1",
             "--config.data.train_per_class_domain=2", "--config.data.test_per_class_domain=1",
             "--config.eval.check_zero_shot=False")
SETTINGS = {
    # One domain (48 test images), PGD-2 on 8 examples, no personalised evaluation, no sanity
    # attack.
    "test": SMALL_RUN + (
        "--config.data.domains=('photo',)", "--config.eval.batch_size=16",
        "--config.eval.personalized=False", "--config.adv.eval=('pgd:linf:eps=1/255:steps=2',)",
        "--config.adv.eval_examples=8", "--config.adv.eval_batch_size=8",
        "--config.adv.sanity_attack="),
    # configs/pep.py's own domains, batches and attacks, 8 attacked examples.
    "readme": SMALL_RUN + ("--config.adv.eval_examples=8",),
}
GB = 1e9


def planned(stdout: str) -> tuple[list[tuple[str, float, str]], float, float]:
  """([(item, GB, note)] of the printed plan, planned peak GB, GB the process held after
  planning)."""
  items = []
  inside = False
  for line in stdout.splitlines():
    if line.startswith("memory plan ("):
      inside, items = True, []
      continue
    if not inside:
      continue
    match = re.match(r"\s+(\S.*?)\s+([\d.]+) GB\s*(.*)$", line)
    if match and not line.strip().startswith("planned peak"):
      items.append((match.group(1), float(match.group(2)), match.group(3).strip()))
    elif "planned peak" in line:
      inside = False
  peak = re.search(r"planned peak: ([\d.]+) GB", stdout)
  after = re.search(r"the process holds ([\d.]+) GB after these compiles", stdout)
  if not (peak and after and items):
    raise RuntimeError("the run printed no memory plan: " + " ".join(stdout.split()[-40:]))
  return items, float(peak.group(1)), float(after.group(1))


def phase_seconds(stdout: str) -> dict[str, float]:
  """{"<phase> (round r)": seconds} from the run's "seconds (round r): a 1.0, b 2.0 (5x)" lines
  (a phase repeated since the last line: its total)."""
  out = {}
  for r, rest in re.findall(r"^seconds \(round (\d+)\): (.*)$", stdout, re.M):
    for name, value in re.findall(r"([^,]+?) ([\d.]+)(?: \(\d+x\))?(?:,|$)", rest):
      out[f"{name.strip()} (round {r})"] = float(value)
  return out


def _checkpoint(workdir: str, env) -> str:
  path = os.path.join(workdir, "vitb16_like")
  if not os.path.exists(os.path.join(path, "config.json")):
    subprocess.run([sys.executable, os.path.join(REPO, "scripts", "make_vitb16_like.py"),
                    f"--out={path}"], check=True, env=env, capture_output=True)
  return path


def measure(workdir: str, flags, env, timeout: float | None = None) -> dict:
  """Runs the PEP round on the ViT-B/16-shaped checkpoint; its plan, peak and timings."""
  ckpt = _checkpoint(workdir, env)
  run_dir, peak_file = os.path.join(workdir, "run"), os.path.join(workdir, "peak_bytes")
  shutil.rmtree(run_dir, ignore_errors=True)
  argv = [sys.executable, "-c", WRAPPER, peak_file, sys.executable,
          os.path.join(REPO, "launch", "run.py"),
          f"--config={os.path.join(REPO, 'configs', 'pep.py')}", f"--workdir={run_dir}",
          f"--config.clip.checkpoint={ckpt}", *flags]
  start = time.time()
  result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False,
                          timeout=timeout)
  seconds = time.time() - start
  if result.returncode != 0:
    tail = result.stderr.strip().splitlines()[-1:] or ["(no output)"]
    raise RuntimeError(f"launch/run.py on the ViT-B/16-shaped checkpoint exited "
                       f"{result.returncode}: {tail[0]}")
  with open(peak_file, encoding="utf-8") as f:
    peak = int(f.read()) / GB
  items, planned_peak, after = planned(result.stdout)
  return dict(items=items, planned_peak=planned_peak, after_planning=after, peak=peak,
              seconds=seconds, phases=phase_seconds(result.stdout), stdout=result.stdout)


def produce(options: Options) -> Produced:
  s = settings("vitb16_memory", options.overrides, DEFAULTS)
  if s["setting"] not in SETTINGS:
    raise ProducerError(f"--set=setting={s['setting']!r}; valid: {', '.join(SETTINGS)}")
  try:
    import torch  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    raise ProducerError('table vitb16_memory needs torch to write the checkpoint: pip install '
                        '-e ".[torch]"') from None
  env = dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1",
             TOKENIZERS_PARALLELISM="false", XLA_FLAGS="")
  os.makedirs(options.workdir, exist_ok=True)
  flags = SETTINGS[s["setting"]]
  m = measure(options.workdir, flags, env)
  rows = [(f"plan: {name}", gb, note) for name, gb, note in m["items"]]
  rows += [("**planned peak** (resident + largest phase)", m["planned_peak"], ""),
           ("**measured peak** resident memory (getrusage of the run)", m["peak"],
            f"{m['peak'] / m['planned_peak']:.2f}x the plan"),
           ("measured: resident after the plan's compiles", m["after_planning"], "")]
  timing = "; ".join(f"{k} {v:.0f} s" for k, v in m["phases"].items())
  table = results_io.Table(
      name="vitb16_memory",
      title="A CLIP of ViT-B/16's size on this host: memory plan against measured peak",
      columns=("item", "GB", "note"), rows=tuple(rows), formats=("g", "fixed3", "g"),
      notes=(f"`python launch/run.py --config=configs/pep.py --config.clip.checkpoint=DIR "
             f"{' '.join(flags)}` (setting `{s['setting']}`), DIR from `python "
             f"scripts/make_vitb16_like.py --out=DIR` (random weights, 149.6M parameters), "
             f"on {os.cpu_count()} CPU cores, float32. Wall time {m['seconds']:.0f} s in all; "
             f"phases: {timing}."))
  return Produced(table, None, dict(settings=s, flags=list(flags),
                                    **{k: v for k, v in m.items() if k != "stdout"}))
