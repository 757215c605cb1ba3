"""PromptFL (CoOp in federated learning): learnable text context shared by all classes.

  python launch/run.py --config=configs/promptfl.py                 # embedded default: held-out falsecolour
  python launch/run.py --config=configs/promptfl.py:cifar100        # paper-style setting
  python launch/run.py --config=configs/promptfl.py:at              # PromptFL+AT (adversarial)
"""

from fedprompt_jax import config as config_lib


def _cifar100(c):
  config_lib.paper_setting(c, "cifar100")
  c.fed.rounds = 50
  c.method.num_ctx = 16


PRESETS = {"at": config_lib.adversarial_training, "cifar100": _cifar100}


def get_config(arg=None):
  c = config_lib.default_config()
  config_lib.heldout_domain(c)  # shapes, falsecolour only: the held-out target domain
  c.method.name = "promptfl"
  c.method.num_ctx = 4
  c.method.ctx_init = "random"
  c.method.init_std = 0.02
  c.optim.lr = 0.05
  return config_lib.apply_arg(c, arg, PRESETS)
