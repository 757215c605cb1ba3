"""PEP-FedPT: class-contextualised mixed prompts from global prototypes and client priors.

  python launch/run.py --config=configs/pep.py                      # embedded offline default
  python launch/run.py --config=configs/pep.py:cifar100             # ViT-B/16, CIFAR-100, Dir(0.1)
  python launch/run.py --config=configs/pep.py:cifar100,fed.alpha=0.3
  python launch/run.py --config=configs/pep.py:tinyimagenet         # tests on the labelled val set
  python launch/run.py --config=configs/pep.py:domainnet            # domain x Dir(0.1) labels
  python launch/run.py --config=configs/pep.py:dp                   # client-level DP, epsilon <= 3

Paper settings follow the likely protocol of SGPT (100 clients, 10% per round,
5 local epochs, SGD lr 0.01); they need the data prepared with tfds (Tiny-ImageNet
with the builder in fedprompt_jax/data/tiny_imagenet.py, from the official zip)
and a network or a local copy of openai/clip-vit-base-patch16.
"""

from fedprompt_jax import config as config_lib
from fedprompt_jax.assets import world


def _paper(c, tfds_name):
  config_lib.paper_setting(c, tfds_name)
  c.fed.rounds = 100
  c.fed.local_epochs = 5          # epochs, not fixed steps: steps follow each client's data
  c.optim.lr = 0.01
  c.method.class_layers = 6


def _cifar100(c):
  _paper(c, "cifar100")


def _tinyimagenet(c):
  _paper(c, "tiny_imagenet")      # shipped builder; no labelled test split, so its val split
  c.data.tfds_test_split = "validation"


def _domainnet(c):
  _paper(c, "domainnet")
  c.data.tfds_domain_configs = ("clipart", "infograph", "painting", "quickdraw", "real",
                                "sketch")
  c.data.storage = "array_record"  # ~590k images: about 88 GB in memory at 224 px
  # PEP-FedPT's setting: each client one domain (10 per domain) and, inside a domain,
  # labels split by Dir(fed.alpha) among its clients.
  c.fed.partition = "domain_dirichlet"
  c.fed.num_clients = 60
  c.fed.clients_per_round = 6


def _dp(c):
  """DP-FedAvg over 1,000 clients (config.many_clients_dp), the prototypes' statistics included.

  Each client's shared delta is clipped to 0.5 (median norm 0.6 here) and its per-class
  feature sums and counts, together, to dp.stats_clip = 30 (median 30: 8 images of feature
  norm about 3.7); both sums get noise z = 2.6 times their clip. Two releases a round:
  epsilon 2.70 after 20 rounds (N = 1000, K = 50, delta = 1/1000^1.1). The per-class noise
  (std 78 on each of 96 feature sums) is far above one round's signal (about 17 images of
  norm 3.7 per class), so the prototypes average over rounds (prototype_ema = 0.9) and are
  still mostly noise: the PEP results of the README are not expected under this preset.
  """
  config_lib.many_clients_dp(c)
  c.method.prototype_ema = 0.9
  c.dp.clip = 0.5
  c.dp.stats_clip = 30.0
  c.dp.noise_multiplier = 2.6
  c.dp.target_epsilon = 3.0


PRESETS = {"cifar100": _cifar100, "tinyimagenet": _tinyimagenet, "domainnet": _domainnet,
           "dp": _dp}


def get_config(arg=None):
  c = config_lib.default_config()
  c.method.name = "pep"
  # World v2's three tinted domains, mixed across clients: PEP-FedPT's setting is label and
  # domain heterogeneity, on domains where prompts have room (zero-shot 25-65%; one 16-shot deep
  # VPT gains on each: README, "Room for prompts"). `tinted_pattern` stays unseen.
  c.data.domains = world.FEDERATED_DOMAINS
  c.method.num_shared = 4
  c.method.num_class_tokens = 4
  c.method.class_layers = 2      # l_c: the second half of the tiny CLIP's 4 layers
  c.method.tau = 0.1
  c.method.mixing = "bayes"      # bayes | prior_only | prototype_only | uniform (ablations)
  c.method.prior_smoothing = 1.0
  c.method.prototype_ema = 0.0
  # z(x) for the client statistics (prototypes): "received" = with the shared prompt the client
  # received this round (the global one, the space the mixing uses; METHODS.md, ours), or
  # "trained" = with its locally trained shared prompt after the local steps (before issue 11).
  c.method.prototype_features = "received"
  c.method.head_init = "zeroshot"
  c.method.replace_each_layer = True
  c.method.init_std = 0.02
  c.fed.num_clients = 30
  c.fed.clients_per_round = 6
  c.fed.rounds = 30
  c.fed.alpha = 0.1
  c.optim.lr = 0.05
  return config_lib.apply_arg(c, arg, PRESETS)
