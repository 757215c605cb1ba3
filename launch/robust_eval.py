"""Robust accuracy of a finished (or checkpointed) run's global model under other attacks.

  python launch/robust_eval.py --workdir=workdirs/fedvpt_at \
      --attack=pgd:linf:eps=2/255:steps=50 --attack=apgd-ce:linf:eps=2/255:steps=100

Rebuilds the run from `<workdir>/config.json` (same data, same CLIP), restores its
latest checkpoint and reports clean accuracy, each attack's robust accuracy and the
per-example worst case over the attacks on the first --examples global test
examples. Keys are those of training-time evaluation (the run's seed, then the
attack's position in the list, then the example's index), so the run's own
`adv.eval` list on its `adv.eval_examples` reproduces its figures exactly; the
same attack at another position gets another random start. The run's
gradient-masking checks (attacks/sanity.py: its `adv.sanity_attack` on the first
`adv.sanity_examples`, monotonicity and loss rise over these attacks) are reported
as `robust_sanity/...`, each failure as a line "warning: gradient-masking check: ..."
on stderr. Prints a table and writes `<workdir>/robust_eval_round<R>.json`. Bad input
prints one line starting with "error:" and exits with status 1.
"""

import json
import os
import sys

from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_WORKDIR = _ATTACKS = _EXAMPLES = _BATCH = None  # absl flag holders, set by _define_flags()


def evaluate_workdir(workdir: str, attacks: list[str], examples: int, batch_size: int) -> dict:
  """{"round": R, "examples": N, "robust_acc/<name>": accuracy, ..., "robust_sanity/...": ...}
  of the latest checkpoint."""
  from fedprompt_jax import checkpoint  # pylint: disable=import-outside-toplevel
  from fedprompt_jax import config as config_lib  # pylint: disable=import-outside-toplevel
  from fedprompt_jax import train  # pylint: disable=import-outside-toplevel
  from fedprompt_jax.attacks import make_attack  # pylint: disable=import-outside-toplevel
  from fedprompt_jax.fed import mesh as mesh_lib  # pylint: disable=import-outside-toplevel

  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"--workdir={workdir} has no config.json; give a run's workdir")
  if not attacks:
    raise ValueError("no --attack given; e.g. --attack=pgd:linf:eps=1/255:steps=50")
  try:
    parsed = [make_attack(a) for a in attacks]
  except ValueError as e:
    raise ValueError(f"--attack: {e}") from None
  if examples < 0 or batch_size < 0:
    raise ValueError(f"--examples={examples} / --batch_size={batch_size}: must be >= 0")
  c = config_lib.load_run_config(path)
  config_lib.validate(c)
  if c.fed.local_only:
    raise ValueError(f"--workdir={workdir} is a local-only run: it has no global model")
  if not checkpoint.step_rounds(workdir):  # before building anything; orbax would create ckpt/
    raise FileNotFoundError(f"--workdir={workdir} has no checkpoint yet; run it first")
  checkpoint.check_not_all_damaged(workdir)
  run = train.Run(c, workdir)
  ckpt = checkpoint.Checkpointer(workdir, create=False)
  restored = run.restore_latest(ckpt, set_aside=False)  # damaged ones are reported, not moved
  ckpt.close()
  latest, state, personal_all = restored
  state = mesh_lib.local_copy(state)
  n = examples or len(run.source.test)
  report = run.robust_report(run.make_robust(parsed),
                             run.global_params(state, personal_all), state.extra, n,
                             batch_size or c.adv.eval_batch_size)
  return {"round": int(latest), "examples": min(n, len(run.source.test)), **report}


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  from fedprompt_jax.checkpoint import DamagedCheckpointsError  # pylint: disable=import-outside-toplevel
  from fedprompt_jax.config import ConfigError  # pylint: disable=import-outside-toplevel
  try:
    result = evaluate_workdir(_WORKDIR.value, _ATTACKS.value, _EXAMPLES.value, _BATCH.value)
  except (ConfigError, DamagedCheckpointsError, ValueError, OSError) as e:
    print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
    return 1
  print(f"round {result['round']}, {result['examples']} test examples")
  for key, value in result.items():
    if key.startswith("robust_acc/"):
      print(f"  {key[len('robust_acc/'):]:<45} {100 * value:6.2f}%")
  print("gradient-masking checks")
  for key, value in result.items():
    if key.startswith("robust_sanity/"):
      shown = f"{100 * value:6.2f}%" if key.endswith("_acc") else f"{value:g}"
      print(f"  {key[len('robust_sanity/'):]:<45} {shown}")
  out = os.path.join(_WORKDIR.value, f"robust_eval_round{result['round']}.json")
  from fedprompt_jax import atomic  # pylint: disable=import-outside-toplevel
  atomic.write_text(out, json.dumps(result, indent=2))
  print(f"wrote {out}")
  return 0


def _define_flags():
  """The command's flags, defined only when it runs as a command (importing it, as the tests
  and other scripts do, leaves absl's global flags alone)."""
  global _WORKDIR, _ATTACKS, _EXAMPLES, _BATCH  # pylint: disable=global-statement
  _WORKDIR = flags.DEFINE_string("workdir", None, "a run's output directory", required=True)
  _ATTACKS = flags.DEFINE_multi_string("attack", [], "attack spec (attacks/spec.py); repeatable")
  _EXAMPLES = flags.DEFINE_integer("examples", 0, "global test examples to attack; 0 = all")
  _BATCH = flags.DEFINE_integer("batch_size", 0, "attack batch; 0 = the run's adv.eval_batch_size")


if __name__ == "__main__":
  _define_flags()
  app.run(lambda argv: sys.exit(main(argv)))
