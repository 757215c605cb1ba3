"""The files a run writes before its first round: config.json and the partition files.

`partition.npz` (the client index lists and their content hash), `partition.txt`
(the summary printed at the start) and `partition.png`.
"""

from __future__ import annotations

import os

import jax
import ml_collections

from fedprompt_jax import atomic, checkpoint
from fedprompt_jax import workdir as workdir_lib
from fedprompt_jax.data import partition as partition_lib
from fedprompt_jax.data import partition_report
from fedprompt_jax.data import source as source_lib


def _read_text(path: str) -> str | None:
  try:
    with open(path, encoding="utf-8") as f:
      return f.read()
  except (OSError, UnicodeDecodeError):
    return None


def _saved_partition_hash(path: str) -> str | None:
  try:
    return partition_lib.Partition.load(path).content_hash()
  except Exception:  # pylint: disable=broad-except  (missing or unreadable: written anew)
    return None


def partition_hash(workdir: str) -> str | None:
  """The content hash of a run's saved partition (workdir/partition.npz); None without one."""
  return _saved_partition_hash(os.path.join(workdir, "partition.npz"))


def write_run_files(c: ml_collections.ConfigDict, partition: partition_lib.Partition,
                    source: source_lib.DataSource, workdir: str) -> None:
  """config.json and the partition (npz with its hash, summary, PNG); chief process only.

  Every file goes through a temporary name (atomic.py). A file that already holds
  what would be written is left alone, so a resumed run changes none of their bytes.
  A saved partition.npz other than this run's is refused when checkpoints exist.
  """
  summary = partition_report.summary(partition, source)
  print(summary, flush=True)
  if jax.process_index() != 0:
    return
  npz = os.path.join(workdir, "partition.npz")
  saved, new = _saved_partition_hash(npz), partition.content_hash()
  if saved not in (None, new) and checkpoint.step_rounds(workdir):
    raise workdir_lib.WorkdirError(
        f"{npz} holds another partition (hash {saved[:12]}) than this config gives "
        f"({new[:12]}): the code or the data changed since the checkpoints were written; "
        "give another --workdir")
  os.makedirs(workdir, exist_ok=True)
  text = c.to_json_best_effort(indent=2, sort_keys=True)
  path = os.path.join(workdir, workdir_lib.CONFIG_FILE)
  if _read_text(path) != text:
    atomic.write_text(path, text)
  if saved != new:
    partition.save(npz)
  path = os.path.join(workdir, "partition.txt")
  if _read_text(path) != summary + "\n":
    atomic.write_text(path, summary + "\n")
  path = os.path.join(workdir, "partition.png")
  if saved != new or not os.path.exists(path):
    partition_report.save_png(partition, source, path)
