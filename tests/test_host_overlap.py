"""benchmarks/host_overlap.py cannot rot: its smoke run times the engine's loop both ways."""

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow  # 40 s on the loaded 2-core host
def test_quick_run_prints_both_settings_and_the_target(capsys, tmp_path):
  sys.path.insert(0, os.path.join(REPO, "benchmarks"))
  import host_overlap  # pylint: disable=import-outside-toplevel
  figures = host_overlap.main(["--quick", "--json", str(tmp_path / "f.json")])
  out = capsys.readouterr().out
  for line in ("input wait / round", "round time, prefetch off / on: ",
               "TARGET input wait / round with prefetch at K=8: "):
    assert line in out, out
  assert (tmp_path / "f.json").exists()
  for p in (0, 1):
    (run,) = figures["runs"][p]  # --quick: one timed repeat of 3 rounds
    assert 0 < run["wait_fraction"] < 1 and 0 <= run["wait_fraction_after_first"] < 1
    assert run["seconds_per_round"] > run["wait_seconds"] > 0
  assert figures["off_over_on"] > 0
