"""A finished run's global model on another data set or other domains, clean and robust.

  python launch/transfer_eval.py --workdir=workdirs/fedapt --data=digits
  python launch/transfer_eval.py --workdir=workdirs/fedapt --data=shapes --domains=photo,sketch
  python launch/transfer_eval.py --workdir=W --data=tfds --tfds_name=cifar10 --data_dir=~/tfds \
      --attack=pgd:linf:eps=1/255:steps=100 --examples=1000
  python launch/transfer_eval.py --workdir=workdirs/fedmvp --data=digits --attack=none
  python launch/transfer_eval.py --workdir=W --data=tfds --tfds_name=food101 --data_dir=~/tfds \
      --attributes_file=~/attrs/food101.json --attack=none       # FedMVP on a tfds set

Rebuilds the run from `<workdir>/config.json` (same CLIP), restores its latest
checkpoint (a zero-shot run has none: its untrained model is used), loads the target's
test split (shapes: the run's seed and test size; with no --domains, the shapes domains
the run did not train on), and calls the method's `prepare` for the target's classes:
FedAPT's G, PromptFL's class-name tokens, FedVPT's zero-shot head and FedMVP's
attribute-sentence features are the target's, the trained prompts, generator and
PromptFormer are the run's. FedMVP reads the target's attribute sentences from
--attributes_file, else (another data set) the target's shipped file (shapes, digits),
else (other domains of the run's data set) the run's data.attributes_file. Reports clean
accuracy on the whole target test split (per domain too) and, on the first --examples
test rows of each domain, clean, per-attack and worst-case robust accuracy under the
run's `adv.eval` attacks (or the --attack specs; --attack=none, or a run with no
adv.eval, reports clean accuracy only). Writes
`<workdir>/transfer_<target>_round<R>.json`. Methods whose trained parameters have a
class axis (PEP-FedPT; FedAPT with gle_trainable) are refused for another class set,
with the leaves that tie them. Bad input prints one line starting with "error:" and
exits with status 1.
"""

import json
import os
import sys

from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Flag holders, set by _define_flags() when this file runs as a command.
_WORKDIR = _DATA = _DOMAINS = _TFDS_NAME = _DATA_DIR = _ATTACKS = _EXAMPLES = _BATCH = None
_ATTRIBUTES = None
NO_ATTACK = "none"


def target_name(data: str, domains, tfds_name: str = "") -> str:
  if data == "tfds":
    return f"tfds-{tfds_name}" if tfds_name else "tfds"
  return data + (f"-{'-'.join(domains)}" if domains else "")


def setup(workdir: str, data: str, domains=(), tfds_name: str = "", data_dir: str = "",
          attributes_file: str = "") -> dict:
  """Everything the evaluation needs: {"run", "round", "params", "extra", "target", "aux",
  "client"}; raises ValueError / FileNotFoundError (one line) before loading anything heavy
  when it can."""
  from fedprompt_jax import checkpoint, train, transfer  # pylint: disable=import-outside-toplevel
  from fedprompt_jax import config as config_lib  # pylint: disable=import-outside-toplevel
  from fedprompt_jax.fed import mesh as mesh_lib  # pylint: disable=import-outside-toplevel
  from fedprompt_jax.methods import base  # pylint: disable=import-outside-toplevel

  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"--workdir={workdir} has no config.json; give a run's workdir")
  c = config_lib.load_run_config(path)
  config_lib.validate(c)
  t = transfer.target_config(c, data, tuple(domains), tfds_name, data_dir, attributes_file)
  if c.fed.local_only:
    raise ValueError(f"--workdir={workdir} is a local-only run: it has no global model")
  run = train.Run(c, workdir)
  target = train.load_data(t, run.model.config.vision.image_size)
  ctx = base.Context(run.model, run.frozen, run.tokenizer, target.class_names, target.attributes)
  aux = run.method.prepare(ctx)
  transfer.check_transferable(run.method, ctx, run.aux, run.source.class_names, aux)
  if run.method.trains:
    if not checkpoint.step_rounds(workdir):  # orbax would create an empty ckpt/
      raise FileNotFoundError(f"--workdir={workdir} has no checkpoint yet; run it first")
    ckpt = checkpoint.Checkpointer(workdir, create=False)
    restored = run.restore_latest(ckpt, set_aside=False)  # damaged ones are reported, not moved
    ckpt.close()
    latest, state, personal_all = restored
  else:  # nothing trained, nothing checkpointed: the initial (empty) prompt tree
    latest, (state, personal_all) = 0, run.initial_state()
  state = mesh_lib.local_copy(state)
  return {"run": run, "round": int(latest), "params": run.global_params(state, personal_all),
          "extra": state.extra, "target": target, "aux": aux,
          "client": transfer.uniform_client(run.method, len(target.class_names))}


def evaluate_transfer(workdir: str, data: str, domains=(), attacks=(), examples: int = 0,
                      batch_size: int = 0, tfds_name: str = "", data_dir: str = "",
                      attributes_file: str = "") -> dict:
  """{"round", "source", "target", "classes", "clean_acc"[/<domain>], "robust_acc/..."}.

  `attacks`: specs; () = the run's adv.eval; ("none",) = clean accuracy only.
  """
  import jax  # pylint: disable=import-outside-toplevel
  from fedprompt_jax import evaluate, transfer  # pylint: disable=import-outside-toplevel
  from fedprompt_jax.attacks import make_attack  # pylint: disable=import-outside-toplevel

  clean_only = NO_ATTACK in attacks
  if clean_only and len(attacks) > 1:
    raise ValueError(f"--attack={NO_ATTACK} cannot be combined with other attacks")
  try:
    parsed = [] if clean_only else [make_attack(a) for a in attacks]
  except ValueError as e:
    raise ValueError(f"--attack: {e}") from None
  if examples < 0 or batch_size < 0:
    raise ValueError(f"--examples={examples} / --batch_size={batch_size}: must be >= 0")
  s = setup(workdir, data, domains, tfds_name, data_dir, attributes_file)
  run, target = s["run"], s["target"]
  c = run.c
  batch = batch_size or c.eval.batch_size
  args = (run.frozen, s["params"], s["aux"], s["extra"], s["client"])
  preds = evaluate.predict_split(run.predict, *args, target.test, batch)
  out = {"round": s["round"], "source": run.source.name, "target": target.name,
         "classes": len(target.class_names), "domains": list(target.domain_names or ()),
         "test_examples": len(target.test)}
  out.update(evaluate.accuracy_report(preds, target.test, target.domain_names, "clean_acc"))
  specs = [] if clean_only else list(attacks or c.adv.eval)
  out["attacks"] = specs
  if not specs:
    return out
  robust = run.make_robust(parsed if attacks else [make_attack(a) for a in c.adv.eval])
  out.update(transfer.robust_by_domain(robust, *args, target, examples or c.adv.eval_examples,
                                       batch_size or c.adv.eval_batch_size,
                                       jax.random.key(c.seed + 1)))
  return out


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  from fedprompt_jax.checkpoint import DamagedCheckpointsError  # pylint: disable=import-outside-toplevel
  from fedprompt_jax.config import ConfigError  # pylint: disable=import-outside-toplevel
  try:
    result = evaluate_transfer(_WORKDIR.value, _DATA.value, _DOMAINS.value, _ATTACKS.value,
                               _EXAMPLES.value, _BATCH.value, _TFDS_NAME.value, _DATA_DIR.value,
                               _ATTRIBUTES.value)
  except (ConfigError, DamagedCheckpointsError, ValueError, OSError) as e:
    print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
    return 1
  print(f"round {result['round']}: {result['source']} -> {result['target']} "
        f"({result['classes']} classes, {result['test_examples']} test examples)")
  for key, value in result.items():
    if key.startswith(("clean_acc", "robust_acc/")):
      print(f"  {key:<55} {100 * value:6.2f}%")
  name = target_name(_DATA.value, result["domains"] if _DATA.value == "shapes" else (),
                     _TFDS_NAME.value)
  out = os.path.join(_WORKDIR.value, f"transfer_{name}_round{result['round']}.json")
  from fedprompt_jax import atomic  # pylint: disable=import-outside-toplevel
  atomic.write_text(out, json.dumps(result, indent=2))
  print(f"wrote {out}")
  return 0


def _define_flags():
  """The command's flags, defined only when it runs as a command (importing it, as the tests
  and other scripts do, leaves absl's global flags alone)."""
  # pylint: disable=global-statement
  global _WORKDIR, _DATA, _DOMAINS, _TFDS_NAME, _DATA_DIR, _ATTACKS, _EXAMPLES, _BATCH, _ATTRIBUTES
  _WORKDIR = flags.DEFINE_string("workdir", None, "a run's output directory", required=True)
  _DATA = flags.DEFINE_string("data", None, "target data: shapes, digits or tfds", required=True)
  _DOMAINS = flags.DEFINE_list("domains", [], "shapes domains; default: those the run did not "
                               "train on")
  _TFDS_NAME = flags.DEFINE_string("tfds_name", "", "tfds data set (with --data=tfds)")
  _DATA_DIR = flags.DEFINE_string("data_dir", "", "tfds data_dir (with --data=tfds)")
  _ATTACKS = flags.DEFINE_multi_string("attack", [], "attack spec (attacks/spec.py); repeatable; "
                                       "default: the run's adv.eval; none = clean only")
  _ATTRIBUTES = flags.DEFINE_string("attributes_file", "", "the target's attribute sentences "
                                    "(FedMVP; JSON: class name -> list of sentences); default: "
                                    "the target's shipped file, or the run's for its own data")
  _EXAMPLES = flags.DEFINE_integer("examples", 0, "test examples attacked per domain; 0 = the "
                                   "run's adv.eval_examples")
  _BATCH = flags.DEFINE_integer("batch_size", 0, "evaluation batch (clean, and attacks when "
                                 "given); 0 = the run's eval.batch_size and adv.eval_batch_size")


if __name__ == "__main__":
  _define_flags()
  app.run(lambda argv: sys.exit(main(argv)))
