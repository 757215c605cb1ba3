"""Producers of the tables that train: the main command and launch/compare.py's comparisons.

Every run is an ordinary `train.train_and_evaluate(config, workdir)`, so a second call resumes
unfinished runs and skips finished ones (it only re-reads their records). The comparisons go
through launch/compare.py's `run_comparison` (the same configs, shared keys and table values as
`python launch/compare.py --comparison=...`). Figures are the runs' own PNGs, copied.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib
import os
import shutil
import sys

from fedprompt_jax.reproduce import results_io
from fedprompt_jax.reproduce.tables import REPO, Options, Produced, ProducerError

MAIN_CONFIG = "configs/pep.py"
# The README's comparison table and the PEP ablations: the PEP default's federation, but 15
# rounds and no robust evaluation (README "Method comparison"). --set goes after these.
COMPARE_DEFAULTS = ("fed.rounds=15", "eval.every=15", "adv.eval=()")
PEP_MIXINGS = ("bayes", "prior_only", "prototype_only", "uniform")
LABELS = {
    "zeroshot_acc": "zero-shot", "global_acc": "global", "pers_acc_mean": "personalised mean",
    "pers_acc_worst10": "worst-10%", "new_client_acc_mean": "new clients, mean",
    "new_client_acc_worst10": "new clients, worst-10%", "novel_acc": "novel",
    "base_novel_hm": "base-novel HM",
    "robust_acc/clean": "clean (attacked images)", "robust_acc/worst": "worst case",
    "global_acc/tinted_photo": "global, tinted_photo", "global_acc/tinted_sketch":
    "global, tinted_sketch", "global_acc/tinted_noisy": "global, tinted_noisy",
}
MAIN_KEYS = ("zeroshot_acc", "global_acc", "pers_acc_mean", "pers_acc_worst10")


def label(key: str) -> str:
  """The column header of a metric key."""
  if key in LABELS:
    return LABELS[key]
  if key.startswith("robust_acc/worst@"):
    return "worst case " + key[len("robust_acc/worst@"):]
  return key[len("robust_acc/"):] if key.startswith("robust_acc/") else key


def launch_module(name: str):
  """launch/<name>.py, imported as a module (its flags are defined only when it runs)."""
  launch = os.path.join(REPO, "launch")
  if launch not in sys.path:
    sys.path.insert(0, launch)
  return importlib.import_module(name)


def compare_module():
  return launch_module("compare")


def chosen_methods(options: Options, spec, table: str, default=None) -> list:
  """options.methods (else `default`, else every run of `spec`); ProducerError names an
  unknown one before anything runs."""
  methods = list(options.methods or default or spec.runs)
  unknown = [m for m in methods if m not in spec.runs]
  if unknown:
    raise ProducerError(f"--methods has {', '.join(unknown)}, not a run of table {table}; "
                        f"valid: {', '.join(spec.runs)}")
  return methods


def _copy(src: str):
  """A figure_fn that copies `src` (None when the run drew no such file)."""
  if not os.path.exists(src):
    return None
  return lambda path: shutil.copyfile(src, path)


def settings_note(overrides) -> str:
  """" with `k=v`, ..." for the overrides in effect (a key given twice: its last value)."""
  last = {o.partition("=")[0].strip(): o for o in overrides}
  return (" with " + ", ".join(f"`{o}`" for o in last.values())) if last else ""


def main(options: Options) -> Produced:
  """The main command per seed: seed rows, then mean and std over seeds; final round, in %."""
  return _per_seed(options, "main", "The main command, final round, in %", (), MAIN_KEYS)


# The new-client table: the main command with NEW_CLIENTS clients that never train (their data
# is held out of the federation; each is evaluated with the priors of its own labels).
NEW_CLIENTS = 5
NEW_CLIENT_KEYS = MAIN_KEYS + ("new_client_acc_mean", "new_client_acc_worst10")


def new_clients(options: Options) -> Produced:
  """The main command with `fed.new_clients`: trained and never-trained clients side by side."""
  return _per_seed(options, "new_clients",
                   f"The main command with {NEW_CLIENTS} clients that never train, final round, "
                   "in %", (f"fed.new_clients={NEW_CLIENTS}",), NEW_CLIENT_KEYS)


def _per_seed(options: Options, name: str, title: str, defaults, metric_keys) -> Produced:
  """configs/pep.py with `defaults` and --set, one run per seed: seed rows, then mean and std
  over seeds (ddof=0); final round, in %."""
  from fedprompt_jax import cli, run_files, train  # pylint: disable=import-outside-toplevel
  from fedprompt_jax import workdir as workdir_lib  # pylint: disable=import-outside-toplevel
  compare = compare_module()
  config_defaults = cli.config_defaults(os.path.join(REPO, MAIN_CONFIG))
  overrides = list(defaults) + list(options.overrides)
  finals, partitions, config_hashes, rounds = {}, {}, set(), set()
  for seed in options.seeds:
    c = compare.load_config(MAIN_CONFIG, overrides + [f"seed={int(seed)}"])
    run_dir = os.path.join(options.workdir, f"main_seed{seed}")
    records = train.train_and_evaluate(c, run_dir, config_defaults)
    finals[seed] = records[-1]
    rounds.add(records[-1]["round"])
    partitions[seed] = run_files.partition_hash(run_dir)
    config_hashes.add(workdir_lib.config_hash(c))
  keys = [k for k in metric_keys if any(k in r for r in finals.values())]
  robust = [k for k in compare.robust_keys({"main": list(finals.values())})
            if k != "robust_acc/clean"]
  attacks = [k for k in robust if not k.startswith("robust_acc/worst")]
  keys += attacks if len(attacks) == 1 else robust  # one attack is its own worst case
  rows = [(f"{seed}",) + tuple(finals[seed].get(k) for k in keys) for seed in options.seeds]
  stats = [results_io.mean_and_std([finals[s].get(k) for s in options.seeds]) for k in keys]
  rows += [("mean",) + tuple(st and st[0] for st in stats),
           ("std",) + tuple(st and st[1] for st in stats)]
  table = results_io.Table(
      name=name,
      title=title,
      columns=("seed",) + tuple(label(k) for k in keys),
      rows=tuple(rows),
      formats=("g",) + ("pct",) * len(keys),
      notes=(f"`python launch/run.py --config={MAIN_CONFIG} --config.seed=S`"
             f"{settings_note(overrides)}, each seed its own run; final round "
             f"{', '.join(map(str, sorted(rounds)))}. std over seeds with ddof=0 (as "
             "launch/compare.py)."))
  meta = dict(seeds=list(options.seeds), overrides=overrides,
              config=MAIN_CONFIG, config_hash=sorted(config_hashes),
              partition_hash=partitions, final_records=finals,
              workdirs={s: os.path.join(options.workdir, f"main_seed{s}") for s in options.seeds})
  first = os.path.join(options.workdir, f"main_seed{options.seeds[0]}", "curves.png")
  return Produced(table, _copy(first), meta)


def _final_rounds(results: dict) -> str:
  """"Final round 20", naming the methods that ended elsewhere ("zeroshot: round 0")."""
  by_method = {m: tuple(sorted({r["round"] for r in runs})) for m, runs in results.items()}
  counts = collections.Counter(by_method.values())
  common = max(counts, key=counts.get)
  others = {m: r for m, r in by_method.items() if r != common}
  text = f"Final round {', '.join(map(str, common))}"
  if others:
    text += " (" + "; ".join(f"{m}: round {', '.join(map(str, r))}" for m, r in others.items())
    text += (", it trains nothing)" if set(others) == {"zeroshot"} else ")")
  return text


def _comparison(name: str, title: str, spec, options: Options, defaults=(),
                note: str = "") -> Produced:
  """Runs `spec` (a compare.Comparison) through run_comparison; mean +- std per method."""
  from fedprompt_jax import run_files  # pylint: disable=import-outside-toplevel
  from fedprompt_jax import workdir as workdir_lib  # pylint: disable=import-outside-toplevel
  compare = compare_module()
  overrides = list(defaults) + list(options.overrides)
  workdir = os.path.join(options.workdir, name)
  seeds, methods = list(options.seeds), chosen_methods(options, spec, name)
  results, _ = compare.run_comparison(spec, workdir, seeds, methods, overrides)
  metrics = compare.reported_metrics(spec, results)
  rows = tuple((method,) + tuple(results_io.mean_std([r[k] for r in runs if k in r])
                                 for k in metrics)
               for method, runs in results.items())
  partitions = {}
  for seed in seeds:
    found = sorted({run_files.partition_hash(os.path.join(workdir, f"{m}_seed{seed}"))
                    for m in methods} - {None})
    partitions[seed] = found[0] if len(found) == 1 else found
  table = results_io.Table(
      name=name, title=title,
      columns=("method",) + tuple(label(k) for k in metrics),
      rows=rows,
      notes=(f"{_final_rounds(results)}, mean +- std (ddof=0) over seeds "
             f"{', '.join(seeds)}, in %; launch/compare.py's runs{settings_note(overrides)}. "
             + note).strip())
  meta = dict(
      seeds=seeds, overrides=overrides, metrics=list(metrics), workdir=workdir,
      config_hash={m: workdir_lib.config_hash(compare.run_config(spec, m, seeds[0], overrides))
                   for m in methods},
      partition_hash=partitions, final_records=results)
  return Produced(table, _copy(os.path.join(workdir, "comparison.png")), meta)


def comparison(options: Options) -> Produced:
  compare = compare_module()
  return _comparison("comparison", "Method comparison", compare.COMPARISONS["pep"], options,
                     COMPARE_DEFAULTS)


def adversarial(options: Options) -> Produced:
  compare = compare_module()
  return _comparison("adversarial", "FedAPT against its baselines and ablations",
                     compare.COMPARISONS["adversarial"], options)


def baselines(options: Options) -> Produced:
  compare = compare_module()
  return _comparison("baselines", "Global baselines at their embedded defaults",
                     compare.COMPARISONS["baselines"], options,
                     note="configs/promptfl.py and configs/fedvpt.py as shipped (world v2's "
                     "three tinted domains), without their robust evaluation.")


def adversarial_training(options: Options) -> Produced:
  compare = compare_module()
  return _comparison("adversarial_training", "Adversarial training: FedVPT, clean against PGD-AT",
                     compare.COMPARISONS["adversarial_training"], options,
                     note="Both runs attacked with PGD-10 and APGD-CE-20 at 1/255 and 2/255 on "
                     "the same stratified subset of 576 test images (4 per class and domain); "
                     "the worst cases are per example.")


def generalisation(options: Options) -> Produced:
  compare = compare_module()
  return _comparison("generalisation", "Generalisation: FedMVP base-to-novel",
                     compare.COMPARISONS["generalisation"], options,
                     note="global = base classes, novel = classes never trained on.")


def pep_ablations(options: Options) -> Produced:
  """configs/pep.py with each method.mixing, in the comparison's federation."""
  compare = compare_module()
  base = compare.COMPARISONS["pep"]
  runs = {f"pep_{m}": (MAIN_CONFIG, (f"method.mixing={m}",)) for m in PEP_MIXINGS}
  spec = dataclasses.replace(base, runs=runs, metrics=("pers_acc_mean", "pers_acc_worst10",
                                                       "global_acc"), png_keys=None)
  return _comparison("pep_ablations", "PEP-FedPT mixing ablations", spec, options,
                     COMPARE_DEFAULTS,
                     note="pep_bayes is PEP-FedPT's default mixing; prior_only and "
                     "prototype_only keep one factor of it, uniform neither.")


SWEEP_LRS = (0.003, 0.03, 0.3)
SWEEP_METHODS = ("fedmvp", "promptfl", "fedvpt")


def generalisation_lr(options: Options) -> Produced:
  """The learning-rate sweep that picks each method's rate for the generalisation table.

  FedMVP, PromptFL and FedVPT in the generalisation comparison's federation at each of
  SWEEP_LRS (`--set=optim.lr=X` for every method alike); a cell is base-novel HM (base /
  novel), mean over the seeds given (the README's table: seed 0 only).
  """
  from fedprompt_jax import workdir as workdir_lib  # pylint: disable=import-outside-toplevel
  compare = compare_module()
  spec = compare.COMPARISONS["generalisation"]
  seeds = list(options.seeds)
  methods = chosen_methods(options, spec, "generalisation_lr", SWEEP_METHODS)
  finals, config_hashes = {}, {}
  for lr in SWEEP_LRS:
    overrides = list(options.overrides) + [f"optim.lr={lr}"]
    results, _ = compare.run_comparison(spec, os.path.join(options.workdir, f"lr{lr}"), seeds,
                                        methods, overrides)
    finals[str(lr)] = results
    config_hashes[str(lr)] = {m: workdir_lib.config_hash(
        compare.run_config(spec, m, seeds[0], overrides)) for m in methods}

  def cell(runs):
    hm, base, novel = (results_io.mean_and_std([r.get(k) for r in runs])
                       for k in ("base_novel_hm", "global_acc", "novel_acc"))
    return (f"{results_io.format_cell(hm[0], 'pct')} ({results_io.format_cell(base[0], 'pct')}"
            f" / {results_io.format_cell(novel[0], 'pct')})")

  rows = tuple((m,) + tuple(cell(finals[str(lr)][m]) for lr in SWEEP_LRS) for m in methods)
  table = results_io.Table(
      name="generalisation_lr",
      title="Generalisation: the learning-rate sweep (base-novel HM, base / novel)",
      columns=("method",) + tuple(f"lr {lr:g}" for lr in SWEEP_LRS),
      rows=rows,
      notes=(f"Final round, {'mean over seeds' if len(seeds) > 1 else 'seed'} "
             f"{', '.join(seeds)}, in %; "
             "launch/compare.py --comparison=generalisation --set=optim.lr=X"
             f"{settings_note(options.overrides)}. Each method's best HM here is its rate in "
             "the generalisation table (launch/compare.py GENERALISATION_LR); the FedMVP "
             "ablations take FedMVP's."))
  meta = dict(seeds=seeds, overrides=list(options.overrides), learning_rates=list(SWEEP_LRS),
              config_hash=config_hashes, final_records=finals)
  return Produced(table, None, meta)
