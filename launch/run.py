"""Runs (or resumes) one federated prompt-tuning experiment.

  python launch/run.py --config=configs/pep.py [--workdir=DIR] [--config.fed.rounds=50 ...]

Without --workdir the run goes to workdirs/<config name>[_<arg>]. Running the same
command on the same workdir resumes from its newest intact checkpoint; a workdir
whose config.json records another config is refused (fedprompt_jax/workdir.py
lists the keys that may change on resume). A `--config.KEY` given more than once
takes its last value, tuple keys too (`--config.adv.eval=...` twice keeps the
second tuple; several attacks go in one tuple). Bad input prints one line
starting with "error:", before anything is written, and exits with status 1
(2 for a bad flag); so does a diverging run (non-finite loss or update).
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fedprompt_jax import cli  # noqa: E402  (after the path insert)

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file[:arg]")
_WORKDIR = flags.DEFINE_string("workdir", None, "output directory (resumes if it has a checkpoint)")
_COORDINATOR = flags.DEFINE_string(
    "coordinator", None, "multi-process: coordinator address host:port (jax.distributed)")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 1, "multi-process: number of processes")
_PROCESS_ID = flags.DEFINE_integer("process_id", 0, "multi-process: this process's index")


def parse_flags(argv):
  """absl's parser, with any flag or config error reduced to one line (exit 2)."""
  problem = cli.check_argv(argv)
  if problem is None:
    argv = cli.last_overrides_win(argv)
    try:
      return flags.FLAGS(argv)
    except Exception as e:  # pylint: disable=broad-except
      problem = cli.explain_flag_error(argv) or cli.one_line(str(e))
  print(f"error: {problem}", file=sys.stderr)
  sys.exit(2)


def default_workdir(config_arg: str) -> str:
  path, _, arg = config_arg.partition(":")
  name = os.path.splitext(os.path.basename(path))[0] + (f"_{arg}" if arg else "")
  return os.path.join("workdirs", name.replace(",", "_").replace("=", "-"))


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  if _COORDINATOR.value:
    import jax  # pylint: disable=import-outside-toplevel
    if jax.config.jax_platforms in (None, "", "cpu"):
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                               num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value)
  from fedprompt_jax import train  # pylint: disable=import-outside-toplevel
  from fedprompt_jax.checkpoint import DamagedCheckpointsError  # pylint: disable=import-outside-toplevel
  from fedprompt_jax.config import ConfigError  # pylint: disable=import-outside-toplevel
  from fedprompt_jax.finite import DivergenceError  # pylint: disable=import-outside-toplevel
  from fedprompt_jax.models.hf_loader import CheckpointError  # pylint: disable=import-outside-toplevel
  workdir = _WORKDIR.value or default_workdir(flags.FLAGS["config"].serialize().split("=", 1)[1])
  try:
    defaults = cli.config_defaults(config_flags.get_config_filename(flags.FLAGS["config"]))
    train.train_and_evaluate(_CONFIG.value, workdir, defaults)
  except (ConfigError, CheckpointError, DamagedCheckpointsError, DivergenceError, ValueError,
          OSError) as e:
    print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  app.run(lambda argv: sys.exit(main(argv)), flags_parser=parse_flags)
