"""What a run may do with its workdir, checked before anything is written to it.

`check_writable` refuses a workdir that is a regular file or cannot be written.
`check_same_config` refuses to resume a workdir whose `config.json` records
another config and that holds results (metrics.jsonl or checkpoints): rerunning
with another seed, alpha or method would otherwise mix metrics rows of two
configs in one file (or overwrite the partition under them). Only the keys of
`RESUMABLE_KEYS` may change on resume; none of them changes what is trained. A
workdir with a config.json but no results (a run that stopped before its first
evaluation, e.g. at the zero-shot check) may be rerun with another config. A key missing from an old `config.json` (written before the key
existed) counts as unchanged when the new config holds its default value.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import ml_collections

CONFIG_FILE = "config.json"
# key -> what it controls. Each may differ between the run that wrote config.json and its resume.
RESUMABLE_KEYS = {
    "fed.rounds": "the number of rounds: may grow (not shrink), and only with "
                  "optim.schedule='constant' (the cosine schedule is laid over fed.rounds)",
    "eval.every": "the evaluation and checkpoint cadence",
    "eval.batch_size": "the evaluation batch (memory)",
    "adv.eval_batch_size": "the attack batch of robust evaluation (memory)",
    "memory_budget_gb": "the memory the plan may use (checked before work)",
    "eval.check_zero_shot": "the zero-shot sanity check before training",
    "adv.eval_rounds": "at which evaluations the robust evaluation runs",
    "fed.chunk": "clients vmapped at once (speed and memory)",
    "data.storage": "where a tfds set's images are read from (memory or the ArrayRecord "
                    "files: the same rows)",
    "fed.prefetch": "rounds of inputs built ahead while a round runs (speed and memory)",
    "clip.remat": "rematerialisation in the backward pass (memory)",
    "dp.target_epsilon": "the privacy budget: after which round the run stops (what each round "
                         "trains, and the epsilon it spends, are unchanged)",
}
_MAX_SHOWN = 8


class WorkdirError(ValueError):
  """A workdir that cannot be used for this run; the message is one line."""


def check_writable(workdir: str) -> None:
  """Raises WorkdirError unless `workdir` is (or can be created as) a writable directory."""
  path = os.path.abspath(workdir)
  if os.path.exists(path) and not os.path.isdir(path):
    raise WorkdirError(f"workdir {workdir!r} is a file, not a directory; give a directory")
  existing = path
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise WorkdirError(f"workdir {workdir!r} cannot be created: {existing!r} is a file")
  if not os.access(existing, os.W_OK | os.X_OK):
    what = "is not writable" if existing == path else f"cannot be created in {existing!r}"
    raise WorkdirError(f"workdir {workdir!r} {what} (no write permission)")


def config_values(c: ml_collections.ConfigDict) -> dict[str, Any]:
  """{dotted key: JSON value} of a config, as config.json holds it."""
  return _flatten(json.loads(c.to_json_best_effort(sort_keys=True)))


def config_hash(c: ml_collections.ConfigDict) -> str:
  """SHA-256 of the canonical JSON of a config without `seed` and without RESUMABLE_KEYS (keys
  that do not change results): the same experiment on every seed has the same hash."""
  values = {k: v for k, v in config_values(c).items()
            if k != "seed" and k not in RESUMABLE_KEYS}
  text = json.dumps(values, sort_keys=True, separators=(",", ":"))
  return hashlib.sha256(text.encode()).hexdigest()


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


_ABSENT = object()


def _show(value: Any) -> str:
  text = "absent" if value is _ABSENT else json.dumps(value)
  return text if len(text) <= 60 else text[:57] + "..."


def changed_keys(old: dict[str, Any], new: dict[str, Any],
                 defaults: dict[str, Any]) -> list[str]:
  """'key old -> new' for each key that differs and may not change on resume.

  Keys present in both configs come first (a changed method lists method.name
  before the keys only the new method has), each group sorted.

  `old` and `new` are flat ({dotted key: JSON value}). A key absent from `old`
  is unchanged if `new` holds its value in `defaults`; a key absent from `new`
  (no longer read by this version) is ignored.
  """
  out = []
  for key in sorted(new, key=lambda k: (k not in old, k)):  # keys present in both first
    before, after = old.get(key, _ABSENT), new[key]
    if before == after or (before is _ABSENT and key in defaults and defaults[key] == after):
      continue
    if key == "fed.rounds" and before is not _ABSENT:
      if after > before and new.get("optim.schedule") == "constant":
        continue
      why = "may only grow" if after <= before else "fixed with optim.schedule='cosine'"
      out.append(f"fed.rounds {_show(before)} -> {_show(after)} ({why})")
      continue
    if key in RESUMABLE_KEYS:
      continue
    out.append(f"{key} {_show(before)} -> {_show(after)}")
  return out


def _has_outputs(workdir: str) -> bool:
  ckpt = os.path.join(workdir, "ckpt")
  return (os.path.exists(os.path.join(workdir, "metrics.jsonl"))
          or (os.path.isdir(ckpt) and bool(os.listdir(ckpt))))


def read_config_json(workdir: str) -> dict[str, Any] | None:
  """The flat config a workdir's config.json records; None without one (WorkdirError if bad)."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path, encoding="utf-8") as f:
      saved = json.load(f)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise WorkdirError(f"{path} cannot be read ({type(e).__name__}: "
                       f"{' '.join(str(e).split())}); it records the config of the run in "
                       "this workdir: restore it, or give another --workdir") from None
  if not isinstance(saved, dict):
    raise WorkdirError(f"{path} is not a JSON object; restore it, or give another --workdir")
  return _flatten(saved)


def _known_defaults(defaults: ml_collections.ConfigDict | None) -> dict[str, Any]:
  """{dotted key: value} of `config.default_config()` updated by the config file's `defaults`:
  what a key absent from an older config.json is taken to have been."""
  from fedprompt_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  known = config_values(config_lib.default_config())
  if defaults is not None:
    known.update(config_values(defaults))
  return known


def check_same_config(c: ml_collections.ConfigDict, workdir: str,
                      defaults: ml_collections.ConfigDict | None = None) -> None:
  """Raises WorkdirError if `workdir` holds results of another config (or of an unknown one).

  Args:
    c: the config of this run.
    workdir: the run's directory (may not exist yet).
    defaults: the config file's defaults (`get_config()`), for keys that an older
      config.json lacks; `config.default_config()` is always consulted too.
  """
  has_outputs = _has_outputs(workdir)
  old = read_config_json(workdir) if has_outputs else None
  if old is None:
    if has_outputs:
      raise WorkdirError(
          f"workdir {workdir!r} holds run outputs (metrics.jsonl or ckpt/) but no {CONFIG_FILE}: "
          "the config that made them is unknown; restore it, or give another --workdir")
    return
  changed = changed_keys(old, config_values(c), _known_defaults(defaults))
  if changed:
    shown = ", ".join(changed[:_MAX_SHOWN])
    more = f" and {len(changed) - _MAX_SHOWN} more" if len(changed) > _MAX_SHOWN else ""
    raise WorkdirError(
        f"workdir {workdir!r} holds a run with another config ({CONFIG_FILE}): {shown}{more}; "
        "rerun with its values or give another --workdir (changeable on resume: "
        f"{', '.join(RESUMABLE_KEYS)})")


SUMMARY_FILE = "summary.txt"


def finished_records(c: ml_collections.ConfigDict, workdir: str,
                     defaults: ml_collections.ConfigDict | None = None) -> list[dict] | None:
  """The records of a run that finished in `workdir` with exactly config `c`; else None.

  Finished: the run wrote summary.txt (only a run that completes does, after its last record)
  and it is the summary of metrics.jsonl as it is now (a later resume that stopped early
  appended records after it). Exactly `c`: every key equal to config.json's, resumable keys
  included (a larger fed.rounds or privacy budget has rounds left to run). A key that an
  older config.json lacks counts as equal when `c` holds its default (as `check_same_config`).
  Then `train.train_and_evaluate` has nothing to do, and skips building the run.
  """
  from fedprompt_jax import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  summary_path = os.path.join(workdir, SUMMARY_FILE)
  if not (os.path.exists(summary_path) and os.path.exists(os.path.join(workdir, CONFIG_FILE))
          and os.path.exists(os.path.join(workdir, metrics_lib.METRICS_FILE))):
    return None
  old = read_config_json(workdir)
  known = _known_defaults(defaults)
  for key, value in config_values(c).items():
    before = old.get(key, _ABSENT)
    if before != value and not (before is _ABSENT and known.get(key, _ABSENT) == value):
      return None
  records = metrics_lib.read_metrics(workdir)
  with open(summary_path, encoding="utf-8") as f:
    summary = f.read()
  if not records or summary != metrics_lib.summary_table(records) + "\n":
    return None
  return records
