"""benchmarks/vs_pytorch.py cannot rot: its smoke run computes the same round on both sides."""

import os
import sys

import pytest

from clip_fixtures import HAS_TORCH

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow  # 31 s on the loaded 2-core host
@pytest.mark.skipif(not HAS_TORCH, reason="needs the torch extra")
def test_quick_run_prints_ratios_and_both_sides_compute_the_same_round(capsys):
  sys.path.insert(0, os.path.join(REPO, "benchmarks"))
  import vs_pytorch  # pylint: disable=import-outside-toplevel
  figures = vs_pytorch.main(["--quick"])
  out = capsys.readouterr().out
  for line in ("FedVPT: PyTorch / ours", "PromptFL: PyTorch / ours with the cache",
               "PromptFL ours: without / with the cache", "cache fill: 8 images"):
    assert line in out, out
  assert set(figures["ratios"]) == {"fedvpt", "promptfl", "promptfl+cache", "cache_speedup"}
  for times in figures["seconds"].values():
    assert len(times) == 1 and times[0] > 0
  # The warm-up rounds start from the same prompt on the same data: the new global prompts of
  # PyTorch and ours differ by float rounding only (measured 1.1e-6 for FedVPT, 4e-8 PromptFL).
  for name, diff in figures["first_round_max_abs_diff"].items():
    assert diff < 1e-5, (name, diff)
