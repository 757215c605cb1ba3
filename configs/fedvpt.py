"""FedVPT: learnable visual prompt tokens (shallow, or deep over the first J layers).

Embedded default: deep prompts of 32 tokens in the tiny CLIP's 4 layers, Adam 0.01 with a
cosine over 20 rounds, adapting to the held-out falsecolour domain; `:at` adds PGD-AT.

  python launch/run.py --config=configs/fedvpt.py                   # embedded default (falsecolour), deep
  python launch/run.py --config=configs/fedvpt.py:shallow
  python launch/run.py --config=configs/fedvpt.py:cifar100
  python launch/run.py --config=configs/fedvpt.py:at                # FedVPT+AT (adversarial)
"""

from fedprompt_jax import config as config_lib


def _shallow(c):
  c.method.depth = 0


def _cifar100(c):
  config_lib.paper_setting(c, "cifar100")
  c.fed.rounds = 50
  c.method.depth = 12


PRESETS = {"at": config_lib.adversarial_training, "shallow": _shallow, "cifar100": _cifar100}


def get_config(arg=None):
  c = config_lib.default_config()
  config_lib.heldout_domain(c)  # shapes, falsecolour only: the held-out target domain
  c.method.name = "fedvpt"
  # 32 tokens in each of the 4 layers (12,288 parameters), Adam with a cosine over rounds:
  # adversarial training needs the capacity (at 8 tokens PGD-AT ends no more robust than
  # clean training; README "Adversarial training"), and clean training loses nothing by it.
  c.method.num_tokens = 32
  c.method.depth = 4
  c.method.init_std = 0.02
  c.optim.name = "adam"
  c.optim.lr = 0.01
  c.optim.schedule = "cosine"
  return config_lib.apply_arg(c, arg, PRESETS)
