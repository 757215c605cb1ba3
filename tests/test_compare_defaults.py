"""Every embedded default on world v2, and the comparisons that run them as shipped.

launch/compare.py --comparison=baselines (PromptFL and FedVPT at their defaults) and
--comparison=adversarial_training (FedVPT trained clean against PGD-AT, attacked alike).
Config-level checks only: the runs themselves are the README's tables.
"""

import importlib.util
import os
import sys

import pytest
from flax import traverse_util

from fedprompt_jax.assets import world

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "launch"))
import compare  # noqa: E402  pylint: disable=wrong-import-position


def flat(config):
  return traverse_util.flatten_dict(config.to_dict(), sep=".")


def diff(a, b):
  return {k for k in set(a) | set(b) if a.get(k) != b.get(k)}


@pytest.mark.parametrize("name", ["pep", "promptfl", "fedvpt", "fedapt", "fedmvp"])
def test_every_embedded_default_federates_the_tinted_domains(name):
  spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "configs", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  assert tuple(c.data.domains) == world.FEDERATED_DOMAINS
  assert world.UNSEEN_DOMAIN not in c.data.domains
  assert c.clip.checkpoint == "embedded" and c.data.source == "shapes"


def test_baselines_share_data_and_federation_and_skip_robust_evaluation():
  spec = compare.COMPARISONS["baselines"]
  promptfl, fedvpt = (flat(compare.run_config(spec, m, 1)) for m in ("promptfl", "fedvpt"))
  assert {k.split(".")[0] for k in diff(promptfl, fedvpt)} <= {"method", "optim"}
  assert promptfl["adv.eval"] == fedvpt["adv.eval"] == ()
  # As shipped otherwise: the run's method section and optimizer are its config file's.
  sys.path.insert(0, REPO)
  from configs import fedvpt as fedvpt_config  # pylint: disable=import-outside-toplevel
  shipped = flat(fedvpt_config.get_config("seed=1"))
  assert diff(shipped, fedvpt) == {"adv.eval"}


def test_adversarial_training_runs_differ_only_in_the_training_attack():
  spec = compare.COMPARISONS["adversarial_training"]
  clean, at = (flat(compare.run_config(spec, m, 0)) for m in spec.runs)
  assert diff(clean, at) == {"adv.train"}
  assert (clean["adv.train"], at["adv.train"]) == ("none", "pgd")
  # Both attacked with :at's evaluation (PGD-10 and APGD-CE-20 at both radii), on one
  # stratified subset, at the final round only.
  assert len(clean["adv.eval"]) == 4 and sum(a.startswith("apgd-ce") for a in clean["adv.eval"]) == 2
  assert (clean["adv.eval_subset"], clean["adv.eval_examples"], clean["adv.eval_rounds"]) == (
      "stratified", 576, "final")
