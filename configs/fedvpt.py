"""FedVPT: learnable visual prompt tokens (shallow, or deep over the first J layers).

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
  c.method.num_tokens = 8
  c.method.depth = 4
  c.method.init_std = 0.02
  c.optim.lr = 0.05
  return config_lib.apply_arg(c, arg, PRESETS)
