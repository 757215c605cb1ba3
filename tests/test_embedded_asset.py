"""The shipped tiny CLIP: loads in our loader and in transformers alike, and knows its world."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from clip_fixtures import HAS_TORCH
from fedprompt_jax import assets, zeroshot_eval
from fedprompt_jax.assets import world
from fedprompt_jax.data import digits, shapes
from fedprompt_jax.models import hf_loader, zeroshot
from fedprompt_jax.models.clip import normalize
from fedprompt_jax.models.tokenizer import load_tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def embedded():
  model, params, ckpt = hf_loader.load_clip("embedded")
  return model, params, load_tokenizer(ckpt, model.config.text.max_position_embeddings)


def test_asset_is_small_and_describes_its_pretraining():
  files = os.listdir(assets.TINY_CLIP_DIR)
  for name in ("config.json", "model.safetensors", "vocab.json", "merges.txt",
               "preprocessor_config.json", "pretraining.json"):
    assert name in files, name
  size = sum(os.path.getsize(os.path.join(assets.TINY_CLIP_DIR, f)) for f in files)
  assert size < 5 * 2**20, size
  with open(os.path.join(assets.TINY_CLIP_DIR, "pretraining.json")) as f:
    info = json.load(f)
  assert info["heldout_domains"] == list(world.SHAPES_HELDOUT_DOMAINS)
  assert not set(info["pretrain_domains"]) & set(info["heldout_domains"])


def test_zero_shot_on_held_out_test_images(embedded):
  """Fresh test images (a seed the pretraining never used): shapes and digits well above chance."""
  model, params, tok = embedded
  sh = shapes.make_shapes(0, 4, world.IMAGE_SIZE, seed=12345)
  acc = zeroshot_eval.accuracy_by_domain(model, params, tok, sh, world.ZEROSHOT_TEMPLATES)
  assert acc["all"] >= 0.45, acc
  assert min(acc[d] for d in world.SHAPES_PRETRAIN_DOMAINS) >= 0.4, acc
  dg = digits.load_digits(world.IMAGE_SIZE, seed=0)
  acc_digits = zeroshot_eval.accuracy_by_domain(model, params, tok, dg, world.ZEROSHOT_TEMPLATES)
  assert acc_digits["all"] >= 0.75, acc_digits


def test_falsecolour_leaves_room_for_prompts(embedded):
  """The held-out falsecolour domain: zero-shot poor, 8-shot deep VPT far above it (~16% -> ~46%)."""
  model, params, tok = embedded
  from fedprompt_jax import headroom  # pylint: disable=import-outside-toplevel
  sh = shapes.make_shapes(8, 4, world.IMAGE_SIZE, seed=54321, domains=("falsecolour",))
  head = zeroshot.class_text_features(model, params, tok, sh.class_names, world.ZEROSHOT_TEMPLATES)
  zero_shot = float((zeroshot.predict(model, params, head, sh.test.images) == sh.test.labels).mean())
  prompts = headroom.train_deep_vpt(model, params, head, sh.train, num_tokens=8, steps=120,
                                    batch=64, lr=3e-2, seed=0)
  tuned = headroom.prompted_accuracy(model, params, head, prompts, sh.test)
  assert zero_shot < 0.3 and tuned >= zero_shot + 0.15, (zero_shot, tuned)


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")
def test_transformers_gives_the_same_logits(embedded):
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  model, params, tok = embedded
  pixels = shapes.make_shapes(0, 1, world.IMAGE_SIZE, seed=7).test.images[:8] / 255.0
  ids, mask = tok([f"a photo of a {c}." for c in shapes.CLASS_NAMES[:6]])
  ours = np.asarray(model.logits(params, pixels.astype(np.float32), ids, mask))
  ref_model = transformers.CLIPModel.from_pretrained(assets.TINY_CLIP_DIR).eval()
  mean, std = np.array(model.config.image_mean), np.array(model.config.image_std)
  norm = ((pixels - mean) / std).astype(np.float32).transpose(0, 3, 1, 2)
  with torch.no_grad():
    ref = ref_model(pixel_values=torch.from_numpy(norm.copy()),
                    input_ids=torch.from_numpy(ids.astype(np.int64)),
                    attention_mask=torch.from_numpy(mask.astype(np.int64))).logits_per_image
  np.testing.assert_allclose(ours, ref.numpy(), atol=1e-5)
  assert np.std(ours) > 0.5  # a trained model separates the prompts


@pytest.mark.slow
def test_pretraining_script_rebuilds_a_loadable_checkpoint(tmp_path):
  out = tmp_path / "tiny"
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, "scripts", "pretrain_tiny_clip.py"), "--steps=2",
       "--per_class_domain=1", "--eval_every=2", "--batch=16", f"--out={out}"],
      capture_output=True, text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=600,
      check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  model, params, _ = hf_loader.load_clip(str(out))
  assert model.config.vision.image_size == world.IMAGE_SIZE
  ref = hf_loader.load_clip("embedded")[0]
  assert model.config == ref.config  # the script builds the shipped architecture
  assert np.isfinite(np.asarray(normalize(params["visual_projection"]["kernel"]))).all()
