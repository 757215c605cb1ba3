"""Producer of the transfer table: the generalisation runs on another data set and an unseen domain.

The runs are the generalisation table's (WORKDIR/generalisation/generalisation/<method>_seed<s>,
through launch/compare.py's `run_comparison`, so missing ones are trained and finished ones
only re-read). Each run's final global model is evaluated, clean, by launch/transfer_eval.py's
`evaluate_transfer`: on digits (another class set: FedMVP takes digits' attribute sentences,
PromptFL and FedVPT digits' class names) and on the shapes domains the run never trained on
(for world v2's runs, `tinted_pattern`), with all 48 classes.
"""

from __future__ import annotations

import os

from fedprompt_jax.reproduce import results_io, runs
from fedprompt_jax.reproduce.tables import Options, Produced

METHODS = ("zeroshot", "fedmvp", "fedmvp_class_name", "fedmvp_no_consistency", "promptfl",
           "fedvpt")
TARGETS = ("digits", "shapes")  # shapes: the run's own classes, its untrained domains


def produce(options: Options) -> Produced:
  compare = runs.compare_module()
  transfer_eval = runs.launch_module("transfer_eval")
  spec = compare.COMPARISONS["generalisation"]
  seeds, methods = list(options.seeds), runs.chosen_methods(options, spec, "transfer", METHODS)
  # The generalisation table's runs: the sibling folder of this table's workdir.
  workdir = os.path.join(os.path.dirname(os.path.normpath(options.workdir)), "generalisation",
                         "generalisation")
  compare.run_comparison(spec, workdir, seeds, methods, list(options.overrides))
  out, domains = {}, {}
  for m in methods:
    for seed in seeds:
      run_dir = os.path.join(workdir, f"{m}_seed{seed}")
      for target in TARGETS:
        result = transfer_eval.evaluate_transfer(run_dir, target, attacks=["none"])
        out.setdefault(m, {}).setdefault(target, []).append(result)
        domains[target] = result["domains"]
  columns, keys = [], []
  for target in TARGETS:
    columns.append(f"{target} ({', '.join(domains[target])})" if domains[target] else target)
    keys.append((target, "clean_acc"))
  rows = tuple((m,) + tuple(results_io.mean_std([r[k] for r in out[m][t]]) for t, k in keys)
               for m in methods)
  table = results_io.Table(
      name="transfer",
      title="Transfer of the generalisation runs: another data set and an unseen domain",
      columns=("method",) + tuple(columns),
      rows=rows,
      notes=(f"Clean top-1, mean +- std (ddof=0) over seeds {', '.join(seeds)}, in %; the final "
             "global model of each generalisation run (same rates), all of the target's "
             "classes (digits: 10; shapes: 48), `launch/transfer_eval.py --attack=none`"
             f"{runs.settings_note(options.overrides)}."))
  meta = dict(seeds=seeds, overrides=list(options.overrides), workdir=workdir,
              results={m: {t: rs for t, rs in per.items()} for m, per in out.items()})
  return Produced(table, None, meta)
