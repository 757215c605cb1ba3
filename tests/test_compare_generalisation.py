"""launch/compare.py --comparison=generalisation: FedMVP, its ablations and the baselines."""

import json
import os
import sys

import numpy as np
from flax import traverse_util

from clip_fixtures import fixture_dir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "launch"))
import compare  # noqa: E402  pylint: disable=wrong-import-position

GEN = compare.COMPARISONS["generalisation"]
TINY = (f"clip.checkpoint={fixture_dir('clip_tiny_b')}", "fed.rounds=1", "eval.every=1",
        "data.train_per_class_domain=8", "data.test_per_class_domain=1", "fed.num_clients=2",
        "fed.clients_per_round=2", "fed.classes_per_client=2", "fed.batch_size=8",
        "eval.batch_size=64", "eval.check_zero_shot=False")


def flat(name, seed=0, overrides=()):
  c = compare.run_config(GEN, name, seed, overrides)
  return traverse_util.flatten_dict(c.to_dict(), sep=".")


def test_each_run_differs_from_fedmvp_only_where_its_name_says():
  mvp = flat("fedmvp")
  assert mvp["method.name"] == "fedmvp" and mvp["data.base_novel"]
  assert (mvp["eval.personalized"], mvp["adv.eval"]) == (False, ())
  assert mvp["optim.lr"] == compare.GENERALISATION_LR["fedmvp"]
  want = {"fedmvp_no_consistency": {"method.consistency_weight": 0.0},
          "fedmvp_class_name": {"method.attribute_source": "class_name"},
          "fedmvp_step_once": {"method.step_once_per_round": True},
          "fedmvp_lora": {"method.lora_rank": 8},   # *with* the LoRA phase: off by default
          "zeroshot": {"method.name": "zeroshot"}}
  assert mvp["method.lora_rank"] == 0
  for name, changes in want.items():
    other = flat(name)
    diff = {k: other.get(k) for k in set(mvp) | set(other) if mvp.get(k) != other.get(k)}
    assert diff == changes, name
  # The baselines: the same federation, data, evaluation and optimizer but the learning
  # rate; only their method section (and lr) differ.
  for name in ("promptfl", "fedvpt"):
    other = flat(name)
    diff = {k for k in set(mvp) | set(other) if mvp.get(k) != other.get(k)}
    assert {k.split(".")[0] for k in diff} <= {"method", "optim"}, (name, diff)
    assert diff & {k for k in diff if k.startswith("optim.")} <= {"optim.lr"}
    assert other["optim.lr"] == compare.GENERALISATION_LR[name]
    assert other["method.name"] == name
  # --set applies to every run after the comparison's own overrides, shared keys included.
  assert flat("promptfl", 2, ["fed.rounds=3", "optim.lr=0.3"])["fed.rounds"] == 3
  assert flat("fedvpt", 2, ["optim.lr=0.3"])["optim.lr"] == 0.3
  assert flat("fedvpt", 2)["seed"] == 2


def final_record(path):
  with open(os.path.join(path, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()][-1]


def test_generalisation_table_equals_the_runs_final_records(tmp_path):
  workdir = str(tmp_path)
  methods = ["fedmvp", "zeroshot"]
  compare.run_comparison(GEN, workdir, ["0"], methods, TINY)
  with open(os.path.join(workdir, "comparison.md")) as f:
    rows = [line.strip().strip("|").split("|") for line in f if line.startswith("|")]
  header = [cell.strip() for cell in rows[0]]
  assert header == ["method", "global_acc", "novel_acc", "base_novel_hm"]
  body = {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[2:]}
  assert list(body) == methods
  records = {m: final_record(os.path.join(workdir, f"{m}_seed0")) for m in methods}
  for name in methods:
    record = records[name]
    assert record["round"] == (1 if name == "fedmvp" else 0)
    assert not any(k.startswith(("robust_acc", "pers_acc")) for k in record)
    for key, cell in zip(header[1:], body[name]):
      assert cell == f"{100 * record[key]:.1f} +- 0.0", (name, key, cell)
  # The zero-shot row is the zero-shot figure every run reports on the same test images.
  assert records["zeroshot"]["global_acc"] == records["fedmvp"]["zeroshot_acc"]
  assert records["zeroshot"]["novel_acc"] == records["fedmvp"]["zeroshot_novel_acc"]
  assert os.path.getsize(os.path.join(workdir, "comparison.png")) > 0
  partitions = [np.load(os.path.join(workdir, f"{m}_seed0", "partition.npz")) for m in methods]
  assert all(np.array_equal(partitions[0][k], partitions[1][k]) for k in partitions[0].files)
