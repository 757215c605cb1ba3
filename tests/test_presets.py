"""Every preset of every config in configs/ resolves offline: data set, splits, classes, CLIP.

Presets are discovered (each configs/*.py's PRESETS, plus the default with no
preset), never listed here. For tfds presets the builder must be registered
(tfds's own or a shipped one), the splits read must be among those the
builder's code declares, and the class names must resolve to the builder's
class count, which must equal the published count of that data set.
"""

import glob
import importlib.util
import os

import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from fedprompt_jax import assets  # noqa: E402
from fedprompt_jax import config as config_lib  # noqa: E402
from fedprompt_jax.data import tfds_catalog  # noqa: E402
from fedprompt_jax.models import hf_loader  # noqa: E402

_CONFIGS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "configs", "*.py")))
# Published class counts (a preset naming a new data set adds its count here).
_PUBLISHED_CLASSES = {"cifar10": 10, "cifar100": 100, "tiny_imagenet": 200, "domainnet": 345}


def _module(path):
  spec = importlib.util.spec_from_file_location(f"configs_{os.path.basename(path)[:-3]}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _presets():
  out = []
  for path in _CONFIGS:
    module = _module(path)
    for preset in [None, *sorted(module.PRESETS)]:
      out.append(pytest.param(module, preset, id=f"{os.path.basename(path)}:{preset or ''}"))
  return out


def test_presets_are_discovered():
  names = {p.id for p in _presets()}
  assert {"pep.py:tinyimagenet", "pep.py:domainnet", "promptfl.py:cifar100"} <= names
  assert len(_CONFIGS) >= 3


@pytest.mark.parametrize("module,preset", _presets())
def test_preset_resolves_offline(module, preset):
  c = module.get_config(preset)
  config_lib.validate(c)
  checkpoint = c.clip.checkpoint
  if checkpoint == assets.EMBEDDED:
    assert os.path.isfile(os.path.join(hf_loader.resolve_checkpoint_dir(checkpoint), "config.json"))
  else:
    assert checkpoint in hf_loader.KNOWN_HUB_CHECKPOINTS
  if c.data.source != "tfds":
    return
  name = c.data.tfds_name
  splits = tfds_catalog.declared_splits(name)
  assert c.data.tfds_train_split in splits and c.data.tfds_test_split in splits, (name, splits)
  configs = tuple(c.data.tfds_domain_configs) or (None,)
  counts = set()
  for config in configs:
    info = tfds_catalog.builder(name, config).info
    names = tfds_catalog.class_names(name, config)
    assert len(names) == len(set(names)) == info.features["label"].num_classes
    counts.add(len(names))
  assert counts == {_PUBLISHED_CLASSES[name]}
  if c.fed.partition in ("domains", "domain_dirichlet"):
    assert len(configs) > 1  # domains come from the builder configs


def test_unknown_builder_and_split_are_reported():
  with pytest.raises(ValueError) as error:
    tfds_catalog.builder("tiny_imagenet_200")
  assert "'tiny_imagenet_200' is not a registered tfds builder" in str(error.value)
  assert "test" not in tfds_catalog.declared_splits("tiny_imagenet")  # no labelled test split
  assert tfds_catalog.declared_splits("cifar100") == ("test", "train")
