"""Runs several methods on the same partition and seeds; writes one table (and a PNG), mean +- std.

  python launch/compare.py --workdir=workdirs/compare                      # PEP, FedVPT, PromptFL, local-only
  python launch/compare.py --workdir=W --seeds=0,1,2 --set=fed.alpha=0.3   # overrides for every run
  python launch/compare.py --comparison=adversarial   # FedAPT, its ablations and the +AT baselines
  python launch/compare.py --comparison=generalisation --seeds=0,1,2   # FedMVP base-to-novel
  python launch/compare.py --comparison=baselines   # PromptFL and FedVPT at their defaults
  python launch/compare.py --comparison=adversarial_training   # FedVPT: clean training vs PGD-AT

--comparison=pep (the default) is the PEP-FedPT federation above. --comparison=adversarial runs
configs/fedapt.py's presets (FedAPT; ablations no_gle, no_share, no_at, global_labels; baselines
promptfl, fedvpt, maple (all + PGD-AT) and zeroshot) in configs/fedapt.py's federation, and
reports global clean accuracy and every robust_acc/* key the runs report (clean on the attacked
examples, each adv.eval attack, the per-example worst case), over all classes; its default
workdir is workdirs/compare_adversarial. --comparison=generalisation runs FedMVP and its
ablations (fedmvp_no_consistency: consistency_weight 0; fedmvp_class_name: no attributes,
each class's one sentence is the first zero-shot template with its name; fedmvp_step_once:
one optimizer step per round, as the released code; fedmvp_lora: the `lora` preset, i.e.
*with* the LoRA phase, since FedMVP's default has LoRA off) against PromptFL, FedVPT and
zero-shot in configs/fedmvp.py's base-to-novel federation and optimizer (SGD, momentum,
weight decay, cosine; each method keeps its own learning rate, GENERALISATION_LR), and
reports base (global_acc), novel (novel_acc) and their harmonic mean (base_novel_hm);
no robust or personalised evaluation; default workdir workdirs/compare_generalisation.
--comparison=baselines runs configs/promptfl.py and configs/fedvpt.py as shipped (no robust
evaluation) and reports zero-shot, global and per-domain global accuracy.
--comparison=adversarial_training trains configs/fedvpt.py clean (`:apgd`, clean training with
`:at`'s attacks) and with PGD-AT (`:at`), and attacks both at the final round with PGD-10 and
APGD-CE-20 at 1/255 and 2/255 on one stratified subset of 576 test images (AT_OVERRIDES).

Every run is an ordinary `train_and_evaluate` in WORKDIR/<name>_seed<s> (so a rerun resumes
or skips finished runs); the partition depends only on the data, the partition keys and the
seed, so all methods of a seed see the same clients. Reported numbers are final-round.
"""

import dataclasses
import json
import os
import sys

import numpy as np
from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fedprompt_jax import atomic  # noqa: E402
from fedprompt_jax import config as config_lib  # noqa: E402
from fedprompt_jax import plot_compare  # noqa: E402

# FedVPT as in the README's comparison table: 8 tokens and SGD at 0.05 (configs/fedvpt.py's
# default, 32 tokens with Adam and a cosine, was chosen for adversarial training on world v1).
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

# The adversarial comparison: name -> (config file, preset of configs/fedapt.py or ()).
ADVERSARIAL_RUNS = {
    "fedapt": ("configs/fedapt.py", ()),
    "no_gle": ("configs/fedapt.py", ("no_gle",)),
    "no_share": ("configs/fedapt.py", ("no_share",)),
    "no_at": ("configs/fedapt.py", ("no_at",)),
    "global_labels": ("configs/fedapt.py", ("global_labels",)),
    "promptfl": ("configs/fedapt.py", ("promptfl",)),
    "fedvpt": ("configs/fedapt.py", ("fedvpt",)),
    "maple": ("configs/fedapt.py", ("maple",)),
    "zeroshot": ("configs/fedapt.py", ("zeroshot",)),
    # FedAPT with M = 16 context tokens per layer (48 visual tokens on the tiny CLIP, against
    # FedVPT+AT's 128): the capacity check of README "FedAPT against its baselines".
    "fedapt_m16": ("configs/fedapt.py", ("method.num_ctx=16",)),
}
# The federation and the evaluation every run shares (fed.label_space is not: global_labels
# changes it; adv.train is not: no_at and zeroshot change it).
ADVERSARIAL_SHARED_KEYS = (
    "fed.num_clients", "fed.clients_per_round", "fed.rounds", "fed.partition",
    "fed.classes_per_client", "fed.alpha", "fed.local_steps", "fed.batch_size", "fed.min_size",
    "data.domains", "data.train_per_class_domain", "data.test_per_class_domain",
    "adv.eval", "adv.eval_examples")
ADVERSARIAL_METRICS = ("global_acc",)  # then every robust_acc/* key of the runs, in their order

# The generalisation comparison (issue 13): name -> (config file, preset / overrides).
# Learning rates: each method's best base-novel HM in one sweep over {0.003, 0.03, 0.3} on
# seed 0 (the same sweep for every method; README "Generalisation"). HM (%) at 0.003 / 0.03 /
# 0.3 on world v2: FedMVP 63.0 / 65.5 / 68.0, PromptFL 56.6 / 72.6 / 77.8, FedVPT 76.3 / 71.3 /
# 36.8 (world v1's falsecolour: FedMVP 19.6 / 20.2 / 19.4, PromptFL 26.9 / 31.1 / 66.2, FedVPT
# 42.4 / 27.9 / 19.1). The FedMVP ablations take FedMVP's. An --set=optim.lr=... overrides them.
GENERALISATION_LR = {"fedmvp": 0.3, "promptfl": 0.3, "fedvpt": 0.003}
_MVP_LR = (f"optim.lr={GENERALISATION_LR['fedmvp']}",)
GENERALISATION_RUNS = {
    "fedmvp": ("configs/fedmvp.py", _MVP_LR),
    "fedmvp_no_consistency": ("configs/fedmvp.py", ("no_consistency",) + _MVP_LR),
    "fedmvp_class_name": ("configs/fedmvp.py", ("class_name",) + _MVP_LR),
    "fedmvp_step_once": ("configs/fedmvp.py", ("step_once",) + _MVP_LR),
    "fedmvp_lora": ("configs/fedmvp.py", ("lora",) + _MVP_LR),
    "promptfl": ("configs/promptfl.py", (f"optim.lr={GENERALISATION_LR['promptfl']}",)),
    "fedvpt": ("configs/fedvpt.py", (f"optim.lr={GENERALISATION_LR['fedvpt']}",)),
    "zeroshot": ("configs/fedmvp.py", ("method.name=zeroshot",) + _MVP_LR),  # trains nothing
}
# configs/fedmvp.py's base-to-novel federation, its optimizer but the learning rate, and the
# evaluation, for every run.
GENERALISATION_SHARED_KEYS = (
    "fed.num_clients", "fed.clients_per_round", "fed.rounds", "fed.partition",
    "fed.classes_per_client", "fed.shots", "fed.weighting", "fed.local_epochs",
    "fed.local_steps", "fed.max_local_steps", "fed.batch_size", "fed.min_size",
    "data.domains", "data.train_per_class_domain", "data.test_per_class_domain",
    "data.base_novel", "optim.name", "optim.momentum", "optim.weight_decay", "optim.schedule",
    "eval.every", "eval.personalized", "adv.eval")
GENERALISATION_METRICS = ("global_acc", "novel_acc", "base_novel_hm")


# The global baselines at their embedded defaults (README "Global baselines"): configs/promptfl.py
# and configs/fedvpt.py as shipped (the same federation), clean figures only.
BASELINE_RUNS = {
    "promptfl": ("configs/promptfl.py", ()),
    "fedvpt": ("configs/fedvpt.py", ()),
}
BASELINE_SHARED_KEYS = (
    "fed.num_clients", "fed.clients_per_round", "fed.rounds", "fed.partition", "fed.alpha",
    "fed.local_steps", "fed.batch_size", "fed.min_size", "data.domains",
    "data.train_per_class_domain", "data.test_per_class_domain")
BASELINE_METRICS = ("zeroshot_acc", "global_acc", "global_acc/tinted_photo",
                    "global_acc/tinted_sketch", "global_acc/tinted_noisy")

# Adversarial training (README "Adversarial training"): configs/fedvpt.py trained clean and with
# PGD-AT (`:at`), both attacked by `:at`'s evaluation (PGD-10 and APGD-CE-20 at 1/255 and 2/255)
# on one stratified subset of 576 test images (4 per class and domain), at the final round only.
AT_RUNS = {
    "clean_training": ("configs/fedvpt.py", ("apgd",)),
    "pgd_at": ("configs/fedvpt.py", ("at",)),
}
AT_SHARED_KEYS = (
    "fed.num_clients", "fed.clients_per_round", "fed.rounds", "fed.partition", "fed.alpha",
    "fed.local_steps", "fed.batch_size", "fed.min_size", "data.domains",
    "data.train_per_class_domain", "data.test_per_class_domain", "optim.name", "optim.lr",
    "optim.schedule", "adv.eval_examples", "adv.eval_subset", "adv.eval_rounds")
AT_OVERRIDES = ("adv.eval_examples=576", "adv.eval_subset=stratified", "adv.eval_rounds=final")


@dataclasses.dataclass(frozen=True)
class Comparison:
  runs: dict
  base_config: str        # the config whose SHARED keys every run takes
  shared_keys: tuple
  metrics: tuple          # reported keys (robust_acc/* ones are added when `robust` is set)
  png_keys: tuple | None  # None: every reported key
  robust: bool
  workdir: str
  overrides: tuple = ()   # "key=value" for every run (and the base config), before --set


COMPARISONS = {
    "pep": Comparison(RUNS, "configs/pep.py", SHARED_KEYS, METRICS, METRICS[:3], False,
                      "workdirs/compare"),
    "adversarial": Comparison(ADVERSARIAL_RUNS, "configs/fedapt.py", ADVERSARIAL_SHARED_KEYS,
                              ADVERSARIAL_METRICS, None, True, "workdirs/compare_adversarial"),
    "generalisation": Comparison(GENERALISATION_RUNS, "configs/fedmvp.py",
                                 GENERALISATION_SHARED_KEYS, GENERALISATION_METRICS, None, False,
                                 "workdirs/compare_generalisation",
                                 ("eval.personalized=False", "adv.eval=()")),
    "baselines": Comparison(BASELINE_RUNS, "configs/promptfl.py", BASELINE_SHARED_KEYS,
                            BASELINE_METRICS, None, False, "workdirs/compare_baselines",
                            ("adv.eval=()",)),
    "adversarial_training": Comparison(AT_RUNS, "configs/fedvpt.py", AT_SHARED_KEYS,
                                       ("global_acc",), None, True,
                                       "workdirs/compare_adversarial_training", AT_OVERRIDES),
}

_COMPARISON = _WORKDIR = _SEEDS = _METHODS = _SET = None  # absl flag holders, set by _define_flags()


def load_config(path: str, overrides):
  import importlib.util  # pylint: disable=import-outside-toplevel
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  spec = importlib.util.spec_from_file_location("cfg", os.path.join(repo, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(",".join(overrides) if overrides else None)


def robust_keys(results: dict) -> tuple:
  """Every robust_acc/* key of the runs' final records: clean, the attacks (in order of first
  appearance), the per-radius worst cases (robust_acc/worst@...), worst."""
  keys = {}
  for runs in results.values():
    for record in runs:
      keys.update((k, None) for k in record if k.startswith("robust_acc/"))
  ends = ("robust_acc/clean", "robust_acc/worst")
  radii = tuple(k for k in keys if k.startswith("robust_acc/worst@"))
  attacks = tuple(k for k in keys if k not in ends and k not in radii)
  return (tuple(k for k in ends[:1] if k in keys) + attacks + radii
          + tuple(k for k in ends[1:] if k in keys))


def reported_metrics(comparison: Comparison, results: dict) -> tuple:
  """The keys the table reports: the comparison's metrics, then (robust comparisons) every
  robust_acc/* key of the runs' final records."""
  return comparison.metrics + (robust_keys(results) if comparison.robust else ())


def table(results: dict, metrics=METRICS) -> str:
  lines = ["| method | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
  for name, runs in results.items():
    cells = []
    for key in metrics:
      vals = np.array([r[key] for r in runs if key in r]) * 100
      cells.append(f"{vals.mean():.1f} +- {vals.std():.1f}" if len(vals) else "-")
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def save_png(results: dict, path: str, keys=METRICS[:3], seeds=()) -> None:
  """comparison.png: a bar group per metric, mean +- seed std, seed dots, zero-shot line
  (fedprompt_jax/plot_compare.py)."""
  title = "Final round, mean and std over seeds" + (f" {', '.join(map(str, seeds))}" if seeds
                                                    else "")
  plot_compare.save_comparison(results, path, keys, title)


def run_config(comparison: Comparison, name: str, seed, overrides=()):
  """The config of run `name` for `seed`: its file and extras, the comparison's and the user's
  overrides, then the shared keys of the base config (with the same overrides)."""
  overrides = list(comparison.overrides) + list(overrides)
  base_c = load_config(comparison.base_config, overrides)  # shared federation setting
  path, extra = comparison.runs[name]
  c = load_config(path, list(extra) + overrides + [f"seed={int(seed)}"])
  for key in comparison.shared_keys:
    section, leaf = key.split(".")
    c[section][leaf] = base_c[section][leaf]
  return c


def run_comparison(comparison: Comparison, workdir: str, seeds, methods, overrides) -> tuple:
  """Trains (or resumes) every run; writes comparison.{md,json,png}; returns (results, table)."""
  from fedprompt_jax import train  # pylint: disable=import-outside-toplevel
  results = {}
  for name in methods:
    for seed in seeds:
      c = run_config(comparison, name, seed, overrides)
      records = train.train_and_evaluate(c, os.path.join(workdir, f"{name}_seed{seed}"))
      results.setdefault(name, []).append(records[-1])
  metrics = reported_metrics(comparison, results)
  text = table(results, metrics)
  os.makedirs(workdir, exist_ok=True)
  atomic.write_text(os.path.join(workdir, "comparison.md"),
                    f"Final-round accuracy (%), mean +- std over seeds {', '.join(seeds)}\n\n"
                    + text + "\n")
  atomic.write_text(os.path.join(workdir, "comparison.json"), json.dumps(results, indent=2))
  save_png(results, os.path.join(workdir, "comparison.png"),
           metrics if comparison.png_keys is None else comparison.png_keys, seeds)
  return results, text


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  comparison = COMPARISONS[_COMPARISON.value]
  methods = list(comparison.runs) if _METHODS.value is None else _METHODS.value
  unknown = [m for m in methods if m not in comparison.runs]
  if unknown:
    print(f"error: --methods has unknown {unknown}; valid: {', '.join(comparison.runs)}",
          file=sys.stderr)
    return 1
  try:
    _, text = run_comparison(comparison, _WORKDIR.value or comparison.workdir, _SEEDS.value,
                             methods, _SET.value)
  except (config_lib.ConfigError, ValueError, FileNotFoundError) as e:
    print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
    return 1
  print(text)
  return 0


def _define_flags():
  """The command's flags, defined only when it runs as a command (importing it, as the tests
  and other scripts do, leaves absl's global flags alone)."""
  global _COMPARISON, _WORKDIR, _SEEDS, _METHODS, _SET  # pylint: disable=global-statement
  _COMPARISON = flags.DEFINE_enum("comparison", "pep", list(COMPARISONS), "which comparison set")
  _WORKDIR = flags.DEFINE_string("workdir", None, "where the runs and the table go; default "
                                 "workdirs/compare (pep), workdirs/compare_adversarial or "
                                 "workdirs/compare_generalisation")
  _SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "seeds")
  _METHODS = flags.DEFINE_list("methods", None, f"subset of the set's runs (pep: "
                               f"{', '.join(RUNS)}; adversarial: {', '.join(ADVERSARIAL_RUNS)}; "
                               f"generalisation: {', '.join(GENERALISATION_RUNS)}; baselines: "
                               f"{', '.join(BASELINE_RUNS)}; adversarial_training: "
                               f"{', '.join(AT_RUNS)}); default all")
  _SET = flags.DEFINE_multi_string("set", [], "key=value applied to every run")


if __name__ == "__main__":
  _define_flags()
  app.run(lambda argv: sys.exit(main(argv)))
