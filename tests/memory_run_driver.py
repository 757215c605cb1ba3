"""One federated run in its own process, reporting its memory: tests/test_larger_than_memory.py.

  python tests/memory_run_driver.py CONFIG_JSON WORKDIR

CONFIG_JSON maps dotted config keys to values, applied over config.default_config().
Prints one JSON line: {"baseline": RSS bytes after the imports (before the run loads
anything), "peak": the process's peak RSS (VmHWM) after the run, "records": the metrics
records, "round_inputs_seconds": each call's time building a round's host batches (the
first from the memory plan), "total_seconds": the whole run}.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fedprompt_jax import config as config_lib  # noqa: E402
from fedprompt_jax import memory_plan  # noqa: E402
from fedprompt_jax import train  # noqa: E402


def peak_rss() -> int:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmHWM:"):
        return int(line.split()[1]) * 1024
  raise RuntimeError("no VmHWM in /proc/self/status")


def main(values_json: str, workdir: str) -> None:
  c = config_lib.default_config()
  for key, value in json.loads(values_json).items():
    section, name = key.split(".")
    c[section][name] = tuple(value) if isinstance(value, list) else value
  baseline = memory_plan.resident_set_bytes()
  times = []
  round_fn = train.Run.round_inputs

  def timed(self, *args, **kwargs):  # the host half of each round: sampling and reading
    start = time.perf_counter()
    out = round_fn(self, *args, **kwargs)
    times.append(time.perf_counter() - start)
    return out

  train.Run.round_inputs = timed
  start = time.perf_counter()
  records = train.train_and_evaluate(c, workdir)
  print(json.dumps({"baseline": baseline, "peak": peak_rss(), "records": records,
                    "round_inputs_seconds": times, "total_seconds": time.perf_counter() - start}))


if __name__ == "__main__":
  main(*sys.argv[1:])
