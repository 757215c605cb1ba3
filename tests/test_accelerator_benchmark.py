"""benchmarks/accelerator.py cannot rot: its reduced CPU run gives every figure; OOM is a row."""

import csv
import json
import math
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

import accelerator  # noqa: E402  pylint: disable=wrong-import-position
import accelerator_report  # noqa: E402  pylint: disable=wrong-import-position

SMOKE = ["--model=tiny", "--reduced", "--clients=2", "--chunks=1", "--dtypes=float32",
         "--remat=off", "--loop=all"]
FIGURES = ("round_s", "rounds_s", "loop_s", "loop_ratio", "model_tflop", "tflops", "of_peak",
           "of_matmul", "mem_gb", "compile_s")


@pytest.mark.slow  # 43-76 s on the loaded 2-core host (load average 8-13); about 25 s of CPU time
def test_reduced_run_gives_a_row_of_finite_positive_figures_per_method(tmp_path, capsys):
  out = tmp_path / "out"
  results = accelerator.run(SMOKE + ["--methods=fedvpt,pep", f"--out={out}"])
  printed = capsys.readouterr().out
  rows = results["rows"]
  assert [(r["method"], r["k"], r["chunk"], r["dtype"], r["remat"]) for r in rows] == [
      ("fedvpt", 2, 1, "float32", False), ("pep", 2, 1, "float32", False)]
  for row in rows:
    assert row["status"] == "ok" and "stage" not in row, row
    for name in FIGURES:
      assert math.isfinite(row[name]) and row[name] > 0, (row["method"], name, row[name])
    assert row["rounds_s"] == 1 / row["round_s"]
    assert row.get("peak_gb") is None  # CPU: no memory_stats; the plan is mem_gb
  # The model FLOPs are K x S x one client-step's count; PEP's step (a second, shared-prompt
  # forward for its mixing feature) costs more than FedVPT's.
  flops = results["step_flops"]
  assert flops["pep"] > flops["fedvpt"] > 0
  for row in rows:
    assert math.isclose(row["model_tflop"], 2 * 1 * flops[row["method"]] / 1e12)
  assert results["errors"] == 0 and "measured float32 1024^2 matmul" in results["peak_source"]
  # The table on stdout, and the files.
  assert "| method | K | chunk | dtype | remat | status | rounds/s |" in printed
  assert "| fedvpt | 2 | 1 | float32 | off | ok |" in printed
  assert "| pep | 2 | 1 | float32 | off | ok |" in printed
  assert "round / client loop, best" in printed
  with open(out / "results.csv") as f:
    table = list(csv.DictReader(f))
  assert [r["method"] for r in table] == ["fedvpt", "pep"]
  assert float(table[1]["tflops"]) == rows[1]["tflops"]
  assert json.loads((out / "results.json").read_text())["rows"][0]["status"] == "ok"
  assert (out / "table.md").read_text().count("| ok |") == 2


def test_a_configuration_over_the_memory_limit_is_an_oom_row_and_the_sweep_goes_on(capsys):
  results = accelerator.run(["--model=tiny", "--reduced", "--methods=fedvpt", "--clients=2,4",
                             "--chunks=vmap", "--dtypes=float32", "--remat=off",
                             "--memory_limit_gb=1e-9"])
  capsys.readouterr()
  first, second = results["rows"]
  # K=2: compiled, its memory analysis is over the limit, so it is not run.
  assert first["status"].startswith("OOM (needs "), first
  assert first["compile_s"] > 0 and "round_s" not in first
  # K=4 (full vmap: 4 clients at once) is not even compiled: estimated from the 2-client chunk.
  assert second["status"].startswith("OOM (est. ") and "from chunk 2" in second["status"]
  assert "compile_s" not in second
  assert results["errors"] == 0
  assert "(no configuration ran)" in results["targets"][0]


def test_star_and_full_grids():
  a = accelerator.parse_args(["--clients=8,64,256", "--chunks=16,4,vmap", "--methods=fedvpt,pep"])
  star = accelerator.configs(a)
  assert star[:3] == [("fedvpt", k, 16, "bfloat16", False) for k in (8, 64, 256)]
  assert ("fedvpt", 64, 4, "bfloat16", False) in star and ("fedvpt", 64, None, "bfloat16",
                                                            False) in star
  assert ("fedvpt", 64, 16, "float32", False) in star
  assert ("fedvpt", 64, 16, "bfloat16", True) in star
  assert ("pep", 64, 16, "bfloat16", False) in star
  assert len(star) == len(set(star)) == 3 + 2 + 1 + 1 + 1
  assert star[-1] == ("fedvpt", 64, 16, "bfloat16", True)  # remat last: first cut by the budget
  # K=8 with chunk 16 and full vmap are the same round: listed once in the full grid.
  full = accelerator.configs(accelerator.parse_args(["--grid=full", "--clients=8",
                                                    "--chunks=16,vmap", "--methods=fedvpt",
                                                    "--dtypes=float32", "--remat=off"]))
  assert full == [("fedvpt", 8, 16, "float32", False)]


@pytest.mark.parametrize("flag, message", [
    ("--methods=fedvpt,zeroshot", "--methods: 'zeroshot' is unknown; valid: fedvpt, pep"),
    ("--dtypes=float16", "--dtypes: 'float16' is unknown; valid: float32, bfloat16"),
    ("--remat=yes", "--remat: 'yes' is unknown; valid: off, on"),
    ("--clients=8,x", "--clients and --chunks take integers"),
    ("--chunks=0", "give positive integers"),
    ("--base_k=32", "--base_k=32 is not one of --clients=8,64,256")])
def test_bad_flags_are_one_line_errors(flag, message, capsys):
  with pytest.raises(SystemExit):
    accelerator.parse_args([flag])
  assert message in capsys.readouterr().err


def test_targets_judge_vitb16_against_a_device_peak_and_vmapped_chunks_only():
  row = dict(method="fedvpt", k=64, chunk=16, dtype="bfloat16", remat=False, status="ok",
             loop_ratio=6.0, of_peak=0.45)
  loop, peak = accelerator_report.targets([row], "vitb16", peak_measured=False)
  assert loop.endswith("6.00 (target >= 5) PASS") and peak.endswith("45.0% (target >= 40%) PASS")
  low = dict(row, loop_ratio=2.0, of_peak=0.2)
  assert [x.split()[-1] for x in accelerator_report.targets([low], "vitb16", False)] == ["MISS"] * 2
  # A tiny model, a measured (not a device's) peak, or chunk 1: shown, not judged.
  for rows, model, measured in (([row], "tiny", False), ([row], "vitb16", True),
                                ([dict(row, chunk=1)], "vitb16", False)):
    lines = accelerator_report.targets(rows, model, measured)
    assert any("(information: " in x for x in lines), lines
  assert accelerator_report.targets([dict(row, status="OOM")], "vitb16", False) == [
      "  (no configuration ran)"]


def test_a_failure_is_a_row_oom_or_error_and_the_time_budget_stops_the_sweep(monkeypatch,
                                                                             capsys):
  def failing_run(self, row, m, k, chunk, d, r):
    del self, k, chunk, d, r
    row["stage"], row["compile_s"] = "round", 1.5
    if m == "fedvpt":
      raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 9 GB")
    raise ValueError("something else broke")
  monkeypatch.setattr(accelerator.Sweep, "run", failing_run)
  argv = SMOKE + ["--methods=fedvpt,pep"]
  results = accelerator.run(argv)
  oom, error = results["rows"]
  assert oom["status"] == "OOM (round)" and oom["compile_s"] == 1.5 and "stage" not in oom
  assert error["status"] == "error (round): something else broke"
  assert results["errors"] == 1 and accelerator.main(argv) == 1
  assert "ValueError: something else broke" in capsys.readouterr().err
  # No configuration starts once the sweep's time budget is spent.
  rows = accelerator.run(SMOKE + ["--methods=fedvpt,pep", "--time_budget=0"])["rows"]
  assert [r["status"] for r in rows] == ["not run (time budget 0 s)"] * 2
