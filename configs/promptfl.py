"""PromptFL (CoOp in federated learning): learnable text context shared by all classes.

  python launch/run.py --config=configs/promptfl.py                 # embedded default: world v2 (tinted)
  python launch/run.py --config=configs/promptfl.py:cifar100        # paper-style setting
  python launch/run.py --config=configs/promptfl.py:at              # PromptFL+AT (adversarial)
  python launch/run.py --config=configs/promptfl.py:dp              # client-level DP, epsilon <= 3
"""

from fedprompt_jax import config as config_lib


def _cifar100(c):
  config_lib.paper_setting(c, "cifar100")
  c.fed.rounds = 50
  c.method.num_ctx = 16


def _dp(c):
  """DP-FedAvg over 1,000 clients (config.many_clients_dp): (2.80, 1/1000^1.1)-DP in 20 rounds.

  Clip 0.3: about the median norm of the clients' deltas after the first rounds (0.27;
  0.8 in round 1). Noise z = 1.8 gives epsilon 2.80 after the 20 rounds (N = 1000, K = 50,
  delta = 1/1000^1.1); dp.target_epsilon = 3 stops a longer run before it spends more.
  """
  config_lib.many_clients_dp(c)
  c.dp.clip = 0.3
  c.dp.noise_multiplier = 1.8
  c.dp.target_epsilon = 3.0


PRESETS = {"at": config_lib.adversarial_training, "cifar100": _cifar100, "dp": _dp}


def get_config(arg=None):
  c = config_lib.default_config()
  config_lib.federated_world(c)  # world v2's three tinted domains, as configs/pep.py
  c.method.name = "promptfl"
  c.method.num_ctx = 4
  c.method.ctx_init = "random"
  c.method.init_std = 0.02
  c.optim.lr = 0.05
  return config_lib.apply_arg(c, arg, PRESETS)
