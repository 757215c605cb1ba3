"""Our flax CLIP against transformers' PyTorch CLIPModel on the same weights (float32)."""

import importlib.util
import os
import sys

import numpy as np
import pytest

from clip_fixtures import HAS_TORCH, NAMES, fixture_dir, reference
from fedprompt_jax.models import hf_loader, parity
from fedprompt_jax.models.parity import max_diffs

TOL = 1e-5
SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts")


def our_outputs(name, ckpt_dir=None):
  ref = reference(name)
  return parity.our_outputs(ckpt_dir or fixture_dir(name), ref["pixels"], ref["input_ids"],
                            ref["attention_mask"])


@pytest.mark.parametrize("name", NAMES)
def test_matches_committed_reference(name):
  ref = reference(name)
  ours = our_outputs(name)
  diffs = max_diffs(ours, ref)
  print(name, diffs)
  assert all(d <= TOL for d in diffs.values()), diffs
  # The fixture is not degenerate: different images and texts give different logits.
  assert np.std(ref["logits_per_image"]) > 0.05


def test_fixtures_differ_in_the_ways_that_matter():
  a = hf_loader.read_config(fixture_dir("clip_tiny_a"))
  b = hf_loader.read_config(fixture_dir("clip_tiny_b"))
  assert a.vision.patch_size != b.vision.patch_size
  assert a.vision.num_hidden_layers != b.vision.num_hidden_layers
  assert a.vision.num_attention_heads != b.vision.num_attention_heads
  assert a.vision.hidden_act != b.vision.hidden_act
  assert (a.text.eos_token_id == 2) != (b.text.eos_token_id == 2)  # both pooling rules


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")
@pytest.mark.parametrize("name", NAMES)
def test_matches_live_transformers(name):
  import transformers  # pylint: disable=import-outside-toplevel
  sys.path.insert(0, SCRIPTS)
  from make_parity_fixtures import reference_outputs  # pylint: disable=import-outside-toplevel
  ref = reference(name)
  torch_model = transformers.CLIPModel.from_pretrained(fixture_dir(name)).eval()
  live = reference_outputs(torch_model, ref["pixels"], ref["input_ids"], ref["attention_mask"])
  diffs = max_diffs(our_outputs(name), live)
  assert all(d <= TOL for d in diffs.values()), diffs


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")
@pytest.mark.parametrize("name", NAMES)
def test_directory_we_write_loads_in_transformers(name, tmp_path):
  import transformers  # pylint: disable=import-outside-toplevel
  sys.path.insert(0, SCRIPTS)
  from make_parity_fixtures import reference_outputs  # pylint: disable=import-outside-toplevel
  model, params, ckpt = hf_loader.load_clip(fixture_dir(name))
  out = str(tmp_path / "written")
  hf_loader.save_clip(out, model.config, params, tokenizer_dir=ckpt)
  ref = reference(name)
  torch_model = transformers.CLIPModel.from_pretrained(out).eval()
  live = reference_outputs(torch_model, ref["pixels"], ref["input_ids"], ref["attention_mask"])
  diffs = max_diffs(our_outputs(name, out), live)
  assert all(d <= TOL for d in diffs.values()), diffs
  assert np.abs(live["logits_per_image"] - ref["logits_per_image"]).max() <= TOL
  processor = transformers.CLIPImageProcessor.from_pretrained(out)
  assert list(processor.image_mean) == pytest.approx(list(model.config.image_mean))
  tok = transformers.CLIPTokenizer.from_pretrained(out)
  assert tok("a photo of a red circle.")["input_ids"][0] == model.config.text.bos_token_id


def test_round_trip_is_exact_without_torch(tmp_path):
  model, params, ckpt = hf_loader.load_clip(fixture_dir("clip_tiny_b"))
  out = str(tmp_path / "again")
  hf_loader.save_clip(out, model.config, params, tokenizer_dir=ckpt)
  model2, params2, _ = hf_loader.load_clip(out)
  assert model2.config == model.config
  import jax  # pylint: disable=import-outside-toplevel
  same = jax.tree_util.tree_map(lambda a, b: bool((np.asarray(a) == np.asarray(b)).all()),
                                params, params2)
  assert all(jax.tree_util.tree_leaves(same))
  assert sorted(os.listdir(out)) == sorted(
      ["config.json", "model.safetensors", "preprocessor_config.json", "vocab.json",
       "merges.txt", "tokenizer_config.json"])
