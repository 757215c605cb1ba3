"""FedAPT and its baselines in the setting of the "class information gap".

Embedded default: world v2's three tinted shapes domains (48 classes; config.federated_world),
24 label-disjoint clients holding 2 classes each, 6 per round, `fed.label_space=local` (a
client's loss and its training attack see only its own classes), PGD-AT in every local step (2 steps at 1/255), and
robust evaluation over all classes: PGD-10 and APGD-CE-20 at 1/255 and 2/255 and their
per-example worst case.

  python launch/run.py --config=configs/fedapt.py                  # FedAPT, embedded default
  python launch/run.py --config=configs/fedapt.py:maple            # federated MaPLe + AT
  python launch/run.py --config=configs/fedapt.py:promptfl         # PromptFL + AT
  python launch/run.py --config=configs/fedapt.py:fedvpt           # FedVPT (deep) + AT
  python launch/run.py --config=configs/fedapt.py:zeroshot         # zero-shot CLIP (no training)
  python launch/run.py --config=configs/fedapt.py:no_share         # ablation: one generator per layer
  python launch/run.py --config=configs/fedapt.py:no_gle           # ablation: generator without G
  python launch/run.py --config=configs/fedapt.py:global_labels    # no gap: clients see all classes
  python launch/run.py --config=configs/fedapt.py:no_at            # ablation: clean training
  python launch/run.py --config=configs/fedapt.py:cifar100         # ViT-B/16, CIFAR-100, eps 1/255
  python launch/run.py --config=configs/fedapt.py:cifar10+eps4+maple
  python launch/run.py --config=configs/fedapt.py:cifar100+vitb32+dirichlet,seed=1
  python launch/run.py --config=configs/fedapt.py:cifar100,data.tfds_name=food101   # another tfds set

Presets join with "+": the setting presets (data set, model, radius, partition, labels) are
applied first, then the method preset, whatever their order. Paper settings need the data
prepared with tfds and the checkpoint on disk or reachable; they are sized for an accelerator.
"""

from fedprompt_jax import config as config_lib


def _embedded(c) -> bool:
  return c.clip.checkpoint == "embedded"


# --- setting presets -------------------------------------------------------------------------

def _paper(c, tfds_name: str, num_clients: int, classes_per_client: int, per_round: int):
  """ViT-B/16, label-disjoint clients, PGD-AT at 1/255, PGD-100 (+ APGD-CE) evaluation at 1/255."""
  config_lib.paper_setting(c, tfds_name)
  c.fed.partition = "disjoint"
  c.fed.num_clients = num_clients
  c.fed.classes_per_client = classes_per_client
  c.fed.clients_per_round = per_round
  c.fed.rounds = 50
  c.method.depth = 9
  _radius(c, "1/255", "pgd:linf:eps=1/255:steps=2:step_size=1/255")
  c.adv.eval_examples = 1000


def _radius(c, eps: str, train_attack: str):
  c.adv.train_attack = train_attack
  c.adv.eval = (f"pgd:linf:eps={eps}:steps=100", f"apgd-ce:linf:eps={eps}:steps=20")


def _cifar10(c):
  _paper(c, "cifar10", num_clients=5, classes_per_client=2, per_round=5)


def _cifar100(c):
  _paper(c, "cifar100", num_clients=20, classes_per_client=5, per_round=10)


def _vitb32(c):
  c.clip.checkpoint = "openai/clip-vit-base-patch32"


def _eps4(c):
  """Train with PGD-4 at 4/255 (step 1/255); evaluate PGD-100 and APGD-CE at 4/255."""
  _radius(c, "4/255", "pgd:linf:eps=4/255:steps=4:step_size=1/255")


def _dirichlet(c):
  c.fed.partition = "dirichlet"
  c.fed.alpha = 0.1


def _global_labels(c):
  c.fed.label_space = "global"


SETTINGS = {"cifar10": _cifar10, "cifar100": _cifar100, "vitb32": _vitb32, "eps4": _eps4,
            "dirichlet": _dirichlet, "global_labels": _global_labels}


# --- method presets (baselines and ablations in the same setting) ----------------------------

def _maple(c):
  """Federated MaPLe + AT: V_l = Linear_l(T_l), one projection per layer, no G, no layer embedding."""
  c.method.generator = "linear"
  c.method.share_generator = False
  c.method.use_gle = False


def _no_share(c):
  c.method.share_generator = False


def _no_gle(c):
  c.method.use_gle = False


def _no_at(c):
  """No adversarial training (clean local steps); robust evaluation unchanged."""
  c.adv.train = "none"


def _promptfl(c):
  """PromptFL + AT: shallow text context (4 tokens on the tiny CLIP, 16 on a real one)."""
  c.method.name = "promptfl"
  c.method.num_ctx = 4 if _embedded(c) else 16
  c.method.ctx_init = "random"


def _fedvpt(c):
  """FedVPT (deep) + AT: 32 tokens x 4 layers on the tiny CLIP (configs/fedvpt.py), 8 x 9 on ViT-B."""
  c.method.name = "fedvpt"
  c.method.num_tokens = 32 if _embedded(c) else 8
  c.method.depth = 4 if _embedded(c) else 9


def _zeroshot(c):
  c.method.name = "zeroshot"
  c.adv.train = "none"


ABLATIONS = {"no_share": _no_share, "no_gle": _no_gle, "no_at": _no_at}
METHODS = {"maple": _maple, "promptfl": _promptfl, "fedvpt": _fedvpt, "zeroshot": _zeroshot}
# Single presets; any of them joined with '+' ("cifar10+eps4+no_gle") also works.
PRESETS = dict(SETTINGS, **ABLATIONS, **METHODS)


def _combined(name: str):
  """"a+b+c" -> one preset applying the setting presets, then the ablations, then the method."""
  parts = name.split("+")
  groups = (SETTINGS, ABLATIONS, METHODS)
  valid = [n for group in groups for n in sorted(group)]
  for part in parts:
    if part not in valid:
      raise config_lib.ConfigError(f"config preset {part!r} is unknown; valid: "
                                   f"{', '.join(valid)} (joined with '+')")
  if sum(part in METHODS for part in parts) > 1:
    raise config_lib.ConfigError(f"config preset {name!r} names more than one method preset; "
                                 f"valid: at most one of {', '.join(sorted(METHODS))}")

  def apply(c):
    rank = lambda p: next(i for i, group in enumerate(groups) if p in group)
    for part in sorted(parts, key=rank):  # stable: presets of one group keep their order
      next(group for group in groups if part in group)[part](c)

  return apply


def get_config(arg=None):
  c = config_lib.default_config()
  config_lib.federated_world(c)  # world v2's three tinted domains, as configs/pep.py
  c.fed.partition = "disjoint"
  c.fed.num_clients = 24
  c.fed.classes_per_client = 2
  c.fed.clients_per_round = 6
  c.fed.label_space = "local"
  c.method.name = "fedapt"
  c.method.num_ctx = 2            # M
  c.method.depth = 9              # J, capped by the shallower tower (3 on the tiny CLIP)
  c.method.init_std = 0.02
  c.method.generator = "attention"
  c.method.share_generator = True
  c.method.use_gle = True
  c.method.gle_trainable = False
  c.method.heads = 4
  c.method.mlp_ratio = 2
  c.optim.name = "adam"
  c.optim.lr = 0.01
  c.optim.schedule = "cosine"
  config_lib.adversarial_training(c)  # PGD-AT 2 steps at 1/255; adds APGD-CE-20 per radius
  presets = dict(PRESETS)
  first = (arg or "").split(",")[0]
  if first and "=" not in first and first not in presets:
    presets[first] = _combined(first)
  return config_lib.apply_arg(c, arg, presets)
