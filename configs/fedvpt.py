"""FedVPT: learnable visual prompt tokens (shallow, or deep over the first J layers).

Embedded default: deep prompts of 32 tokens in the tiny CLIP's 4 layers, Adam 0.01 with a
cosine over 20 rounds, on world v2's three tinted domains (config.federated_world); `:at` adds
PGD-AT.

  python launch/run.py --config=configs/fedvpt.py                   # embedded default (world v2), deep
  python launch/run.py --config=configs/fedvpt.py:shallow
  python launch/run.py --config=configs/fedvpt.py:cifar100
  python launch/run.py --config=configs/fedvpt.py:at                # FedVPT+AT (adversarial)
  python launch/run.py --config=configs/fedvpt.py:apgd              # clean training, :at's attacks
  python launch/run.py --config=configs/fedvpt.py:dp                # client-level DP, epsilon <= 3
"""

from fedprompt_jax import config as config_lib


def _shallow(c):
  c.method.depth = 0


def _cifar100(c):
  config_lib.paper_setting(c, "cifar100")
  c.fed.rounds = 50
  c.method.depth = 12


def _dp(c):
  """DP-FedAvg over 1,000 clients (config.many_clients_dp): (2.80, 1/1000^1.1)-DP in 20 rounds.

  8 tokens in each of the 4 layers (3,072 parameters, not 12,288: the noise grows with the
  dimension while the clipped signal does not). Adam's two local steps move every client
  by about the same norm (0.85 here), so clip 0.5 clips all of them alike. Noise z = 1.8:
  epsilon 2.80 after the 20 rounds; dp.target_epsilon = 3 guards longer runs.
  """
  config_lib.many_clients_dp(c)
  c.method.num_tokens = 8
  c.dp.clip = 0.5
  c.dp.noise_multiplier = 1.8
  c.dp.target_epsilon = 3.0


PRESETS = {"at": config_lib.adversarial_training, "apgd": config_lib.add_apgd_ce,
           "shallow": _shallow, "cifar100": _cifar100, "dp": _dp}


def get_config(arg=None):
  c = config_lib.default_config()
  config_lib.federated_world(c)  # world v2's three tinted domains, as configs/pep.py
  c.method.name = "fedvpt"
  # 32 tokens in each of the 4 layers (12,288 parameters), Adam with a cosine over rounds:
  # adversarial training needs the capacity (on world v1, at 8 tokens PGD-AT ended no more robust
  # than clean training; README "Adversarial training"), and clean training loses nothing by it.
  c.method.num_tokens = 32
  c.method.depth = 4
  c.method.init_std = 0.02
  c.optim.name = "adam"
  c.optim.lr = 0.01
  c.optim.schedule = "cosine"
  return config_lib.apply_arg(c, arg, PRESETS)
