"""Regenerates one README table into results/<table>/ (and, with --readme, its README block).

  python launch/reproduce.py --table=list                     # the tables, one line each
  python launch/reproduce.py --table=main --seeds=0,1,2       # runs (or resumes) and writes
  python launch/reproduce.py --table=comparison --set=fed.rounds=3 --readme
  python launch/reproduce.py --table=adversarial --methods=fedapt,no_at,zeroshot
  python launch/reproduce.py --sync_readme                    # README blocks from results/ only
  python launch/reproduce.py --check_readme                   # exit 1 if README != results/

A table's producer (fedprompt_jax/reproduce/tables.py) runs the project's own code; runs go
under --workdir (each table its own folder; finished runs are skipped, unfinished resumed) and
the table under --results/<table>/: table.md (what the README block holds, with the command
that regenerates it), table.csv, figure.png and meta.json (command, git commit, date, seeds,
config and partition hashes). --set=key=value (repeatable) applies to every run of the table.
The README's blocks are `<!-- results:NAME -->` ... `<!-- /results:NAME -->`. Bad input prints
one line "error: ..." and exits 2 before anything is run or written.
"""

import os
import shlex
import sys

from absl import app, flags, logging

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from fedprompt_jax.reproduce import readme_sync, tables  # noqa: E402

DEFAULT_SEEDS = ("0", "1", "2")
DEFAULT_WORKDIR = "workdirs/reproduce"
DEFAULT_RESULTS = "results"
FLAGS = flags.FLAGS


def command_line(table: str, seeds, workdir: str, results: str, overrides,
                 methods=None) -> str:
  """The shortest command that regenerates `table` as run: defaults are left out."""
  parts = ["python", "launch/reproduce.py", f"--table={table}"]
  if tuple(seeds) != DEFAULT_SEEDS:
    parts.append(f"--seeds={','.join(seeds)}")
  if methods:
    parts.append(f"--methods={','.join(methods)}")
  if workdir != DEFAULT_WORKDIR:
    parts.append(f"--workdir={workdir}")
  if results != DEFAULT_RESULTS:
    parts.append(f"--results={results}")
  parts += [f"--set={o}" for o in overrides]
  return " ".join(shlex.quote(p) for p in parts)


def _fail(message: str, code: int = 2) -> int:
  print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
  return code


def _read(path: str) -> str:
  with open(path, encoding="utf-8") as f:
    return f.read()


def _write_readme(path: str, results: str) -> None:
  from fedprompt_jax import atomic  # pylint: disable=import-outside-toplevel
  text = _read(path)
  new = readme_sync.sync(text, results)
  if new != text:
    atomic.write_text(path, new)


def main(argv) -> int:
  if len(argv) > 1:
    return _fail(f"unexpected arguments {argv[1:]}; give flags only (--table=NAME ...)")
  logging.set_verbosity(logging.WARNING)
  readme, results = FLAGS.readme_path, FLAGS.results
  if FLAGS.check_readme or FLAGS.sync_readme:
    if FLAGS.table is not None:
      return _fail("--check_readme and --sync_readme run no table; leave out --table")
    try:
      text = _read(readme)
      if FLAGS.check_readme:
        problems = readme_sync.mismatches(text, results)
        for p in problems:
          print(p)
        print(f"{len(readme_sync.block_names(text))} README results blocks, "
              f"{len(problems)} mismatch(es)")
        return 1 if problems else 0
      _write_readme(readme, results)
    except (OSError, readme_sync.ReadmeSyncError) as e:
      return _fail(e)
    print(f"synced the results blocks of {readme} from {results}/")
    return 0
  if FLAGS.table is None:
    return _fail(f"--table is required; valid: list, {', '.join(tables.NAMES)}")
  if FLAGS.table == "list":
    width = max(map(len, tables.NAMES))
    for name, entry in tables.REGISTRY.items():
      print(f"{name:<{width}}  {entry.description}")
    return 0
  if FLAGS.table not in tables.REGISTRY:
    return _fail(f"unknown --table={FLAGS.table!r}; valid: list, {', '.join(tables.NAMES)}")
  seeds = tuple(s.strip() for s in FLAGS.seeds if s.strip())
  bad = [s for s in seeds if not s.isdigit()]
  if bad or not seeds:
    return _fail(f"--seeds={','.join(FLAGS.seeds)!r}: give non-negative integers, e.g. 0,1,2")
  methods = tuple(m.strip() for m in FLAGS.methods or () if m.strip()) or None
  if methods and FLAGS.table not in tables.COMPARISON_TABLES:
    return _fail(f"--methods={','.join(methods)!r}: only the comparison tables have methods "
                 f"({', '.join(tables.COMPARISON_TABLES)}), not {FLAGS.table}")
  if FLAGS.readme:  # the block must exist before anything runs
    try:
      if FLAGS.table not in readme_sync.block_names(_read(readme)):
        return _fail(f"{readme} has no <!-- results:{FLAGS.table} --> ... <!-- /results:"
                     f"{FLAGS.table} --> block; add the two markers where the table goes")
    except (OSError, readme_sync.ReadmeSyncError) as e:
      return _fail(e)
  options = tables.Options(
      seeds=seeds, workdir=os.path.join(FLAGS.workdir, FLAGS.table),
      overrides=tuple(FLAGS.set), methods=methods,
      command=command_line(FLAGS.table, seeds, FLAGS.workdir, results, FLAGS.set, methods))
  from fedprompt_jax.reproduce import results_io  # pylint: disable=import-outside-toplevel
  try:
    produced = tables.produce(FLAGS.table, options)
  except tables.ProducerError as e:
    return _fail(e)
  except (ValueError, FileNotFoundError) as e:  # ConfigError, WorkdirError, CheckpointError
    return _fail(e, 1)
  folder = results_io.write_table(produced.table, results, produced.figure_fn, produced.meta)
  print(results_io.markdown(produced.table))
  print(f"wrote {folder}/")
  if FLAGS.readme:
    try:
      _write_readme(readme, results)
    except (OSError, readme_sync.ReadmeSyncError) as e:
      return _fail(e, 1)
    print(f"rewrote the results:{FLAGS.table} block of {readme}")
  return 0


def _define_flags():
  """The command's flags, defined only when it runs as a command (importing it leaves absl's
  global flags alone)."""
  flags.DEFINE_string("table", None, f"list, or one of {', '.join(tables.NAMES)}")
  flags.DEFINE_list("seeds", list(DEFAULT_SEEDS), "seeds (tables that train or render data)")
  flags.DEFINE_string("workdir", DEFAULT_WORKDIR, "root of the runs (WORKDIR/<table>/...)")
  flags.DEFINE_multi_string("set", [], "key=value applied to every run of the table")
  flags.DEFINE_list("methods", None, "comparison tables only: the rows to run (default all); "
                    "an unknown name is refused before anything runs")
  flags.DEFINE_string("results", DEFAULT_RESULTS, "where results/<table>/ goes")
  flags.DEFINE_bool("readme", False, "also rewrite the table's README block")
  flags.DEFINE_bool("sync_readme", False, "only rewrite every README block from results/")
  flags.DEFINE_bool("check_readme", False, "exit 1 and print the README blocks that differ "
                    "from results/")
  flags.DEFINE_string("readme_path", os.path.join(REPO, "README.md"), "the README to edit")


if __name__ == "__main__":
  _define_flags()
  app.run(lambda argv: sys.exit(main(argv)))
