"""launch/reproduce.py and fedprompt_jax/reproduce: the results files, the README blocks, the
command's errors and one shortened producer run end to end."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from clip_fixtures import fixture_dir
from fedprompt_jax import run_files
from fedprompt_jax.reproduce import readme_sync, results_io, tables

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMAND = os.path.join(REPO, "launch", "reproduce.py")


def small_table(name="main", value=0.6339):
  return results_io.Table(
      name=name, title="A table", columns=("seed", "global", "note"),
      rows=(("0", value, "a | b"), ("1", None, "c")), notes="In %.",
      command=f"python launch/reproduce.py --table={name}", formats=("g", "pct", "g"))


def test_formats_are_made_in_one_place():
  assert results_io.format_cell(0.63394, "pct") == "63.4"
  assert results_io.format_cell(1.23e-7, "sci") == "1.2e-7"
  assert results_io.format_cell(4.1e-6, "sci") == "4.1e-6"
  assert results_io.format_cell(0.0, "sci") == "0"
  assert results_io.format_cell(None) == results_io.format_cell(float("nan")) == "-"
  assert results_io.mean_std([0.62, 0.64]) == "63.0 +- 1.0"  # ddof=0, as launch/compare.py
  assert results_io.mean_std([None]) == "-"


def test_table_rejects_ragged_rows_and_unknown_formats():
  with pytest.raises(ValueError, match="row 0 has 1 cells"):
    results_io.Table("t", "T", ("a", "b"), (("x",),))
  with pytest.raises(ValueError, match="formats"):
    results_io.Table("t", "T", ("a",), (("x",),), formats=("percent",))


def test_write_table_markdown_and_csv_agree(tmp_path):
  table = small_table()
  folder = results_io.write_table(table, str(tmp_path), meta={"seeds": ["0", "1"]})
  assert sorted(os.listdir(folder)) == ["meta.json", "table.csv", "table.md"]
  with open(os.path.join(folder, "table.md")) as f:
    md = f.read()
  lines = md.splitlines()
  assert lines[0] == "**A table**"
  assert lines[2] == "| seed | global | note |"
  assert lines[4] == "| 0 | 63.4 | a \\| b |"
  assert lines[5] == "| 1 | - | c |"
  assert md.endswith("In %.\n\nRegenerate: `python launch/reproduce.py --table=main`\n")
  header, rows = results_io.read_csv(os.path.join(folder, "table.csv"))
  assert header == list(table.columns)
  assert rows == [["0", "0.6339", "a | b"], ["1", "", "c"]]
  # The markdown's cells are the CSV's values, formatted.
  for j, fmt in enumerate(table.formats):
    for row, cells in zip(rows, table.cells()):
      value = float(row[j]) if fmt == "pct" and row[j] else (row[j] or None)
      assert results_io.format_cell(value, fmt) == cells[j]
  with open(os.path.join(folder, "meta.json")) as f:
    meta = json.load(f)
  assert meta["command"] == table.command and meta["table"] == "main"
  assert meta["meta"] == {"seeds": ["0", "1"]} and meta["date"]
  assert meta["git_commit"] is None or len(meta["git_commit"].split("-")[0]) == 40


def test_write_table_is_atomic_when_the_figure_fails(tmp_path):
  results_io.write_table(small_table(), str(tmp_path),
                         figure_fn=lambda p: open(p, "wb").write(b"png"))
  folder = tmp_path / "main"
  before = {n: (folder / n).read_bytes() for n in os.listdir(folder)}
  assert (folder / "figure.png").read_bytes() == b"png"

  def broken(path):
    with open(path, "wb") as f:
      f.write(b"half")
    raise RuntimeError("matplotlib fell over")

  with pytest.raises(RuntimeError):
    results_io.write_table(small_table(value=0.1), str(tmp_path), figure_fn=broken)
  assert {n: (folder / n).read_bytes() for n in os.listdir(folder)} == before  # no tmp left


def readme(*names, body="old"):
  return "".join(f"# {n}\n<!-- results:{n} -->\n{body}\n<!-- /results:{n} -->\ntext\n"
                 for n in names)


def test_sync_replaces_each_block_and_then_nothing_mismatches(tmp_path):
  results_io.write_table(small_table("main"), str(tmp_path))
  results_io.write_table(small_table("parity", 0.5), str(tmp_path))
  text = "intro\n" + readme("main", "parity")
  assert len(readme_sync.mismatches(text, str(tmp_path))) == 2
  new = readme_sync.sync(text, str(tmp_path))
  assert new.startswith("intro\n# main\n<!-- results:main -->\n**A table**\n")
  assert "| 0 | 50.0 | a \\| b |" in new and "old" not in new
  assert new.count("text\n") == 2
  assert readme_sync.mismatches(new, str(tmp_path)) == []
  assert readme_sync.sync(new, str(tmp_path)) == new
  # A changed number is caught.
  results_io.write_table(small_table("main", 0.7), str(tmp_path))
  assert readme_sync.mismatches(new, str(tmp_path)) == [
      f"results:main: the README block differs from {tmp_path}/main/table.md (run python "
      "launch/reproduce.py --sync_readme)"]


def test_missing_results_and_bad_blocks(tmp_path):
  text = readme("zeroshot")
  assert readme_sync.mismatches(text, str(tmp_path)) == [
      f"results:zeroshot: {tmp_path}/zeroshot/table.md is missing"]
  with pytest.raises(readme_sync.ReadmeSyncError, match="reproduce.py --table=zeroshot"):
    readme_sync.sync(text, str(tmp_path))
  with pytest.raises(readme_sync.ReadmeSyncError, match="unknown table 'nope'; valid: regression, parity"):
    readme_sync.mismatches(readme("nope"), str(tmp_path))
  with pytest.raises(readme_sync.ReadmeSyncError, match="never closed"):
    readme_sync.mismatches("<!-- results:main -->\nx\n", str(tmp_path))
  with pytest.raises(readme_sync.ReadmeSyncError, match="never closed"):
    readme_sync.mismatches("<!-- results:main -->\nx <!-- /results:main -->\n", str(tmp_path))
  # Mentions inside a line are prose, not markers.
  assert readme_sync.block_names("Blocks are `<!-- results:NAME -->` lines.\n") == []
  with pytest.raises(readme_sync.ReadmeSyncError, match="more than one"):
    readme_sync.mismatches(readme("main", "main"), str(tmp_path))


def run_command(*args):
  return subprocess.run([sys.executable, COMMAND, *args], capture_output=True, text=True,
                        timeout=120, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO))


def test_command_unknown_table_is_one_line_exit_2(tmp_path):
  out = run_command("--table=mian", f"--results={tmp_path}")
  assert out.returncode == 2, out
  assert out.stderr == ("error: unknown --table='mian'; valid: list, "
                        + ", ".join(tables.NAMES) + "\n")
  assert not os.listdir(tmp_path)


def test_command_check_and_sync_readme(tmp_path):
  results_io.write_table(small_table("main"), str(tmp_path))
  path = tmp_path / "README.md"
  path.write_text(readme("main"))
  args = (f"--results={tmp_path}", f"--readme_path={path}")
  out = run_command("--check_readme", *args)
  assert out.returncode == 1 and out.stdout.startswith("results:main: the README block differs")
  assert run_command("--sync_readme", *args).returncode == 0
  assert readme_sync.mismatches(path.read_text(), str(tmp_path)) == []
  assert run_command("--check_readme", *args).returncode == 0


def test_methods_only_for_comparison_tables_and_only_their_runs(tmp_path):
  out = run_command("--table=main", "--methods=pep", f"--results={tmp_path}",
                    f"--workdir={tmp_path}")
  assert out.returncode == 2, out
  assert out.stderr.startswith("error: --methods='pep': only the comparison tables have methods")
  with pytest.raises(tables.ProducerError, match="--methods has fedap, not a run of table "
                     "adversarial; valid: fedapt, no_gle"):
    tables.produce("adversarial", tables.Options(methods=("fedapt", "fedap"),
                                                 workdir=str(tmp_path)))
  assert not os.listdir(tmp_path)  # refused before anything ran or was written


def test_command_line_names_the_methods_run():
  sys.path.insert(0, os.path.dirname(COMMAND))
  import reproduce  # pylint: disable=import-outside-toplevel
  assert reproduce.command_line("adversarial", ("0",), reproduce.DEFAULT_WORKDIR,
                                reproduce.DEFAULT_RESULTS, (), ("fedapt", "zeroshot")) == (
      "python launch/reproduce.py --table=adversarial --seeds=0 --methods=fedapt,zeroshot")


def test_unknown_set_key_of_a_settings_producer():
  with pytest.raises(tables.ProducerError, match="valid keys are checkpoint, data"):
    tables.produce("zeroshot", tables.Options(overrides=("chekpoint=x",)))


# The main table's producer on configs/pep.py with the zero-shot method (it trains nothing, so
# nothing is compiled for a round: the PEP round alone compiles for ~14 s on a loaded 2-core
# machine; tests/test_pep_run.py trains it). Everything else is the producer's real path.
TINY = ("method.name=zeroshot", f"clip.checkpoint={fixture_dir('clip_tiny_b')}", "fed.rounds=1",
        "eval.every=1",
        "data.train_per_class_domain=1", "data.test_per_class_domain=1", "fed.num_clients=4",
        "fed.clients_per_round=2", "fed.local_steps=1", "fed.batch_size=4",
        "eval.check_zero_shot=False", "adv.eval=()", "eval.batch_size=64",
        "eval.personalized=False")


def test_main_table_end_to_end(tmp_path):
  options = tables.Options(seeds=("0",), workdir=str(tmp_path / "work"), overrides=TINY,
                           command="python launch/reproduce.py --table=main --seeds=0 ...")
  produced = tables.produce("main", options)
  results_io.write_table(produced.table, str(tmp_path / "results"), produced.figure_fn,
                         produced.meta)
  folder = tmp_path / "results" / "main"
  assert sorted(os.listdir(folder)) == ["figure.png", "meta.json", "table.csv", "table.md"]
  header, rows = results_io.read_csv(str(folder / "table.csv"))
  assert header == ["seed", "zero-shot", "global"]
  assert [r[0] for r in rows] == ["0", "mean", "std"]
  with open(tmp_path / "work" / "main_seed0" / "metrics.jsonl") as f:
    final = json.loads(f.read().splitlines()[-1])
  assert final["round"] == 0  # the zero-shot method's one evaluation
  assert float(rows[0][2]) == final["global_acc"] == float(rows[1][2])
  assert float(rows[2][2]) == 0.0
  meta = json.loads((folder / "meta.json").read_text())["meta"]
  assert meta["partition_hash"] == {"0": run_files.partition_hash(
      str(tmp_path / "work" / "main_seed0"))}
  assert len(meta["config_hash"]) == 1 and len(meta["config_hash"][0]) == 64
  assert (folder / "figure.png").read_bytes() == (
      tmp_path / "work" / "main_seed0" / "curves.png").read_bytes()
  assert "Regenerate: `python launch/reproduce.py --table=main --seeds=0 ...`" in (
      folder / "table.md").read_text()


def test_a_finished_run_is_read_back_without_building_it(tmp_path, monkeypatch):
  """A second call finds the run finished (workdir.finished_records) and builds nothing; a
  changed key, even a resumable one, or records after the summary send it to the real path."""
  from fedprompt_jax import train  # pylint: disable=import-outside-toplevel
  options = tables.Options(seeds=("0",), workdir=str(tmp_path), overrides=TINY)
  first = tables.produce("main", options).table

  def refuse(*unused):
    raise AssertionError("built the run")

  monkeypatch.setattr(train, "Run", refuse)
  assert tables.produce("main", options).table == first
  changed = dataclasses.replace(options, overrides=TINY + ("eval.every=2",))
  with pytest.raises(AssertionError, match="built the run"):
    tables.produce("main", changed)
  with open(tmp_path / "main_seed0" / "metrics.jsonl", "a", encoding="utf-8") as f:
    f.write(json.dumps({"round": 1, "global_acc": 0.5}) + "\n")
  with pytest.raises(AssertionError, match="built the run"):
    tables.produce("main", options)


def test_dp_table_calibrates_each_run_and_tabulates_its_final_record(tmp_path, monkeypatch):
  """The dp producer's own logic, with training replaced by a record made from the config it
  was given (tests/test_dp.py runs DP training itself): z spends the target in the rounds,
  inf and off are what they say, each cell is its run's, the runs go where dp_sweep puts them."""
  from fedprompt_jax import train  # pylint: disable=import-outside-toplevel
  from fedprompt_jax.privacy import settings as dp_settings  # pylint: disable=import-outside-toplevel
  seen = {}

  def fake_train(c, workdir, *unused):
    seen[os.path.relpath(workdir, tmp_path)] = c
    spent = dp_settings.accountant(c).epsilon(c.fed.rounds) if c.dp.enabled else None
    acc = 0.5 + 0.01 * c.seed + (0.1 if not c.dp.enabled else 0.05 * (c.dp.noise_multiplier == 0))
    return [dict(round=0, zeroshot_acc=0.4 + 0.01 * c.seed, global_acc=0.4),
            dict(round=c.fed.rounds, zeroshot_acc=0.4 + 0.01 * c.seed, global_acc=acc,
                 dp_epsilon=spent)]

  monkeypatch.setattr(train, "train_and_evaluate", fake_train)
  options = tables.Options(seeds=("0", "1"), workdir=str(tmp_path),
                           overrides=("methods=promptfl", "epsilons=3,inf,off", "rounds=4"))
  table = tables.produce("dp", options).table
  assert sorted(seen) == sorted(f"promptfl/eps_{e}_seed_{s}" for e in ("3", "inf", "off")
                                for s in (0, 1))
  for s in (0, 1):
    c3, cinf, coff = (seen[f"promptfl/eps_{e}_seed_{s}"] for e in ("3", "inf", "off"))
    assert c3.seed == s and c3.fed.rounds == 4 and c3.fed.num_clients == 1000
    assert c3.dp.enabled and c3.dp.target_epsilon == 3.0
    spent = dp_settings.accountant(c3).epsilon(4)
    assert 2.95 < spent <= 3.0  # calibrated to spend the target, not less
    assert cinf.dp.enabled and cinf.dp.noise_multiplier == 0 and cinf.dp.target_epsilon is None
    assert not coff.dp.enabled
  assert table.columns == ("method", "epsilon", "z", "epsilon spent", "seed 0", "seed 1",
                           "mean +- std")
  by_name = {(r[0], r[1]): r for r in table.rows}
  assert by_name[("zero-shot", "-")][4:6] == pytest.approx((0.4, 0.41))
  eps3 = by_name[("promptfl", "3")]
  assert eps3[2] == seen["promptfl/eps_3_seed_0"].dp.noise_multiplier and 2.95 < eps3[3] <= 3.0
  assert eps3[4:6] == pytest.approx((0.5, 0.51)) and eps3[6] == "50.5 +- 0.5"
  inf, off = by_name[("promptfl", "inf (clip, z = 0)")], by_name[("promptfl", "no DP")]
  assert inf[2:4] == (0.0, None) and inf[4:6] == pytest.approx((0.55, 0.56))
  assert off[2:4] == (None, None) and off[4:6] == pytest.approx((0.6, 0.61))
  with pytest.raises(tables.ProducerError, match="'cifar'.*valid: promptfl, fedvpt, pep"):
    tables.produce("dp", tables.Options(overrides=("methods=cifar",)))


def test_vs_pytorch_table_runs_the_benchmark_pinned_and_tabulates_its_json(monkeypatch):
  """The producer's own part (benchmarks/vs_pytorch.py itself: tests/test_vs_pytorch.py): the
  command it starts, and each cell from the figures the benchmark wrote."""
  from fedprompt_jax.reproduce import bench_tables  # pylint: disable=import-outside-toplevel
  started = []
  seconds = {"fedvpt/torch": [2.0, 3.0, 4.0], "fedvpt/ours": [1.0, 2.0, 1.0],
             "promptfl/torch": [6.0, 6.0, 6.0], "promptfl/ours": [4.0, 4.0, 4.0],
             "promptfl+cache/ours": [1.0, 2.0, 3.0]}
  ratio = lambda a, b: sorted(x / y for x, y in zip(seconds[a], seconds[b]))
  figures = dict(seconds=seconds, targets={"fedvpt": 1.3, "promptfl+cache": 3.0},
                 cache_fill_seconds=0.5, first_round_max_abs_diff={"fedvpt": 1e-6},
                 ratios={n: dict(median=ratio(a, b)[1], min=ratio(a, b)[0], max=ratio(a, b)[2])
                         for n, a, b in (("fedvpt", "fedvpt/torch", "fedvpt/ours"),
                                         ("promptfl", "promptfl/torch", "promptfl/ours"),
                                         ("promptfl+cache", "promptfl/torch",
                                          "promptfl+cache/ours"),
                                         ("cache_speedup", "promptfl/ours",
                                          "promptfl+cache/ours"))})

  def fake_run(cmd, **unused):
    started.append(cmd)
    out = [a for a in cmd if a.startswith("--json=")][0][len("--json="):]
    with open(out, "w", encoding="utf-8") as f:
      json.dump(figures, f)
    return subprocess.CompletedProcess(cmd, 0, "K=64 clients x ...\nmore\n", "")

  monkeypatch.setattr(bench_tables.subprocess, "run", fake_run)
  table = tables.produce("vs_pytorch", tables.Options(overrides=("repeats=3",))).table
  assert started[0][1].endswith(os.path.join("benchmarks", "vs_pytorch.py"))
  assert started[0][2:-1] == ["--k=64", "--steps=2", "--batch=32", "--repeats=3", "--threads=1"]
  assert [r[1:] for r in table.rows] == [
      (3.0, 1.0, "2.00x [1.50, 4.00]", ">= 1.3: PASS"),
      (6.0, 4.0, "1.50x [1.50, 1.50]", "-"),
      (6.0, 2.0, "3.00x [2.00, 6.00]", ">= 3: PASS"),
      (4.0, 2.0, "2.00x [1.33, 4.00]", "-")]
  assert "K=64 clients x ..." in table.notes and "1.0e-6 (fedvpt)" in table.notes
  monkeypatch.setattr(bench_tables.subprocess, "run", lambda cmd, **unused:
                      subprocess.CompletedProcess(cmd, 1, "", "Traceback\nImportError: torch\n"))
  with pytest.raises(RuntimeError, match="exited 1: ImportError: torch"):
    tables.produce("vs_pytorch", tables.Options(overrides=("quick=True",)))
