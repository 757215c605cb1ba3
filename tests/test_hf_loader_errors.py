"""Bad checkpoints: each gives one clear line (CheckpointError; CLI exit 1), nothing half-loaded."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from clip_fixtures import fixture_dir
from fedprompt_jax.models import hf_loader

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def copy_fixture(tmp_path, name="clip_tiny_a"):
  dst = tmp_path / name
  shutil.copytree(fixture_dir(name), dst)
  return dst


def rewrite_weights(ckpt, edit):
  path = os.path.join(ckpt, "model.safetensors")
  tensors = edit(load_file(path))
  save_file(tensors, path, metadata={"format": "pt"})


def cli(arg, env_extra=None):
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
  env.update(env_extra or {})
  return subprocess.run([sys.executable, "-m", "fedprompt_jax.models.hf_loader", arg],
                        capture_output=True, text=True, env=env, timeout=120, check=False)


def assert_one_line_error(result, *fragments):
  assert result.returncode == 1, result
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1, result.stderr
  for fragment in fragments:
    assert fragment in lines[0], lines[0]
  assert result.stdout == ""


def test_loads_a_good_directory_from_the_command_line():
  result = cli(fixture_dir("clip_tiny_b"))
  assert result.returncode == 0, result.stderr
  assert "CLIP 250,257 params" in result.stdout and "patch 8" in result.stdout


def test_no_config_json(tmp_path):
  ckpt = copy_fixture(tmp_path)
  os.remove(ckpt / "config.json")
  with pytest.raises(hf_loader.CheckpointError, match="no config.json in"):
    hf_loader.load_clip(str(ckpt))
  assert_one_line_error(cli(str(ckpt)), "no config.json", str(ckpt))


def test_one_tensor_of_the_wrong_shape(tmp_path):
  ckpt = copy_fixture(tmp_path)
  key = "vision_model.encoder.layers.1.mlp.fc1.weight"
  rewrite_weights(ckpt, lambda t: {**t, key: np.zeros((7, 64), np.float32)})
  with pytest.raises(hf_loader.CheckpointError) as err:
    hf_loader.load_clip(str(ckpt))
  msg = str(err.value)
  assert f"1 mis-shaped ({key}: got (7, 64), expected (128, 64))" in msg
  assert "missing" not in msg and "unexpected" not in msg and "\n" not in msg
  assert_one_line_error(cli(str(ckpt)), key, "got (7, 64), expected (128, 64)")


def test_missing_and_unexpected_tensors_are_all_listed(tmp_path):
  ckpt = copy_fixture(tmp_path)

  def edit(t):
    t = dict(t)
    del t["text_projection.weight"]
    del t["vision_model.post_layernorm.bias"]
    t["vision_model.extra_head.weight"] = np.zeros((2, 2), np.float32)
    t["text_model.embeddings.position_ids"] = np.arange(16)[None]  # legacy buffer: ignored
    return t

  rewrite_weights(ckpt, edit)
  with pytest.raises(hf_loader.CheckpointError) as err:
    hf_loader.load_clip(str(ckpt))
  msg = str(err.value)
  assert "2 missing (" in msg and "text_projection.weight" in msg
  assert "vision_model.post_layernorm.bias" in msg
  assert "1 unexpected (vision_model.extra_head.weight)" in msg


def test_only_pickled_weights_are_refused_with_a_conversion_hint(tmp_path):
  ckpt = copy_fixture(tmp_path)
  os.remove(ckpt / "model.safetensors")
  (ckpt / "pytorch_model.bin").write_bytes(b"not unpickled")
  assert_one_line_error(cli(str(ckpt)), "pytorch_model.bin", "save_pretrained", "safetensors")


def test_hub_name_without_network():
  name = "fedprompt-jax-tests/no-such-clip"
  # No HF_HUB_OFFLINE: the real network path, which fails fast here (no route to the hub).
  env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
  env.update(PYTHONPATH=REPO, JAX_PLATFORMS="cpu", HF_HUB_DISABLE_TELEMETRY="1")
  result = subprocess.run([sys.executable, "-m", "fedprompt_jax.models.hf_loader", name],
                          capture_output=True, text=True, env=env, timeout=180, check=False)
  assert_one_line_error(result, name, "hub", "local transformers-format directory")


def test_missing_local_directory():
  with pytest.raises(hf_loader.CheckpointError, match="does not exist"):
    hf_loader.load_clip("./no/such/dir")


def test_bad_activation_in_config(tmp_path):
  ckpt = copy_fixture(tmp_path)
  text = (ckpt / "config.json").read_text().replace('"quick_gelu"', '"swish"', 1)
  (ckpt / "config.json").write_text(text)
  assert_one_line_error(cli(str(ckpt)), "hidden_act='swish'", "valid: quick_gelu")
