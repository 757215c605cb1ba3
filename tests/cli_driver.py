"""Runs launch/ scripts as `__main__` in forked children of one warm process (tests only).

Starting a Python process that imports JAX, orbax and transformers costs about
10 s here; the fault tests run dozens of commands. This driver imports those
modules once (without starting a JAX backend, so forking is safe), then for each
request forks a child that sets `sys.argv`, points file descriptors 1 and 2 at
files, and runs the script with `runpy.run_path(..., run_name="__main__")`: the
command runs as from a shell, with its own exit status, stdout and stderr.

Protocol: one JSON object per line on stdin,
  {"script": "launch/run.py", "argv": [...], "kill": {"kind": ..., "n": ...} (optional)}
answered by one JSON line {"rc", "stdout", "stderr", "seconds"} on the stdout
the driver was started with (the driver's own prints go to stderr). rc is the
exit status, or -signal for a child killed by a signal.

`kill` makes the child SIGKILL itself at a moment of the run (patched in the
child only): "round" (the n-th round was computed, before its record), "metrics"
(the n-th metrics record was written and fsync'ed, before its checkpoint),
"ckpt_write" (the n-th checkpoint is written under orbax's temporary name, not yet
renamed), "seal" (the n-th
checkpoint is complete in orbax but not yet sealed) or "final_eval" (the
evaluation of the last round has started).
"""

import json
import os
import runpy
import signal
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def _die():
  os.kill(os.getpid(), signal.SIGKILL)


def _counter(n):
  count = [0]

  def hit():
    count[0] += 1
    return count[0] == n
  return hit


def install_kill(kind: str, n: int) -> None:
  """Patches the (already imported) library so that this process dies at the given moment."""
  from fedprompt_jax import checkpoint, finite, metrics, train  # pylint: disable=import-outside-toplevel
  hit = _counter(n)
  if kind == "round":
    check = finite.check_round
    finite.check_round = lambda *a, **k: _die() if hit() else check(*a, **k)
  elif kind == "metrics":
    write = metrics.MetricsWriter.write

    def write_then_die(self, *a, **k):
      write(self, *a, **k)
      if hit():
        _die()
    metrics.MetricsWriter.write = write_then_die
  elif kind == "ckpt_write":  # every file is written under orbax's temporary name, not renamed
    from orbax.checkpoint._src.path import atomicity  # pylint: disable=import-outside-toplevel
    finalize = atomicity.AtomicRenameTemporaryPath.finalize

    async def finalize_or_die(self, *a, **k):
      if hit():
        _die()
      return await finalize(self, *a, **k)
    atomicity.AtomicRenameTemporaryPath.finalize = finalize_or_die
  elif kind == "seal":
    seal = checkpoint.seal
    checkpoint.seal = lambda step_dir: _die() if hit() else seal(step_dir)
  elif kind == "final_eval":
    round_done, evaluate = metrics.MetricsWriter.round_done, train.Run.evaluate
    last = [False]

    def note(self, round_index, loss=None):
      last[0] = round_index == self.total_rounds
      round_done(self, round_index, loss)

    def evaluate_or_die(self, *a, **k):
      if last[0]:
        _die()
      return evaluate(self, *a, **k)
    metrics.MetricsWriter.round_done, train.Run.evaluate = note, evaluate_or_die
  else:
    raise ValueError(f"unknown kill kind {kind!r}")


def run_case(request: dict) -> dict:
  out = tempfile.NamedTemporaryFile(prefix="driver_out_", delete=False).name
  err = tempfile.NamedTemporaryFile(prefix="driver_err_", delete=False).name
  script = os.path.join(REPO, request["script"])
  start = time.time()
  pid = os.fork()
  if pid == 0:  # the child: never returns
    code = 1
    try:
      for fd, path in ((1, out), (2, err)):
        f = os.open(path, os.O_WRONLY | os.O_TRUNC)
        os.dup2(f, fd)
        os.close(f)
      sys.stdout = open(1, "w", closefd=False)  # pylint: disable=consider-using-with
      sys.stderr = open(2, "w", closefd=False)  # pylint: disable=consider-using-with
      if request.get("kill"):
        install_kill(**request["kill"])
      sys.argv = [script, *request["argv"]]
      runpy.run_path(script, run_name="__main__")
      code = 0
    except SystemExit as e:
      code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # pylint: disable=broad-except  (shown like the interpreter would)
      import traceback  # pylint: disable=import-outside-toplevel
      traceback.print_exc()
      code = 1
    finally:
      sys.stdout.flush()
      sys.stderr.flush()
      os._exit(code)  # pylint: disable=protected-access
  _, status = os.waitpid(pid, 0)
  result = {"rc": os.waitstatus_to_exitcode(status), "seconds": round(time.time() - start, 2)}
  for key, path in (("stdout", out), ("stderr", err)):
    with open(path, encoding="utf-8", errors="replace") as f:
      result[key] = f.read()
    os.remove(path)
  return result


def main() -> None:
  reply = os.fdopen(os.dup(1), "w")
  os.dup2(2, 1)  # anything the driver itself prints goes to stderr
  sys.stdout = sys.stderr
  # What every command imports, loaded once; no JAX backend starts here (forking stays safe).
  import jax  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  from fedprompt_jax import train  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  from fedprompt_jax.models import tokenizer  # pylint: disable=import-outside-toplevel
  tokenizer._silence_no_torch_notice()  # pylint: disable=protected-access
  import transformers  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  reply.write(json.dumps({"ready": True}) + "\n")
  reply.flush()
  for line in sys.stdin:
    if line.strip():
      reply.write(json.dumps(run_case(json.loads(line))) + "\n")
      reply.flush()


if __name__ == "__main__":
  main()
