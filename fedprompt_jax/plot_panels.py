"""Which panels a run's curves.png has, and which lines each one draws, from the metric keys.

The keys are those train.py writes to metrics.jsonl (see evaluate.py):

  global_acc, global_acc/<domain>     the global model on the global test set (and per domain)
  zeroshot_acc, zeroshot_acc/<domain> frozen CLIP with the class-name head, same images
  pers_acc_mean, pers_acc_worst10     every trained client on its own test split: mean, worst 10%
  new_client_acc_mean, ..._worst10    clients that never trained (`fed.new_clients`)
  novel_acc, novel_acc/<domain>,      base-to-novel runs: global_acc is then the base classes'
  zeroshot_novel_acc, base_novel_hm   accuracy; the harmonic mean of base and novel
  robust_acc/clean, robust_acc/<attack>, robust_acc/worst
                                      the global model on the first adv.eval_examples test images
  train_loss                          the last round's mean training loss
  dp_epsilon                          the privacy budget spent so far (once DP exists)

Panels, in order; a panel is left out when none of its own (non-reference) lines has data:

  global      global accuracy, zero-shot as a black dashed reference (without novel classes)
  base_novel  base (global_acc), novel and their harmonic mean, each zero-shot in its colour,
              dashed; it replaces `global` when the run has novel classes
  personal    personalised mean (solid) and worst 10% (dotted), new clients in a second colour,
              zero-shot on the global test set as a black dashed reference
  domains     one colour per domain: global solid, zero-shot dashed, novel classes dash-dot
  robust      one colour per attack, the worst case black solid, clean accuracy black dashed
  other_acc   accuracy keys no rule above claims (so that nothing is silently dropped)
  loss        training loss
  privacy     dp_epsilon

Diagnostics (`robust_sanity/...`) are not drawn. Within a panel no two lines share both colour
and line style, whatever the number of domains or attacks (`plot_style.palette`).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterable, Sequence

from fedprompt_jax import metric_keys
from fedprompt_jax import plot_style as style
from fedprompt_jax.metric_keys import WORST_AT

BLACK = style.REFERENCE_COLOUR


@dataclasses.dataclass(frozen=True)
class Line:
  """One curve: the metric `key`, its legend `label`, colour and style.

  `reference` lines (zero-shot, clean) are drawn thinner and do not by themselves
  make a panel exist.
  """

  key: str
  label: str
  colour: str
  linestyle: str = style.SOLID
  reference: bool = False
  width: float = 1.6


@dataclasses.dataclass(frozen=True)
class Panel:
  """One axes of curves.png: `name` (stable, for tests), title, y label and lines.

  `percent`: the values are fractions drawn as percentages.
  """

  name: str
  title: str
  ylabel: str
  lines: tuple[Line, ...]
  percent: bool = True


def present_keys(records: Iterable[dict]) -> set[str]:
  """Keys with a finite number in at least one record ("round" aside)."""
  return {k for r in records for k, v in r.items()
          if k != "round" and metric_keys.is_finite_number(v)}


def _natural(text: str) -> list:
  """Sort key that puts "d2" before "d10"."""
  return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _suffixes(keys: set[str], prefix: str) -> list[str]:
  """<x> of the keys `prefix/<x>`, in natural order (records keep no other order)."""
  return sorted({k[len(prefix) + 1:] for k in keys if k.startswith(prefix + "/")}, key=_natural)


def _kept(lines: list[Line], keys: set[str]) -> tuple[Line, ...]:
  """The lines with data, or () when none of the non-reference ones has any."""
  lines = [line for line in lines if line.key in keys]
  return tuple(lines) if any(not line.reference for line in lines) else ()


def _global() -> list[Line]:
  c = style.palette(1)[0]
  return [Line("global_acc", "global model", c, width=2.0),
          Line("zeroshot_acc", "zero-shot", BLACK, style.DASHED, reference=True)]


def _base_novel() -> list[Line]:
  base, novel, hm = style.palette(3)
  return [Line("global_acc", "base classes", base, width=2.0),
          Line("zeroshot_acc", "base, zero-shot", base, style.DASHED, reference=True),
          Line("novel_acc", "novel classes", novel, width=2.0),
          Line("zeroshot_novel_acc", "novel, zero-shot", novel, style.DASHED, reference=True),
          Line("base_novel_hm", "harmonic mean", hm, width=2.0)]


def _personal() -> list[Line]:
  trained, new = style.palette(2)
  return [Line("pers_acc_mean", "clients, mean", trained, width=2.0),
          Line("pers_acc_worst10", "clients, worst 10%", trained, style.DOTTED, width=2.0),
          Line("new_client_acc_mean", "new clients, mean", new, width=2.0),
          Line("new_client_acc_worst10", "new clients, worst 10%", new, style.DOTTED, width=2.0),
          Line("zeroshot_acc", "zero-shot (global test set)", BLACK, style.DASHED,
               reference=True)]


def _domains(keys: set[str]) -> list[Line]:
  names = sorted(set(_suffixes(keys, "global_acc")) | set(_suffixes(keys, "zeroshot_acc"))
                 | set(_suffixes(keys, "novel_acc")), key=_natural)
  lines = []
  for name, colour in zip(names, style.palette(len(names))):
    lines += [Line(f"global_acc/{name}", name, colour),
              Line(f"zeroshot_acc/{name}", f"{name}, zero-shot", colour, style.DASHED,
                   reference=True),
              Line(f"novel_acc/{name}", f"{name}, novel classes", colour, style.DASH_DOT)]
  return lines


def _robust(keys: set[str]) -> list[Line]:
  suffixes = _suffixes(keys, "robust_acc")
  attacks = [a for a in suffixes if a not in ("clean", "worst") and not a.startswith(WORST_AT)]
  lines = [Line(f"robust_acc/{a}", a, colour) for a, colour in
           zip(attacks, style.palette(len(attacks)))]
  radii = [a for a in suffixes if a.startswith(WORST_AT)]
  dashes = (style.DOTTED, style.DASH_DOT)
  lines += [Line(f"robust_acc/{a}", f"worst case at {a[len(WORST_AT):]}", BLACK,
                 dashes[i % len(dashes)], width=1.6) for i, a in enumerate(radii)]
  return lines + [Line("robust_acc/worst", "worst case", BLACK, width=2.2),
                  Line("robust_acc/clean", "clean (same images)", BLACK, style.DASHED,
                       reference=True)]


def _other_acc(keys: set[str], claimed: set[str]) -> list[Line]:
  other = sorted(k for k in keys if metric_keys.is_acc_key(k) and k not in claimed
                 and not metric_keys.is_diagnostic(k))
  return [Line(k, k, c) for k, c in zip(other, style.palette(len(other)))]


def _loss(keys: set[str]) -> list[Line]:
  losses = sorted(k for k in keys if metric_keys.is_loss_key(k)
                  and not metric_keys.is_diagnostic(k))
  return [Line(k, k.replace("_", " "), c) for k, c in zip(losses, style.palette(len(losses)))]


def panels(records: Sequence[dict], keys: Iterable[str] | None = None) -> list[Panel]:
  """The panels of curves.png for `records`, in drawing order, empty ones left out.

  Args:
    records: metrics records with a "round" key, as from `metrics.read_metrics`.
    keys: if given, only these metric keys (and the losses) are drawn.
  """
  present = present_keys(records)
  if keys is not None:
    wanted = set(keys)
    present = {k for k in present if k in wanted or metric_keys.is_loss_key(k)}
  novel = "novel_acc" in present
  by_meaning = [
      ("base_novel", "Base and novel classes: global model vs zero-shot", _base_novel())
      if novel else
      ("global", "Global model vs zero-shot (all test images)", _global()),
      ("personal", "Personalised: each client on its own test split", _personal()),
      ("domains", "Per domain: global model (solid) vs zero-shot (dashed)"
       + (", novel classes (dash-dot)" if _suffixes(present, "novel_acc") else ""),
       _domains(present)),
      ("robust", "Robust accuracy of the global model per attack", _robust(present)),
  ]
  claimed = {line.key for _, _, lines in by_meaning for line in lines}
  out = [Panel(name, title, "accuracy (%)", _kept(lines, present))
         for name, title, lines in by_meaning]
  out += [
      Panel("other_acc", "Other accuracies", "accuracy (%)",
            _kept(_other_acc(present, claimed), present)),
      Panel("loss", "Training loss (mean over the round's clients)", "loss",
            _kept(_loss(present), present), percent=False),
      Panel("privacy", "Privacy budget spent", "epsilon",
            _kept([Line("dp_epsilon", "epsilon", style.palette(1)[0])], present),
            percent=False),
  ]
  return [p for p in out if p.lines]
