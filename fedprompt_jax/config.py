"""The default experiment config (ml_collections) and its validation.

Every `configs/<method>.py` starts from `default_config()` and changes what its
method needs. `validate` runs before anything is written to the workdir and
raises `ConfigError` with one line naming the key, the value and what is valid.
"""

from __future__ import annotations

import ast
import difflib
import math
from typing import Any

import ml_collections

from fedprompt_jax.assets import world

PARTITIONS = ("iid", "dirichlet", "disjoint", "shards", "domains", "domain_dirichlet")
SOURCES = ("shapes", "digits", "tfds")
STORAGES = ("memory", "array_record")  # data.storage; tfds_source.STORAGES
CLIENT_OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("constant", "cosine")
WEIGHTINGS = ("examples", "uniform")
DTYPES = ("float32", "bfloat16")


class ConfigError(ValueError):
  """A config value that cannot run; the message is one line."""


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  # The memory a run may plan to use, in GB (1e9 bytes): before any work the run prints its
  # memory plan (memory_plan.py) and stops with one line naming the batch key to lower when
  # the plan exceeds this. None = the device's memory, or the host's on CPU.
  c.memory_budget_gb = ml_collections.FieldReference(None, field_type=float)

  c.clip = ml_collections.ConfigDict()
  c.clip.checkpoint = "embedded"   # "embedded", a transformers-format dir, or a hub name
  c.clip.dtype = "float32"
  c.clip.remat = False

  c.data = ml_collections.ConfigDict()
  c.data.source = "shapes"
  c.data.train_per_class_domain = 40   # shapes
  c.data.test_per_class_domain = 10    # shapes
  c.data.domains = ml_collections.FieldReference(None, field_type=tuple)  # shapes: None = all
  c.data.tfds_name = ""
  c.data.tfds_train_split = "train"
  c.data.tfds_test_split = "test"   # the labelled held-out split ("validation" where no test)
  c.data.data_dir = ""
  c.data.max_examples = ml_collections.FieldReference(None, field_type=int)
  # tfds data sets whose domains are builder configs (DomainNet): one config per domain.
  c.data.tfds_domain_configs = ()
  # Base-to-novel: train on the first half of the classes; global_acc is then base accuracy,
  # novel_acc the other half (never trained on), base_novel_hm their harmonic mean.
  c.data.base_novel = False
  # Attribute sentences per class (FedMVP): a JSON file {class name: [sentences]}; "" = the
  # data set's shipped file (assets/attributes/<name>.json: shapes, digits), if any.
  c.data.attributes_file = ""
  # A method whose image path has nothing trainable (PromptFL) trains and cleanly evaluates from
  # image features computed once per split (feature_cache.py); off by itself under adversarial
  # training, with the reason in the log. False runs the frozen tower at every step.
  c.data.cache_frozen_features = True
  # Where a tfds set's images live: "memory" decodes all of them into host memory at load;
  # "array_record" leaves them in the ArrayRecord files and reads (decodes, resizes) only the
  # rows each round or evaluation batch needs, for sets larger than host memory
  # (data/stored_images.py). The same rows either way, so the same results.
  c.data.storage = "memory"
  # Images are held on the host (uint8) at storage_size x storage_size and resized to the
  # model's side on device, inside the jitted round and evaluation (bicubic, antialiased when
  # downsampling; data/transforms.py). None = the model's side (no resize).
  c.data.storage_size = ml_collections.FieldReference(None, field_type=int)
  # Training augmentation on device, per client and local step: "none" or "crop_flip" (random
  # resized crop of area fraction in crop_scale, aspect 3/4..4/3, then a left-right flip with
  # probability 1/2). Never in evaluation; turns the frozen-feature cache off.
  c.data.augment = "none"
  c.data.crop_scale = (0.08, 1.0)   # CoOp's (torchvision's default RandomResizedCrop scale)

  c.fed = ml_collections.ConfigDict()
  c.fed.num_clients = 20
  c.fed.clients_per_round = 5
  c.fed.rounds = 20
  c.fed.partition = "dirichlet"
  c.fed.alpha = 0.1
  c.fed.classes_per_client = 2
  c.fed.shards_per_client = 2
  c.fed.domains_per_client = 1
  c.fed.shots = ml_collections.FieldReference(None, field_type=int)
  c.fed.min_size = 2
  c.fed.test_fraction = 0.25
  c.fed.local_steps = 8
  # Local epochs (None = fed.local_steps fixed steps): client k runs local_epochs x
  # ceil(n_k / batch_size) steps, each epoch a fresh pass with a partial last batch; the
  # round pads S to its longest client (data/federated.py) and caps it at max_local_steps.
  c.fed.local_epochs = ml_collections.FieldReference(None, field_type=int)
  c.fed.max_local_steps = 256
  c.fed.batch_size = 32
  c.fed.weighting = "examples"
  c.fed.server_optimizer = "fedavg"
  c.fed.server_lr = 1.0
  c.fed.local_only = False
  # Classes a client's training loss and training-time attack see: "global" (all C) or "local"
  # (those in its own train split; methods/label_space.py). Evaluation of the global model is
  # always over all classes.
  c.fed.label_space = "global"
  # Extra clients that never train, evaluated as new clients (prior from their own labels).
  c.fed.new_clients = 0
  c.fed.chunk = -1   # clients vmapped at once per device; -1 = the backend's default
  # Rounds of inputs built ahead on a host thread while a round runs (fed/prefetch.py); with
  # 1 or 2 a round's loss is also read back only after the next round is dispatched. 0 = all
  # in order on the main thread. Speed only: the results are identical.
  c.fed.prefetch = 1

  c.optim = ml_collections.ConfigDict()
  c.optim.name = "sgd"
  c.optim.lr = 0.05
  c.optim.momentum = 0.9
  c.optim.weight_decay = 0.0
  # The clients' learning rate over rounds: constant, or cosine from lr (round 1) towards 0
  # (the last round runs at lr * (1 + cos(pi (R-1)/R)) / 2).
  c.optim.schedule = "constant"

  c.method = ml_collections.ConfigDict()
  c.method.name = "promptfl"
  c.method.templates = world.ZEROSHOT_TEMPLATES

  c.adv = ml_collections.ConfigDict()
  c.adv.train = "none"   # none | pgd (PGD-AT) | trades
  c.adv.train_attack = "pgd:linf:eps=1/255:steps=2:step_size=1/255"  # spec: attacks/spec.py
  c.adv.trades_beta = 6.0
  # With train=trades the inner attack is TRADES' by construction: PGD on KL(p(x) || p(x')) from
  # x + 0.001 N(0, 1), taking eps, norm, steps and step_size from train_attack (a pgd spec with no
  # loss option, or loss=kl). A train_attack naming another loss (loss=ce, cw), another attack
  # (fgsm, apgd-*), random_start=false or targeted=true is refused unless this flag is True,
  # which uses it as written (e.g. CE-PGD inside TRADES' outer loss).
  c.adv.trades_any_inner_attack = False
  # Robust evaluation of every run: attack specs; clean, each attack and the per-example
  # worst case are reported on the first `eval_examples` global test examples.
  c.adv.eval = ("pgd:linf:eps=1/255:steps=10",)
  c.adv.eval_examples = 256
  # Which `eval_examples` test examples: "first" (rows 0..n-1) or "stratified" (a sample spread
  # evenly over the (class, domain) cells, seeded by `eval_subset_seed`, the same for every
  # method and run seed; eval_subset.py).
  c.adv.eval_subset = "first"
  c.adv.eval_subset_seed = 0
  # At which evaluations: "every" (each of them, round 0 included) or "final" (the last
  # round's only; a comparison that reports final figures spends no time on the others).
  c.adv.eval_rounds = "every"
  # Examples per attack batch (its own size: an attack's backward pass keeps every layer's
  # activations, so on a real-size CLIP it needs a smaller batch than clean evaluation). The
  # last batch is padded only to the next power of two (>= 8) that holds what is left.
  c.adv.eval_batch_size = 64
  # Gradient-masking check (attacks/sanity.py): this large-radius attack on the first
  # `sanity_examples` of those examples must leave robust accuracy near 0; "" skips it (the
  # monotonicity and loss-rise checks cost nothing and always run).
  c.adv.sanity_attack = "pgd:linf:eps=16/255:steps=20"
  c.adv.sanity_examples = 64

  # Client-level DP-FedAvg (fedprompt_jax/privacy/settings.py; README "Differential privacy").
  c.dp = ml_collections.ConfigDict()
  c.dp.enabled = False
  c.dp.clip = 1.0                 # L2 bound of each client's shared delta
  c.dp.noise_multiplier = 1.0     # z: noise std z * clip on the sum of clipped deltas
  c.dp.delta = ml_collections.FieldReference(None, field_type=float)  # None: 1 / N^1.1
  c.dp.target_epsilon = ml_collections.FieldReference(None, field_type=float)  # None: no budget
  c.dp.stats_clip = ml_collections.FieldReference(None, field_type=float)  # PEP's statistics

  c.eval = ml_collections.ConfigDict()
  c.eval.every = 5
  c.eval.batch_size = 256
  c.eval.personalized = True
  c.eval.check_zero_shot = True   # stop if zero-shot accuracy is at or below chance
  return c


def paper_setting(c: ml_collections.ConfigDict, tfds_name: str) -> None:
  """The common part of the papers' settings: ViT-B/16 CLIP, a tfds data set, 100 clients, 10%."""
  c.clip.checkpoint = "openai/clip-vit-base-patch16"
  c.data.source = "tfds"
  c.data.tfds_name = tfds_name
  c.data.domains = None
  c.data.data_dir = "~/tensorflow_datasets"
  c.fed.num_clients = 100
  c.fed.clients_per_round = 10
  c.fed.batch_size = 32
  c.method.templates = ("a photo of a {}.",)
  c.adv.eval = default_config().adv.eval


def federated_world(c: ml_collections.ConfigDict) -> None:
  """The embedded default of every method: world v2's three tinted domains, federated together.

  Shapes `tinted_photo`, `tinted_sketch` and `tinted_noisy` (world.FEDERATED_DOMAINS): the
  pretraining domains seen through one colour cast the tiny CLIP never saw. Zero-shot is
  25-65% on each and one 16-shot deep visual prompt trained on the three gains 19-33 points
  on each (README "Room for prompts"), the situation of real CLIP on a shifted data set,
  where prompt tuning gains most. `tinted_pattern` (world.UNSEEN_DOMAIN) stays out, for
  cross-domain evaluation. The sizes are the default's (40 training and 10 test images per
  class and domain), so every embedded default sees the same data as the main command.
  """
  c.data.domains = world.FEDERATED_DOMAINS
  # Robust accuracy at two radii: the training radius of the "+AT" presets and twice it.
  c.adv.eval = ("pgd:linf:eps=1/255:steps=10", "pgd:linf:eps=2/255:steps=10")


def adversarial_training(c: ml_collections.ConfigDict) -> None:
  """The "+AT" baselines: PGD-AT in every local step (2 steps at eps 1/255, FedAPT's recipe).

  Robust evaluation adds APGD-CE at every radius the config already evaluates with PGD.
  """
  c.adv.train = "pgd"
  c.adv.train_attack = "pgd:linf:eps=1/255:steps=2:step_size=1/255"
  add_apgd_ce(c)


def add_apgd_ce(c: ml_collections.ConfigDict) -> None:
  """Adds APGD-CE-20 to `adv.eval` at every L-inf radius it evaluates with PGD.

  The `:at` presets' evaluation, for a clean-trained run that is compared with them.
  """
  from fedprompt_jax.attacks.spec import options  # pylint: disable=g-import-not-at-top
  radii = [opts["eps"] for attack, opts in map(options, c.adv.eval)
           if attack == "pgd" and str(opts.get("norm", "linf")).lower() == "linf"]
  c.adv.eval = tuple(c.adv.eval) + tuple(f"apgd-ce:linf:eps={eps}:steps=20" for eps in radii)


def many_clients_dp(c: ml_collections.ConfigDict) -> None:
  """The `dp` presets' federation: client-level DP-FedAvg where it has a chance.

  1,000 clients with a few images each (iid), 50 sampled a round (q = 0.05), 20 rounds,
  uniform weights (DP requires them), 2 local steps of batch 8. The noise each round adds
  to the mean update shrinks with the clients per round while the privacy each round spends
  grows with the sampling rate, so what buys accuracy at a fixed epsilon is N (README
  "Differential privacy"). Each config sets the clip (about the median norm of its clients'
  deltas) and the noise multiplier for its budget.
  """
  c.fed.num_clients = 1000
  c.fed.clients_per_round = 50
  c.fed.partition = "iid"
  c.fed.weighting = "uniform"
  c.fed.rounds = 20
  c.fed.local_steps = 2
  c.fed.batch_size = 8
  c.eval.every = 5
  c.eval.personalized = False  # 1,000 clients' personalised evaluation would dominate the run
  c.dp.enabled = True


def load_run_config(path: str) -> ml_collections.ConfigDict:
  """The config a run wrote (`<workdir>/config.json`), with JSON lists back as tuples."""
  import json  # pylint: disable=g-import-not-at-top

  def tuples(value):
    if isinstance(value, list):
      return tuple(tuples(v) for v in value)
    if isinstance(value, dict):
      return {k: tuples(v) for k, v in value.items()}
    return value

  with open(path) as f:
    saved = tuples(json.load(f))
  c = default_config()
  for section, values in saved.items():
    if isinstance(values, dict):
      for key, value in values.items():
        c[section][key] = value
    else:
      c[section] = values
  return c


def _fail(key: str, value, valid: str):
  raise ConfigError(f"{key}={value!r} is invalid; {valid}")


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_range(c: ml_collections.ConfigDict, key: str, low: float, high: float | None = None,
                 low_open: bool = False, integer: bool = False) -> None:
  """`key` must be a finite number (an int if `integer`) in [low, high) ((low, high) if low_open)."""
  section, name = key.split(".")
  value = c[section][name]
  kind = "an integer" if integer else "a number"
  ok = (isinstance(value, int) and not isinstance(value, bool)) if integer else _is_number(value)
  low_ok = ok and (value > low if low_open else value >= low)
  if not (low_ok and (high is None or value < high)):
    bound = f"> {low:g}" if low_open else f">= {low:g}"
    upper = f" and < {high:g}" if high is not None else ""
    _fail(key, value, f"must be {kind} {bound}{upper}")


def all_keys(c: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """Dotted names of every leaf of a config ('fed.alpha', ...)."""
  out = []
  for name, value in c.items():
    if isinstance(value, ml_collections.ConfigDict):
      out += all_keys(value, f"{prefix}{name}.")
    else:
      out.append(f"{prefix}{name}")
  return out


def nearest(word: str, candidates: list[str], n: int = 3) -> list[str]:
  """The candidates closest to `word` (difflib), best first; the n closest if none is close."""
  near = difflib.get_close_matches(word, candidates, n=n, cutoff=0.6)
  if near:
    return near
  section = word.rsplit(".", 1)[0] + "." if "." in word else ""
  pool = [k for k in candidates if k.startswith(section)] or candidates
  return difflib.get_close_matches(word, pool, n=n, cutoff=0.0)


def unknown_key_error(c: ml_collections.ConfigDict, key: str) -> ConfigError:
  return ConfigError(f"config key {key!r} does not exist; nearest: "
                     f"{', '.join(nearest(key, all_keys(c)))}")


def validate(c: ml_collections.ConfigDict) -> None:
  """Checks every value the run depends on; raises ConfigError (one line)."""
  from fedprompt_jax.methods import REGISTRY  # pylint: disable=g-import-not-at-top
  if c.method.name not in REGISTRY:
    _fail("method.name", c.method.name, f"valid: {', '.join(sorted(REGISTRY))}")
  if c.data.source not in SOURCES:
    _fail("data.source", c.data.source, f"valid: {', '.join(SOURCES)}")
  if c.data.storage not in STORAGES:
    _fail("data.storage", c.data.storage, f"valid: {', '.join(STORAGES)}")
  if c.data.storage != "memory" and c.data.source != "tfds":
    _fail("data.storage", c.data.storage, f"needs data.source='tfds' (data.source="
          f"{c.data.source!r} is generated in memory)")
  if c.data.source == "tfds" and not (c.data.tfds_name and c.data.data_dir):
    _fail("data.tfds_name", c.data.tfds_name, "data.source='tfds' needs data.tfds_name and "
          "data.data_dir")
  if c.fed.partition not in PARTITIONS:
    _fail("fed.partition", c.fed.partition, f"valid: {', '.join(PARTITIONS)}")
  if c.fed.partition in ("dirichlet", "domain_dirichlet") and not c.fed.alpha > 0:
    _fail("fed.alpha", c.fed.alpha, "must be > 0")
  if c.fed.local_epochs is not None and (not isinstance(c.fed.local_epochs, int)
                                         or c.fed.local_epochs < 1):
    _fail("fed.local_epochs", c.fed.local_epochs, "must be an integer >= 1, or None for "
          "fed.local_steps fixed steps")
  for key in ("num_clients", "clients_per_round", "rounds", "local_steps", "max_local_steps",
              "batch_size",
              "classes_per_client", "shards_per_client", "domains_per_client", "min_size"):
    value = c.fed[key]
    if not isinstance(value, int) or value < 1:
      _fail(f"fed.{key}", value, "must be an integer >= 1")
  if not isinstance(c.fed.new_clients, int) or c.fed.new_clients < 0:
    _fail("fed.new_clients", c.fed.new_clients, "must be an integer >= 0")
  if c.fed.clients_per_round > c.fed.num_clients:
    _fail("fed.clients_per_round", c.fed.clients_per_round,
          f"must be <= fed.num_clients={c.fed.num_clients}")
  if c.fed.shots is not None and c.fed.shots < 1:
    _fail("fed.shots", c.fed.shots, "must be >= 1 or None")
  if not 0 < c.fed.test_fraction <= 1:
    _fail("fed.test_fraction", c.fed.test_fraction, "must be in (0, 1]")
  from fedprompt_jax.methods.label_space import LABEL_SPACES  # pylint: disable=g-import-not-at-top
  if c.fed.label_space not in LABEL_SPACES:
    _fail("fed.label_space", c.fed.label_space, f"valid: {', '.join(LABEL_SPACES)}")
  if c.fed.weighting not in WEIGHTINGS:
    _fail("fed.weighting", c.fed.weighting, f"valid: {', '.join(WEIGHTINGS)}")
  from fedprompt_jax.fed.server import SERVER_OPTIMIZERS  # pylint: disable=g-import-not-at-top
  if c.fed.server_optimizer not in SERVER_OPTIMIZERS:
    _fail("fed.server_optimizer", c.fed.server_optimizer,
          f"valid: {', '.join(SERVER_OPTIMIZERS)}")
  if c.fed.chunk != -1 and c.fed.chunk < 1:
    _fail("fed.chunk", c.fed.chunk, "must be >= 1, or -1 for the backend default")
  if c.fed.prefetch not in (0, 1, 2) or isinstance(c.fed.prefetch, bool):
    _fail("fed.prefetch", c.fed.prefetch, "valid: 0 (off), 1 or 2 rounds built ahead")
  if c.optim.name not in CLIENT_OPTIMIZERS:
    _fail("optim.name", c.optim.name, f"valid: {', '.join(CLIENT_OPTIMIZERS)}")
  _check_range(c, "optim.lr", 0, low_open=True)
  _check_range(c, "optim.momentum", 0, 1)
  _check_range(c, "optim.weight_decay", 0)
  _check_range(c, "fed.server_lr", 0, low_open=True)
  _check_range(c, "adv.trades_beta", 0)
  for key in ("data.train_per_class_domain", "data.test_per_class_domain", "eval.batch_size"):
    _check_range(c, key, 1, integer=True)
  if not isinstance(c.data.cache_frozen_features, bool):
    _fail("data.cache_frozen_features", c.data.cache_frozen_features, "valid: True, False")
  size = c.data.storage_size
  if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
    _fail("data.storage_size", size, "must be an integer >= 1 (pixels), or None for the "
          "model's side")
  from fedprompt_jax.data.transforms import AUGMENTS  # pylint: disable=g-import-not-at-top
  if c.data.augment not in AUGMENTS:
    _fail("data.augment", c.data.augment, f"valid: {', '.join(AUGMENTS)}")
  scale = c.data.crop_scale
  if not (isinstance(scale, (tuple, list)) and len(scale) == 2 and all(map(_is_number, scale))
          and 0 < scale[0] <= scale[1] <= 1):
    _fail("data.crop_scale", scale, "must be two numbers (low, high) with 0 < low <= high <= 1")
  if c.data.max_examples is not None and c.data.max_examples < 1:
    _fail("data.max_examples", c.data.max_examples, "must be >= 1, or None for all")
  if c.optim.schedule not in LR_SCHEDULES:
    _fail("optim.schedule", c.optim.schedule, f"valid: {', '.join(LR_SCHEDULES)}")
  if c.clip.dtype not in DTYPES:
    _fail("clip.dtype", c.clip.dtype, f"valid: {', '.join(DTYPES)}")
  if not isinstance(c.eval.every, int) or c.eval.every < 1:
    _fail("eval.every", c.eval.every, "must be an integer >= 1")
  from fedprompt_jax.attacks import make_attack  # pylint: disable=g-import-not-at-top
  from fedprompt_jax.methods.adversarial import (  # pylint: disable=g-import-not-at-top
      MODES, TRADES_INNER, trades_inner_problem)
  if c.adv.train not in MODES:
    _fail("adv.train", c.adv.train, f"valid: {', '.join(MODES)}")
  if not isinstance(c.adv.sanity_attack, str):
    _fail("adv.sanity_attack", c.adv.sanity_attack, "must be an attack spec string, or '' to skip")
  for key, specs in (("adv.train_attack", [c.adv.train_attack]), ("adv.eval", list(c.adv.eval)),
                     ("adv.sanity_attack", [c.adv.sanity_attack] if c.adv.sanity_attack else [])):
    for spec in specs:
      try:
        make_attack(spec)
      except ValueError as e:
        raise ConfigError(f"{key}: {e}") from None
  if not isinstance(c.adv.trades_any_inner_attack, bool):
    _fail("adv.trades_any_inner_attack", c.adv.trades_any_inner_attack, "valid: True, False")
  if c.adv.train == "trades" and not c.adv.trades_any_inner_attack:
    problem = trades_inner_problem(c.adv.train_attack)
    if problem is not None:
      _fail("adv.train_attack", c.adv.train_attack,
            f"with adv.train='trades' it {problem}; valid: {TRADES_INNER}, or "
            "adv.trades_any_inner_attack=True to use it as written")
  if not isinstance(c.adv.eval_examples, int) or c.adv.eval_examples < 1:
    _fail("adv.eval_examples", c.adv.eval_examples, "must be an integer >= 1")
  if not isinstance(c.adv.sanity_examples, int) or c.adv.sanity_examples < 1:
    _fail("adv.sanity_examples", c.adv.sanity_examples, "must be an integer >= 1")
  if not isinstance(c.adv.eval_batch_size, int) or c.adv.eval_batch_size < 1:
    _fail("adv.eval_batch_size", c.adv.eval_batch_size, "must be an integer >= 1")
  if c.adv.eval_subset not in ("first", "stratified"):
    _fail("adv.eval_subset", c.adv.eval_subset, "must be 'first' or 'stratified'")
  if (not isinstance(c.adv.eval_subset_seed, int) or isinstance(c.adv.eval_subset_seed, bool)
      or c.adv.eval_subset_seed < 0):
    _fail("adv.eval_subset_seed", c.adv.eval_subset_seed, "must be an integer >= 0")
  if c.adv.eval_rounds not in ("every", "final"):
    _fail("adv.eval_rounds", c.adv.eval_rounds, "must be 'every' or 'final'")
  if not isinstance(c.seed, int) or isinstance(c.seed, bool) or c.seed < 0:
    _fail("seed", c.seed, "must be an integer >= 0")
  budget = c.memory_budget_gb
  if budget is not None and not (_is_number(budget) and budget > 0):
    _fail("memory_budget_gb", budget, "must be a number > 0 (GB), or None for the device's "
          "(on CPU the host's) memory")
  from fedprompt_jax.privacy import settings as dp_settings  # pylint: disable=g-import-not-at-top
  dp_settings.validate(c)


def apply_arg(c: ml_collections.ConfigDict, arg: str | None,
              presets: dict[str, Any]) -> ml_collections.ConfigDict:
  """Applies `configs/x.py:ARG`: an optional preset name, then comma-separated key=value pairs.

  e.g. "cifar100,fed.alpha=0.3,seed=2". Values are Python literals (strings may be bare).
  """
  if not arg:
    return c
  parts = [p for p in arg.split(",") if p]
  if parts and "=" not in parts[0]:
    name = parts.pop(0)
    if name not in presets:
      raise ConfigError(f"config preset {name!r} is unknown; valid: {', '.join(sorted(presets))} "
                        f"(nearest: {', '.join(nearest(name, sorted(presets)))})")
    presets[name](c)
  for part in parts:
    if "=" not in part:
      raise ConfigError(f"config argument {part!r} is not key=value")
    key, raw = part.split("=", 1)
    try:
      value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      value = raw
    *sections, leaf = key.split(".")
    target = c
    for name in sections:
      if not isinstance(target, ml_collections.ConfigDict) or name not in target:
        raise unknown_key_error(c, key)
      target = target[name]
    if not isinstance(target, ml_collections.ConfigDict) or leaf not in target:
      raise unknown_key_error(c, key)
    try:
      target[leaf] = value
    except (TypeError, ValueError):
      raise ConfigError(f"config key {key!r}={value!r} has type {type(value).__name__}; the "
                        f"key holds {type(target[leaf]).__name__}") from None
  return c
