"""World v2 (issue 14): the tinted domains as inputs of the commands that name domains.

The domains' bytes and the cast are tested in tests/test_data_shapes.py, the room they leave
for prompts is measured by `launch/reproduce.py --table=headroom` (README); these tests are
the cheap contracts around them (no training).
"""

import os
import sys

import pytest

from fedprompt_jax import config as config_lib
from fedprompt_jax import headroom, transfer
from fedprompt_jax.assets import world
from fedprompt_jax.data import shapes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "launch"))
import zeroshot as zeroshot_command  # noqa: E402  pylint: disable=wrong-import-position


def test_world_v2_names_are_valid_and_disjoint():
  assert set(world.FEDERATED_DOMAINS) <= set(shapes.TINTED_DOMAINS)
  assert world.UNSEEN_DOMAIN in shapes.TINTED_DOMAINS
  assert world.UNSEEN_DOMAIN not in world.FEDERATED_DOMAINS
  assert not set(shapes.TINTED_DOMAINS) & set(world.SHAPES_PRETRAIN_DOMAINS)


def test_the_main_command_federates_world_v2():
  import importlib.util  # pylint: disable=import-outside-toplevel
  spec = importlib.util.spec_from_file_location("pep_config", os.path.join(REPO, "configs", "pep.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  assert tuple(c.data.domains) == world.FEDERATED_DOMAINS
  config_lib.validate(c)  # raises ConfigError on a bad key


def test_transfer_defaults_to_the_unseen_domains_of_the_run_world():
  c = config_lib.default_config()
  c.data.domains = world.FEDERATED_DOMAINS
  assert tuple(transfer.target_config(c, "shapes").data.domains) == (world.UNSEEN_DOMAIN,)
  c.data.domains = ("falsecolour",)  # a world v1 run: v1's other domains, as before
  assert tuple(transfer.target_config(c, "shapes").data.domains) == (
      "photo", "sketch", "noisy", "pattern")


def test_zeroshot_command_domains():
  assert zeroshot_command.source_kwargs("shapes", 2, 0, domains=("all",))["domains"] == shapes.DOMAINS
  assert zeroshot_command.source_kwargs("shapes", 2, 0, domains=("tinted_photo",))[
      "domains"] == ("tinted_photo",)
  assert "domains" not in zeroshot_command.source_kwargs("shapes", 2, 0)  # the five base ones
  with pytest.raises(ValueError, match="only shapes has domains"):
    zeroshot_command.source_kwargs("digits", domains=("photo",))


@pytest.mark.parametrize("train, held, message", [
    (("tinted_photo", "clay"), (), "unknown shapes domains \\['clay'\\]"),
    (("tinted_photo",), ("tinted_photo",), "disjoint"),
    ((), ("tinted_pattern",), "non-empty"),
])
def test_headroom_union_rejects_bad_domains(train, held, message):
  with pytest.raises(ValueError, match=message):
    headroom.measure_union(None, None, None, train, held, seed=0)
