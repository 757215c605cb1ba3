"""PromptFL (CoOp in federated learning): learnable text context shared by all classes.

  python launch/run.py --config=configs/promptfl.py                 # embedded default (offline)
  python launch/run.py --config=configs/promptfl.py:cifar100        # paper-style setting
  python launch/run.py --config=configs/promptfl.py:at              # PromptFL+AT (adversarial)
"""

from fedprompt_jax import config as config_lib


def _cifar100(c):
  c.clip.checkpoint = "openai/clip-vit-base-patch16"
  c.data.source = "tfds"
  c.data.tfds_name = "cifar100"
  c.data.data_dir = "~/tensorflow_datasets"
  c.fed.num_clients = 100
  c.fed.clients_per_round = 10
  c.fed.rounds = 50
  c.fed.alpha = 0.1
  c.fed.batch_size = 32
  c.method.num_ctx = 16
  c.method.templates = ("a photo of a {}.",)


PRESETS = {"cifar100": _cifar100}


def get_config(arg=None):
  c = config_lib.default_config()
  c.method.name = "promptfl"
  c.method.num_ctx = 4
  c.method.ctx_init = "random"
  c.method.init_std = 0.02
  c.optim.lr = 0.05
  return config_lib.apply_arg(c, arg, PRESETS)
