"""The registry of README tables: NAME -> producer, loaded only when that table is produced.

A producer is `fn(options: Options) -> Produced`: it runs (or resumes, or skips finished) the
project's own code for one table and returns the Table, a function that draws its figure and
the facts for meta.json. Importing this module imports nothing heavy (readme_sync.py and the
command's argument checks use NAMES).

Every producer applies `Options.overrides` ("key=value", --set) to every run it makes: config
keys for the producers that train (main, new_clients and the comparisons), the producer's own
settings for the others (dp, the benchmarks, vitb16_memory: `settings` below checks them).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from typing import Any, Callable

from fedprompt_jax.reproduce.results_io import Table

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclasses.dataclass(frozen=True)
class Entry:
  description: str  # one line for --table=list
  module: str       # fedprompt_jax.reproduce.<module>
  function: str     # its producer


# NAME -> producer, in the README's order. A new table adds one Entry here (and a block in the
# README).
REGISTRY: dict[str, Entry] = {
    "regression": Entry("the committed regression bands (results/regression/expected.json, from "
                        "scripts/regression_expected.py)", "regression_table", "produce"),
    "parity": Entry("CLIP parity with transformers' PyTorch CLIP on the shipped fixtures (needs "
                    "torch)", "parity", "produce"),
    "zeroshot": Entry("zero-shot top-1 of a checkpoint (embedded tiny CLIP) per shapes domain "
                      "and on digits, per data seed", "zeroshot_table", "produce"),
    "headroom": Entry("room for prompts: zero-shot against 16-shot deep VPT, world v2's union "
                      "prompt and one prompt per domain (fedprompt_jax/headroom.py)",
                      "headroom_table", "produce"),
    "throughput": Entry("round throughput against the client loop, a centralised step, N and "
                        "peak FLOP/s (benchmarks/round_throughput.py)", "bench_tables",
                        "throughput"),
    "vs_pytorch": Entry("our jitted FedVPT and PromptFL rounds against the same rounds in "
                        "PyTorch (benchmarks/vs_pytorch.py; needs torch)", "bench_tables",
                        "vs_pytorch"),
    "main": Entry("the main command (configs/pep.py) per seed, final round, mean and std",
                  "runs", "main"),
    "baselines": Entry("PromptFL and FedVPT at their embedded defaults (launch/compare.py "
                       "--comparison=baselines)", "runs", "baselines"),
    "comparison": Entry("PEP-FedPT, FedVPT, PromptFL and local-only (launch/compare.py "
                        "--comparison=pep)", "runs", "comparison"),
    "new_clients": Entry("the main command with 5 clients that never train (fed.new_clients)",
                         "runs", "new_clients"),
    "pep_ablations": Entry("PEP-FedPT's mixing ablations (method.mixing: bayes, prior_only, "
                           "prototype_only, uniform)", "runs", "pep_ablations"),
    "adversarial_training": Entry("FedVPT trained clean against PGD-AT, attacked alike "
                                  "(launch/compare.py --comparison=adversarial_training)",
                                  "runs", "adversarial_training"),
    "adversarial": Entry("FedAPT against its ablations and the +AT baselines (launch/compare.py "
                         "--comparison=adversarial)", "runs", "adversarial"),
    "attacks": Entry("PGD and APGD against torch / IBM ART references, and PGD-k's cost "
                     "(needs torch)", "bench_tables", "attacks"),
    "generalisation_lr": Entry("the learning-rate sweep behind the generalisation table's "
                               "rates (FedMVP, PromptFL, FedVPT at 0.003, 0.03, 0.3)", "runs",
                               "generalisation_lr"),
    "generalisation": Entry("FedMVP base-to-novel against its ablations and baselines "
                            "(launch/compare.py --comparison=generalisation)", "runs",
                            "generalisation"),
    "transfer": Entry("the generalisation runs on digits and on the unseen shapes domain "
                      "(launch/transfer_eval.py, clean)", "transfer_table", "produce"),
    "vitb16_memory": Entry("a CLIP of ViT-B/16's size on this host: the memory plan against the "
                           "measured peak (needs torch)", "memory_table", "produce"),
    "dp": Entry("utility against privacy: client-level DP-FedAvg at epsilon 1, 3, 8, inf and "
                "without DP (scripts/dp_sweep.py's runs)", "dp_table", "produce"),
}
NAMES = tuple(REGISTRY)
# The tables of launch/compare.py's comparisons: one row per method (--methods picks a subset).
COMPARISON_TABLES = ("comparison", "baselines", "pep_ablations", "adversarial",
                     "adversarial_training", "generalisation_lr", "generalisation", "transfer")


class ProducerError(ValueError):
  """Bad input to a producer (an unknown --set key, a missing optional package); one line."""


@dataclasses.dataclass(frozen=True)
class Options:
  """What the command passes to a producer.

  Attributes:
    seeds: the seeds, as strings ("0", "1", ...).
    workdir: the root under which the producer's runs go (each producer its own folder).
    overrides: "key=value" applied to every run (--set), after the producer's defaults.
    command: the command line that regenerates the table (Table.command).
    methods: the comparison tables' rows to run, in order (None: all of them).
  """
  seeds: tuple[str, ...] = ("0", "1", "2")
  workdir: str = "workdirs/reproduce"
  overrides: tuple[str, ...] = ()
  command: str = ""
  methods: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class Produced:
  table: Table
  figure_fn: Callable[[str], None] | None = None  # draws figure.png at the path it is given
  meta: dict[str, Any] = dataclasses.field(default_factory=dict)


def check_name(name: str) -> None:
  if name not in REGISTRY:
    raise ProducerError(f"unknown table {name!r}; valid: {', '.join(NAMES)}")


def produce(name: str, options: Options) -> Produced:
  """Runs table `name`'s producer; the table's command is options.command."""
  check_name(name)
  entry = REGISTRY[name]
  module = importlib.import_module(f"fedprompt_jax.reproduce.{entry.module}")
  produced = getattr(module, entry.function)(options)
  if produced.table.name != name:
    raise RuntimeError(f"producer of {name} returned table {produced.table.name!r}")
  table = dataclasses.replace(produced.table, command=options.command)
  return dataclasses.replace(produced, table=table)


def settings(table: str, overrides, defaults: dict[str, Any]) -> dict[str, Any]:
  """{key: value} of `defaults` updated by "key=value" overrides, each parsed as its default's
  type (bool: true/false/1/0); ProducerError names an unknown key or a bad value."""
  out = dict(defaults)
  for item in overrides:
    key, eq, text = item.partition("=")
    key = key.strip()
    if not eq or key not in defaults:
      raise ProducerError(f"--set={item!r} for table {table}: valid keys are "
                          f"{', '.join(defaults)} (key=value)")
    kind = type(defaults[key])
    try:
      if kind is bool:
        if text.lower() not in ("true", "false", "1", "0"):
          raise ValueError(text)
        value = text.lower() in ("true", "1")
      elif defaults[key] is None:
        value = text
      else:
        value = kind(text)
    except ValueError:
      raise ProducerError(f"--set={item!r} for table {table}: {key} takes a "
                          f"{kind.__name__} (default {defaults[key]!r})") from None
    out[key] = value
  return out
