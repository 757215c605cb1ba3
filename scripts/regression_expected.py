"""Expected numbers of the shortened main comparison: results/regression/expected.json.

  python scripts/regression_expected.py                    # seeds 0..4, writes the file
  python scripts/regression_expected.py --seeds=0,1,2 --out=/tmp/expected.json

Runs `launch/compare.py`'s "pep" comparison (PEP-FedPT, FedVPT, PromptFL, local-only on the
PEP default's federation, embedded tiny CLIP) shortened by SHORT (12 clients, 4 a round,
3 rounds of 8 local steps, 10 train / 5 test images per class and domain, no robust
evaluation), each seed in its own workdir under a temporary folder, in the environment of
the tests (tests/conftest.py: CPU, 8 host devices, float32 matmuls at "highest"), since
`tests/test_regression.py` compares its seed-0 run against this file.

The file holds, per method and metric (fractions, final round): the per-seed values, their
mean and std (ddof=1), and the band [mean - w, mean + w] with w = max(K * std, FLOOR):
K = 3 standard deviations of the seed spread, FLOOR = 0.03 (3 points) so that no band is
narrower than the float noise between machines (one test image is 0.2 points of global
accuracy, one of a worst-10% client's few images about 2.5 points). Also: the config hash
of each method (config_hash: the canonical JSON of its config without `seed` and without
workdir.RESUMABLE_KEYS), the partition hash of each seed (Partition.content_hash), the
package versions, the device setting and the command. Regenerate it (and commit it)
after any change that is meant to move the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

# The tests' environment (tests/conftest.py), set before jax is imported.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "launch"))
import compare  # noqa: E402  pylint: disable=wrong-import-position
from fedprompt_jax import atomic  # noqa: E402  pylint: disable=wrong-import-position
from fedprompt_jax import workdir as workdir_lib  # noqa: E402  pylint: disable=wrong-import-position

COMPARISON = "pep"
SHORT = ("fed.rounds=3", "eval.every=3", "adv.eval=()", "eval.check_zero_shot=False",
         "fed.num_clients=12", "fed.clients_per_round=4", "fed.batch_size=16",
         "data.train_per_class_domain=10", "data.test_per_class_domain=5",
         "eval.batch_size=256")
SEEDS = ("0", "1", "2", "3", "4")
K = 3.0
FLOOR = 0.03
DEVICES = 8
MATMUL_PRECISION = "highest"
EXPECTED = os.path.join(REPO, "results", "regression", "expected.json")
COMMAND = "python scripts/regression_expected.py"


def methods() -> list[str]:
  return list(compare.COMPARISONS[COMPARISON].runs)


def config_hash(method: str) -> str:
  """SHA-256 of the canonical JSON of `method`'s shortened config, without `seed` and the
  keys that may change on resume (workdir.RESUMABLE_KEYS: they do not change results)."""
  return workdir_lib.config_hash(compare.run_config(compare.COMPARISONS[COMPARISON], method, 0,
                                                    SHORT))


def partition_hash(run_dir: str) -> str:
  from fedprompt_jax import run_files  # pylint: disable=import-outside-toplevel
  return run_files.partition_hash(run_dir)


def run(workdir: str, seeds, names=None) -> tuple[dict, dict]:
  """Runs the shortened comparison; returns ({method: [final record per seed]},
  {seed: partition hash}). All methods of a seed share the partition (checked)."""
  names = methods() if names is None else names
  results, _ = compare.run_comparison(compare.COMPARISONS[COMPARISON], workdir, list(seeds),
                                      names, SHORT)
  hashes = {}
  for seed in seeds:
    found = {partition_hash(os.path.join(workdir, f"{m}_seed{seed}")) for m in names}
    if len(found) != 1:
      raise RuntimeError(f"seed {seed}: the methods trained on different partitions {found}")
    hashes[str(seed)] = found.pop()
  return results, hashes


def band(values) -> dict:
  import numpy as np  # pylint: disable=import-outside-toplevel
  v = np.asarray(values, np.float64)
  mean = float(v.mean())
  std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
  half = max(K * std, FLOOR)
  return {"values": [float(x) for x in v], "mean": mean, "std": std, "half_width": half,
          "band": [mean - half, mean + half]}


def versions() -> dict:
  from importlib import metadata  # pylint: disable=import-outside-toplevel
  out = {"python": platform.python_version()}
  for name in ("jax", "jaxlib", "flax", "optax", "numpy"):
    out[name] = metadata.version(name)
  return out


def expected(results: dict, hashes: dict, seeds) -> dict:
  metrics = {}
  for name, records in results.items():
    metrics[name] = {key: band([r[key] for r in records])
                     for key in compare.COMPARISONS[COMPARISON].metrics if key in records[0]}
  return {
      "comparison": COMPARISON,
      "overrides": list(SHORT),
      "seeds": [int(s) for s in seeds],
      "band_rule": f"mean +- max({K:g} * std(ddof=1) over seeds, {FLOOR:g}); fractions",
      "k": K,
      "floor": FLOOR,
      "metrics": metrics,
      "config_hash": {name: config_hash(name) for name in results},
      "partition_hash": hashes,
      "versions": versions(),
      "devices": DEVICES,
      "matmul_precision": MATMUL_PRECISION,
      "machine": platform.machine(),
      "command": COMMAND,
  }


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--seeds", default=",".join(SEEDS))
  parser.add_argument("--out", default=EXPECTED)
  parser.add_argument("--workdir", default=None, help="default: a temporary folder")
  args = parser.parse_args()
  import jax  # pylint: disable=import-outside-toplevel
  jax.config.update("jax_default_matmul_precision", MATMUL_PRECISION)
  if jax.device_count() != DEVICES:
    print(f"error: {jax.device_count()} devices; the tests' setting is {DEVICES} "
          "(set XLA_FLAGS=--xla_force_host_platform_device_count=8)", file=sys.stderr)
    return 1
  seeds = [s.strip() for s in args.seeds.split(",") if s.strip()]
  start = time.time()
  with tempfile.TemporaryDirectory() as tmp:
    results, hashes = run(args.workdir or tmp, seeds)
  out = expected(results, hashes, seeds)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  atomic.write_text(args.out, json.dumps(out, indent=2, sort_keys=True) + "\n")
  for name, keys in out["metrics"].items():
    for key, b in keys.items():
      print(f"{name:11s} {key:17s} mean {100 * b['mean']:5.1f}  std {100 * b['std']:4.1f}  "
            f"band +-{100 * b['half_width']:4.1f}")
  print(f"wrote {args.out} in {time.time() - start:.0f} s")
  return 0


if __name__ == "__main__":
  sys.exit(main())
