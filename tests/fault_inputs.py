"""The bad inputs of tests/test_faults.py: the tiny run's flags, damaged checkpoints, and
`Arena`, whose generators each draw one bad command line (and the damaged files it
needs) from a seeded random.Random, with the fragments its one error line must hold."""

import glob
import json
import os
import shutil
import sys

from safetensors.numpy import load_file, save_file

from clip_fixtures import fixture_dir
from fedprompt_jax import config as config_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "fedvpt.py")
ROUNDS = 6
FLAGS = [f"--config.clip.checkpoint={fixture_dir('clip_tiny_a')}", "--config.eval.check_zero_shot=False",
         f"--config.fed.rounds={ROUNDS}", "--config.eval.every=1",
         "--config.data.train_per_class_domain=2", "--config.data.test_per_class_domain=1",
         "--config.fed.num_clients=4", "--config.fed.clients_per_round=2",
         "--config.fed.local_steps=1", "--config.fed.batch_size=4", "--config.method.depth=2",
         "--config.method.num_tokens=8", "--config.optim.schedule=constant",
         "--config.adv.eval=()", "--config.adv.sanity_attack=", "--config.eval.personalized=False",
         "--config.eval.batch_size=64"]
RUN_FILES = ("config.json", "partition.npz", "partition.txt", "partition.png")


# Damage done to a checkpoint step folder.
def truncate(step):
  files = [f for f in glob.glob(f"{step}/**", recursive=True) if os.path.isfile(f)]
  biggest = max(files, key=os.path.getsize)
  os.truncate(biggest, os.path.getsize(biggest) // 2)


def garbage(step):
  files = [f for f in glob.glob(f"{step}/**", recursive=True) if os.path.isfile(f)]
  biggest = max(files, key=os.path.getsize)
  with open(biggest, "r+b") as f:
    f.seek(os.path.getsize(biggest) // 2)
    f.write(b"\xde\xad\xbe\xef" * 4)


def drop_metadata(step):
  os.remove(os.path.join(step, "default", "_METADATA"))


def empty(step):
  shutil.rmtree(step)
  os.makedirs(step)


DAMAGE = {"truncated": (truncate, "bytes,"), "garbage": (garbage, "differs from what was written"),
          "metadata_deleted": (drop_metadata, "default/_METADATA is missing"),
          "empty_folder": (empty, "its folder is empty")}


def _typo(rng, word):
  i = rng.randrange(len(word))
  op = rng.choice(("drop", "swap", "insert"))
  if op == "drop" and len(word) > 1:
    return word[:i] + word[i + 1:]
  if op == "swap" and i + 1 < len(word) and word[i] != word[i + 1]:
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]
  return word[:i] + rng.choice("xqz") + word[i:]


class Arena:
  """Where the bad inputs live: damaged copies of the reference run and of a CLIP checkpoint."""

  def __init__(self, root, reference, rng):
    self.root, self.reference, self.rng, self.count = root, reference, rng, 0
    sys.path.insert(0, REPO)
    from configs import fedvpt  # pylint: disable=import-outside-toplevel
    self.keys = config_lib.all_keys(fedvpt.get_config())
    self.presets = sorted(fedvpt.PRESETS)

  def fresh(self):
    self.count += 1
    return self.root / f"w{self.count}"

  def copy_run(self):
    workdir = self.fresh()
    shutil.copytree(self.reference, workdir)
    return workdir

  def case(self, extra, fragments, workdir=None, config=CONFIG):
    workdir = workdir or self.fresh()
    fragments = [fragments] if isinstance(fragments, str) else fragments
    return [f"--config={config}", f"--workdir={workdir}", *FLAGS, *extra], fragments

  # One generator per kind of bad input; each draws its details from self.rng.
  def value_out_of_range(self):
    key, value, fragment = self.rng.choice([
        ("fed.rounds", self.rng.randint(-3, 0), "must be an integer >= 1"),
        ("fed.alpha", -round(self.rng.random(), 3), "must be > 0"),
        ("eval.batch_size", self.rng.randint(-2, 0), "must be an integer >= 1"),
        ("fed.batch_size", 0, "must be an integer >= 1"),
        ("optim.lr", self.rng.choice(["0", "-0.1", "inf", "nan"]), "optim.lr="),
        ("optim.momentum", round(1 + self.rng.random(), 3), "must be a number >= 0 and < 1"),
        ("fed.test_fraction", round(1 + self.rng.random(), 3), "must be in (0, 1]"),
        ("seed", self.rng.randint(-9, -1), "must be an integer >= 0"),
        ("fed.clients_per_round", self.rng.randint(5, 50), "must be <= fed.num_clients=4"),
        ("adv.eval_examples", 0, "must be an integer >= 1"),
        ("fed.server_lr", 0.0, "must be a number > 0"),
        ("memory_budget_gb", self.rng.choice(["0", "-1.5"]), "must be a number > 0 (GB)"),
    ])
    return self.case([f"--config.{key}={value}"], fragment)

  def value_of_wrong_type(self):
    flag, fragment = self.rng.choice([
        ("--config.seed=abc", "--config.seed=abc"), ("--config.fed.rounds=1.5", "fed.rounds"),
        ("--config.fed.alpha=lots", "fed.alpha"), ("--config.eval.personalized=maybe", "personalized"),
    ])
    return self.case([flag], fragment)

  def arg_of_wrong_type(self):
    key, value = self.rng.choice([("seed", "1.5"), ("fed.rounds", "'six'"), ("fed.alpha", "'a'")])
    return self.case([], f"config key '{key}'={value}" if value != "'six'" else "'fed.rounds'",
                     config=f"{CONFIG}:{key}={value}")

  def unknown_key(self):
    key = self.rng.choice(self.keys)
    typo = _typo(self.rng, key)
    while typo in self.keys:
      typo = _typo(self.rng, key)
    if self.rng.random() < 0.5:
      return self.case([f"--config.{typo}=1"], f"config key '{typo}' does not exist; nearest: ")
    return self.case([], f"config key '{typo}' does not exist; nearest: ",
                     config=f"{CONFIG}:{typo}=1")

  def unknown_preset(self):
    name = _typo(self.rng, self.rng.choice(self.presets))
    return self.case([], f"config preset '{name}' is unknown; valid: ", config=f"{CONFIG}:{name}")

  def unknown_choice(self):
    key = self.rng.choice(["method.name", "fed.partition", "data.source", "optim.name",
                           "fed.weighting", "clip.dtype"])
    word = "".join(self.rng.choice("abcdefgh") for _ in range(6))
    return self.case([f"--config.{key}={word}"], f"{key}='{word}' is invalid; valid: ")

  def bad_attack_spec(self):
    spec = self.rng.choice(["pgd:linf:eps=abc", "nope:linf:eps=1/255", "pgd:l3:eps=1/255",
                            "pgd:linf:eps=-1/255", "pgd:linf:eps=1/255:steps=0",
                            "pgd:linf:eps=1/255:bogus=1", "fgsm:linf"])
    key = self.rng.choice(["adv.eval", "adv.train_attack", "adv.sanity_attack"])
    value = f"('{spec}',)" if key == "adv.eval" else spec
    return self.case([f"--config.{key}={value}"], f"{key}: ")

  def every_checkpoint_damaged(self, kind=None):
    workdir = self.copy_run()
    kinds = [kind or self.rng.choice(sorted(DAMAGE)), self.rng.choice(sorted(DAMAGE))]
    for step, k in zip(("6", "5"), kinds):
      DAMAGE[k][0](str(workdir / "ckpt" / step))
    return self.case([], [f"every checkpoint in {workdir}/ckpt is damaged: round 6 (",
                          DAMAGE[kinds[0]][1], "round 5 (", DAMAGE[kinds[1]][1],
                          "nothing was changed"], workdir=workdir)

  def damaged_clip(self):
    clip = self.fresh()
    shutil.copytree(fixture_dir("clip_tiny_a"), clip)
    kind = self.rng.choice(["no_config", "bad_json", "truncated_weights", "garbage_header",
                            "no_weights", "index_dotdot", "index_absolute", "index_bad",
                            "no_tokenizer", "pickle_only", "missing_tensor", "bad_activation"])
    weights = clip / "model.safetensors"
    if kind == "no_config":
      os.remove(clip / "config.json")
      fragment = "no config.json"
    elif kind == "bad_json":
      (clip / "config.json").write_text("{not json")
      fragment = "config.json"
    elif kind == "truncated_weights":
      os.truncate(weights, os.path.getsize(weights) // 3)
      fragment = "cannot read"
    elif kind == "garbage_header":
      with open(weights, "r+b") as f:
        f.write(bytes(self.rng.randrange(256) for _ in range(16)))
      fragment = "cannot read"
    elif kind == "no_weights":
      os.remove(weights)
      fragment = "no model.safetensors"
    elif kind in ("index_dotdot", "index_absolute", "index_bad"):
      os.rename(weights, clip / "model-00001-of-00001.safetensors")
      shard = {"index_dotdot": "../model-00001-of-00001.safetensors",
               "index_absolute": str(clip / "model-00001-of-00001.safetensors")}.get(kind)
      text = json.dumps({"weight_map": {"logit_scale": shard}}) if shard else "[1, 2"
      (clip / "model.safetensors.index.json").write_text(text)
      fragment = "plain file names" if shard else "is not a safetensors index"
    elif kind == "no_tokenizer":
      os.remove(clip / "vocab.json")
      fragment = "no tokenizer"
    elif kind == "pickle_only":
      os.remove(weights)
      (clip / "pytorch_model.bin").write_bytes(b"not unpickled")
      fragment = "pytorch_model.bin"
    elif kind == "missing_tensor":
      tensors = load_file(weights)
      del tensors[self.rng.choice(sorted(tensors))]
      save_file(tensors, weights, metadata={"format": "pt"})
      fragment = "1 missing ("
    else:
      text = (clip / "config.json").read_text().replace('"quick_gelu"', '"swish"', 1)
      (clip / "config.json").write_text(text)
      fragment = "hidden_act='swish'"
    return self.case([f"--config.clip.checkpoint={clip}"], fragment)

  def bad_workdir(self):
    afile = self.fresh()
    afile.write_text("a file")
    if self.rng.random() < 0.5:
      return self.case([], "is a file, not a directory", workdir=afile)
    return self.case([], "cannot be created", workdir=afile / "sub")

  def missing_config_file(self):
    path = os.path.join(REPO, "configs", _typo(self.rng, "fedvpt") + ".py")
    return self.case([], "does not exist; nearest: ", config=path)

  def bad_config_json(self):
    workdir = self.copy_run()
    if self.rng.random() < 0.5:
      (workdir / "config.json").write_text("{half a config")
      return self.case([], "config.json cannot be read", workdir=workdir)
    os.remove(workdir / "config.json")
    return self.case([], "holds run outputs (metrics.jsonl or ckpt/) but no config.json",
                     workdir=workdir)

  def memory_over_budget(self):
    """A memory plan over memory_budget_gb: refused before work, on a fresh run or a resume
    (the key may change on resume)."""
    workdir = self.copy_run() if self.rng.random() < 0.5 else None
    budget = self.rng.choice(["0.001", "0.002"])
    return self.case([f"--config.memory_budget_gb={budget}"],
                     ["memory plan ", f"exceeds memory_budget_gb={budget}"], workdir=workdir)

  def unprepared_tfds(self):
    data_dir = self.fresh()
    data_dir.mkdir()
    return self.case(["--config.data.source=tfds", "--config.data.tfds_name=cifar10",
                      f"--config.data.data_dir={data_dir}"], "prepare it once with: ")


GENERATORS = ("value_out_of_range", "value_of_wrong_type", "arg_of_wrong_type", "unknown_key",
              "unknown_preset", "unknown_choice", "bad_attack_spec", "every_checkpoint_damaged",
              "damaged_clip", "bad_workdir", "missing_config_file", "bad_config_json",
              "memory_over_budget", "unprepared_tfds")
