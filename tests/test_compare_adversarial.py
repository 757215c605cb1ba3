"""launch/compare.py --comparison=adversarial: its table holds the runs' own final figures."""

import json
import os
import sys

import numpy as np

from clip_fixtures import fixture_dir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "launch"))
import compare  # noqa: E402  pylint: disable=wrong-import-position

TINY = (f"clip.checkpoint={fixture_dir('clip_tiny_b')}", "fed.rounds=1", "eval.every=1",
        "eval.personalized=False", "data.train_per_class_domain=1",
        "data.test_per_class_domain=1", "fed.num_clients=8", "fed.clients_per_round=2",
        "fed.local_steps=1", "fed.batch_size=4", "adv.eval_examples=4", "eval.batch_size=16",
        "eval.check_zero_shot=False", "adv.train_attack=pgd:linf:eps=1/255:steps=1:step_size=1/255")


def final_record(path):
  with open(os.path.join(path, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()][-1]


def test_adversarial_table_equals_the_runs_final_records(tmp_path):
  workdir = str(tmp_path)
  methods = ["fedapt", "zeroshot"]
  compare.run_comparison(compare.COMPARISONS["adversarial"], workdir, ["0"], methods, TINY)
  with open(os.path.join(workdir, "comparison.md")) as f:
    rows = [line.strip().strip("|").split("|") for line in f if line.startswith("|")]
  header = [cell.strip() for cell in rows[0]]
  attacks = ["apgd-ce:linf:eps=1/255:steps=20", "apgd-ce:linf:eps=2/255:steps=20",
             "pgd:linf:eps=1/255:steps=10", "pgd:linf:eps=2/255:steps=10"]  # records' order
  assert header == (["method", "global_acc", "robust_acc/clean"]
                    + [f"robust_acc/{a}" for a in attacks]
                    + ["robust_acc/worst@linf:eps=1/255", "robust_acc/worst@linf:eps=2/255",
                       "robust_acc/worst"])
  body = {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[2:]}
  assert list(body) == methods
  for name in methods:
    record = final_record(os.path.join(workdir, f"{name}_seed0"))
    assert record["round"] == (1 if name == "fedapt" else 0)
    for key, cell in zip(header[1:], body[name]):
      values = 100 * np.array([record[key]])
      mean, std = values.sum() / len(values), np.sqrt(((values - values.mean()) ** 2).mean())
      assert cell == f"{mean:.1f} +- {std:.1f}", (name, key, cell)
  assert os.path.getsize(os.path.join(workdir, "comparison.png")) > 0
  # The shared federation: both runs trained on the same partition of the same data.
  partitions = [np.load(os.path.join(workdir, f"{m}_seed0", "partition.npz")) for m in methods]
  assert all(np.array_equal(partitions[0][k], partitions[1][k]) for k in partitions[0].files)
