"""The class information gap on a small run: PromptFL+AT with local label spaces is less robust.

24 label-disjoint clients of 2 classes each on world v1's held-out falsecolour domain
(configs/fedapt.py with the promptfl preset and `data.domains=('falsecolour',)`), robust
accuracy over all 48 classes. With `fed.label_space=local`
each client's loss and PGD-AT attack see only its 2 classes; with "global", all 48. The same
partition, seeds, batches and evaluation examples; only the label space differs.
"""

import os
import sys

import pytest

from fedprompt_jax import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ("promptfl,seed=0,fed.rounds=3,eval.every=3,eval.personalized=False,"
         "data.train_per_class_domain=16,data.test_per_class_domain=3,fed.clients_per_round=8,"
         "fed.local_steps=8,fed.batch_size=16,adv.eval_examples=144,"
         "optim.lr=0.03,optim.schedule='constant'")
# Seed 0 as measured here (2-core CPU): robust (PGD-3, 1/255) 4.9% local vs 7.6% global, clean
# 9.0% vs 22.9% on the same 144 test images. Only seed 0 was checked; see the report. The run
# stays on falsecolour, where these margins were measured: on configs/fedapt.py's default since
# issue 14 (world v2's three tinted domains, 432 test images, 144 attacked) the same small run
# gave clean 52.1% local vs 54.9% global, a 2.8-point gap (the robust margin held). The README's
# FedAPT comparison measures the gap on world v2 at full size.
ROBUST_MARGIN = 0.02
CLEAN_MARGIN = 0.08


def run(tmp_path, space):
  sys.path.insert(0, REPO)
  from configs import fedapt  # pylint: disable=import-outside-toplevel
  c = fedapt.get_config(f"{SMALL},fed.label_space={space}")
  c.data.domains = ("falsecolour",)
  c.adv.eval = ("pgd:linf:eps=1/255:steps=3",)
  records = train.train_and_evaluate(c, str(tmp_path / space))
  return records[0], records[-1]


@pytest.mark.slow
def test_local_label_spaces_leave_the_global_model_less_robust(tmp_path):
  start, local = run(tmp_path, "local")
  _, glob = run(tmp_path, "global")
  key = "robust_acc/worst"
  assert local["round"] == glob["round"] == 3
  assert glob[key] > start[key]                       # global label spaces learn robustness ...
  assert glob[key] >= local[key] + ROBUST_MARGIN, (local[key], glob[key])  # ... local ones less
  clean = "robust_acc/clean"
  assert glob[clean] >= local[clean] + CLEAN_MARGIN, (local[clean], glob[clean])
