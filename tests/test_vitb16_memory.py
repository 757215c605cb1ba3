"""A CLIP of ViT-B/16's size on CPU: one PEP round with robust evaluation fits its memory plan.

Makes the random ViT-B/16-shaped checkpoint (scripts/make_vitb16_like.py, 600 MB)
in a temporary directory, runs launch/run.py on it as a child of a small wrapper
process that reports the child's peak resident memory (getrusage of its only
child), and checks the peak against a cap and against the plan the run printed.
The setting is the cheapest that still runs every phase on the real-size towers:
1 round of 2 clients x 1 step x 4 images, 48 test images, 8 attacked examples
(PGD-2), no personalised evaluation and no large-radius sanity attack.
"""

import os

import pytest

from fedprompt_jax.reproduce import memory_table

CAP_GB = 6.0          # the peak resident memory the run must stay under
RATIO = 1.5           # measured peak / planned total, and planned total / measured peak
TIME_LIMIT_S = 1200   # the run alone, on a loaded 2-core CPU


@pytest.mark.slow
def test_vitb16_sized_pep_round_with_robust_evaluation_fits_its_plan(tmp_path):
  pytest.importorskip("torch")
  env = dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1",
             TOKENIZERS_PARALLELISM="false", XLA_FLAGS="")
  # The `vitb16_memory` table's own measurement (launch/reproduce.py --table=vitb16_memory).
  m = memory_table.measure(str(tmp_path), memory_table.SETTINGS["test"], env, TIME_LIMIT_S)
  measured, planned = m["peak"], m["planned_peak"]
  report = (f"measured peak {measured:.2f} GB; planned {planned:.2f} GB (the process held "
            f"{m['after_planning']:.2f} GB after planning); {m['seconds']:.0f} s")
  print(report)
  assert measured < CAP_GB, report
  assert planned / RATIO <= measured <= planned * RATIO, report
  # The plan's items add up to what it calls its peak: the resident trees and the largest phase.
  names = [name for name, _, _ in m["items"]]
  assert "frozen CLIP weights" in names and any("robust evaluation" in n for n in names), names
  assert "robust evaluation (round 1)" in m["phases"] and "round (round 1)" in m["phases"], m
  assert "Final results (round 1" in m["stdout"]
