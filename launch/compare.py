"""Runs several methods on the same partition and seeds; writes one table (and a PNG), mean +- std.

  python launch/compare.py --workdir=workdirs/compare                      # PEP, FedVPT, PromptFL, local-only
  python launch/compare.py --workdir=W --seeds=0,1,2 --set=fed.alpha=0.3   # overrides for every run

Every run is an ordinary `train_and_evaluate` in WORKDIR/<name>_seed<s> (so a rerun resumes
or skips finished runs); the partition depends only on the data, the partition keys and the
seed, so all methods of a seed see the same clients. Reported numbers are final-round.
"""

import json
import os
import sys

import numpy as np
from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fedprompt_jax import config as config_lib  # noqa: E402

# FedVPT as in the README's comparison table: 8 tokens and SGD at 0.05 (the held-out-domain
# default, 32 tokens with Adam and a cosine, is tuned for adversarial training there).
_FEDVPT = ("method.num_tokens=8", "optim.name=sgd", "optim.lr=0.05", "optim.schedule=constant")
# name -> (config file, extra "key=value" overrides)
RUNS = {
    "pep": ("configs/pep.py", ()),
    "fedvpt": ("configs/fedvpt.py", _FEDVPT),
    "promptfl": ("configs/promptfl.py", ()),
    "local_only": ("configs/fedvpt.py", _FEDVPT + ("fed.local_only=True",)),
}
SHARED_KEYS = ("fed.num_clients", "fed.new_clients", "fed.clients_per_round", "fed.rounds", "fed.alpha",
               "fed.partition", "fed.local_steps", "fed.batch_size", "fed.min_size",
               "data.domains", "data.train_per_class_domain", "data.test_per_class_domain")
METRICS = ("pers_acc_mean", "pers_acc_worst10", "global_acc", "zeroshot_acc")

_WORKDIR = flags.DEFINE_string("workdir", "workdirs/compare", "where the runs and the table go")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "seeds")
_METHODS = flags.DEFINE_list("methods", list(RUNS), f"subset of {', '.join(RUNS)}")
_SET = flags.DEFINE_multi_string("set", [], "key=value applied to every run")


def load_config(path: str, overrides):
  import importlib.util  # pylint: disable=import-outside-toplevel
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  spec = importlib.util.spec_from_file_location("cfg", os.path.join(repo, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(",".join(overrides) if overrides else None)


def table(results: dict) -> str:
  lines = ["| method | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
  for name, runs in results.items():
    cells = []
    for key in METRICS:
      vals = np.array([r[key] for r in runs if key in r]) * 100
      cells.append(f"{vals.mean():.1f} +- {vals.std():.1f}" if len(vals) else "-")
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def save_png(results: dict, path: str) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  keys = METRICS[:3]
  fig, ax = plt.subplots(figsize=(8, 4))
  width = 0.8 / max(1, len(results))
  for i, (name, runs) in enumerate(results.items()):
    vals = [[r.get(k, np.nan) * 100 for r in runs] for k in keys]
    ax.bar(np.arange(len(keys)) + i * width, np.nanmean(vals, 1), width,
           yerr=np.nanstd(vals, 1), label=name, capsize=3)
  ax.set_xticks(np.arange(len(keys)) + width * (len(results) - 1) / 2, keys)
  ax.set_ylabel("accuracy (%)")
  ax.legend()
  ax.grid(axis="y", alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  from fedprompt_jax import train  # pylint: disable=import-outside-toplevel
  unknown = [m for m in _METHODS.value if m not in RUNS]
  if unknown:
    print(f"error: --methods has unknown {unknown}; valid: {', '.join(RUNS)}", file=sys.stderr)
    return 1
  results = {}
  try:
    base_c = load_config("configs/pep.py", list(_SET.value))  # shared federation setting
    for name in _METHODS.value:
      path, extra = RUNS[name]
      for seed in _SEEDS.value:
        c = load_config(path, list(extra) + list(_SET.value) + [f"seed={int(seed)}"])
        for key in SHARED_KEYS:
          section, leaf = key.split(".")
          c[section][leaf] = base_c[section][leaf]
        records = train.train_and_evaluate(c, os.path.join(_WORKDIR.value, f"{name}_seed{seed}"))
        results.setdefault(name, []).append(records[-1])
  except (config_lib.ConfigError, ValueError, FileNotFoundError) as e:
    print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
    return 1
  text = table(results)
  os.makedirs(_WORKDIR.value, exist_ok=True)
  with open(os.path.join(_WORKDIR.value, "comparison.md"), "w") as f:
    f.write(f"Final-round accuracy (%), mean +- std over seeds {', '.join(_SEEDS.value)}\n\n"
            + text + "\n")
  with open(os.path.join(_WORKDIR.value, "comparison.json"), "w") as f:
    json.dump(results, f, indent=2)
  save_png(results, os.path.join(_WORKDIR.value, "comparison.png"))
  print(text)
  return 0


if __name__ == "__main__":
  app.run(lambda argv: sys.exit(main(argv)))
