"""Loads transformers-format CLIP checkpoints into our `Clip`, and writes them back.

A checkpoint directory holds `config.json`, `model.safetensors` (or shards with
`model.safetensors.index.json`), tokenizer files (`vocab.json` + `merges.txt`
or `tokenizer.json`) and optionally `preprocessor_config.json`. Only safetensors
are read: pickled `pytorch_model.bin` files are refused (they run code on load).

Loading is strict: every missing, unexpected or mis-shaped tensor is reported in
one `CheckpointError`, and nothing is returned half-loaded.

Command line: `python -m fedprompt_jax.models.hf_loader DIR_OR_HUB_NAME` checks a
checkpoint and prints a one-line summary (or one error line, exit status 1).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fedprompt_jax.models.clip import Clip
from fedprompt_jax.models.clip_config import ClipConfig, ConfigError

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
PREPROCESSOR = "preprocessor_config.json"
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json")
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
# Buffers that older checkpoints carry; they are not parameters.
IGNORED_KEYS = ("text_model.embeddings.position_ids", "vision_model.embeddings.position_ids")
# The hub checkpoints the configs name: OpenAI's CLIP releases in transformers format.
KNOWN_HUB_CHECKPOINTS = ("openai/clip-vit-base-patch32", "openai/clip-vit-base-patch16",
                         "openai/clip-vit-large-patch14", "openai/clip-vit-large-patch14-336")
_HUB_PATTERNS = [CONFIG, WEIGHTS, WEIGHTS_INDEX, "model-*.safetensors", PREPROCESSOR,
                 *TOKENIZER_FILES]


class CheckpointError(ValueError):
  """A checkpoint that cannot be loaded; the message is one line."""


def resolve_checkpoint_dir(name_or_path: str) -> str:
  """A local directory as is; "embedded" is the shipped tiny CLIP; else a hub repo id."""
  from fedprompt_jax import assets  # pylint: disable=g-import-not-at-top
  if name_or_path == assets.EMBEDDED:
    if not os.path.isfile(os.path.join(assets.TINY_CLIP_DIR, CONFIG)):
      raise CheckpointError(
          f"the embedded tiny CLIP is missing from {assets.TINY_CLIP_DIR!r}; rebuild it with "
          "python scripts/pretrain_tiny_clip.py")
    return assets.TINY_CLIP_DIR
  if os.path.isdir(name_or_path):
    return name_or_path
  looks_local = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1
  if looks_local or not name_or_path:
    raise CheckpointError(f"checkpoint directory {name_or_path!r} does not exist")
  try:
    import huggingface_hub  # pylint: disable=g-import-not-at-top
    return huggingface_hub.snapshot_download(name_or_path, allow_patterns=_HUB_PATTERNS)
  except Exception as e:  # pylint: disable=broad-except
    reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise CheckpointError(
        f"cannot fetch {name_or_path!r} from the Hugging Face hub ({type(e).__name__}: {reason}); "
        "with no network, pass a local transformers-format directory (config.json + "
        "model.safetensors) instead") from None


def read_config(ckpt_dir: str) -> ClipConfig:
  path = os.path.join(ckpt_dir, CONFIG)
  if not os.path.isfile(path):
    raise CheckpointError(
        f"no {CONFIG} in {ckpt_dir!r}: not a transformers-format checkpoint directory "
        f"(expected {CONFIG} + {WEIGHTS})")
  try:
    with open(path) as f:
      raw = json.load(f)
    preprocessor = None
    pre_path = os.path.join(ckpt_dir, PREPROCESSOR)
    if os.path.isfile(pre_path):
      with open(pre_path) as f:
        preprocessor = json.load(f)
    return ClipConfig.from_hf_dict(raw, preprocessor)
  except (json.JSONDecodeError, ConfigError) as e:
    raise CheckpointError(f"{path}: {e}") from None


def _index_shards(index: str) -> list[str]:
  """The shard file names of a model.safetensors.index.json: plain names inside its folder."""
  try:
    with open(index) as f:
      shards = sorted(set(json.load(f)["weight_map"].values()))
  except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
    raise CheckpointError(f"{index} is not a safetensors index ({type(e).__name__}: "
                          f"{' '.join(str(e).split())[:120]}); it needs a \"weight_map\" "
                          "object of tensor name -> shard file name") from None
  for shard in shards:
    if (not isinstance(shard, str) or not shard or os.path.basename(shard) != shard
        or shard in (".", "..") or os.path.isabs(shard)):
      raise CheckpointError(f"{index} names the shard {shard!r}: shards must be plain file "
                            "names inside the checkpoint directory (no folders, '..' or "
                            "absolute paths)")
  return shards


def _weight_files(ckpt_dir: str) -> list[str]:
  single = os.path.join(ckpt_dir, WEIGHTS)
  if os.path.isfile(single):
    return [single]
  index = os.path.join(ckpt_dir, WEIGHTS_INDEX)
  if os.path.isfile(index):
    return [os.path.join(ckpt_dir, s) for s in _index_shards(index)]
  if any(os.path.isfile(os.path.join(ckpt_dir, p)) for p in PICKLE_WEIGHTS):
    raise CheckpointError(
        f"{ckpt_dir!r} holds only pickled pytorch_model.bin weights, which are not loaded "
        "(unsafe); convert once with: python -c \"from transformers import CLIPModel; "
        f"CLIPModel.from_pretrained('{ckpt_dir}').save_pretrained('{ckpt_dir}')\" "
        "(needs torch; writes model.safetensors)")
  raise CheckpointError(f"no {WEIGHTS} in {ckpt_dir!r}")


def read_tensors(ckpt_dir: str) -> dict[str, np.ndarray]:
  """All tensors of a checkpoint as numpy arrays, by transformers key."""
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  tensors = {}
  for path in _weight_files(ckpt_dir):
    try:
      tensors.update(load_file(path))
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(f"cannot read {path}: {e}") from None
  return tensors


def flax_path_to_hf(path: tuple[str, ...]) -> str:
  """('vision_model', 'encoder', 'layers_3', 'mlp', 'fc1', 'kernel') -> '...layers.3.mlp.fc1.weight'."""
  parts = []
  for p in path:
    if p.startswith("layers_"):
      parts += ["layers", p[len("layers_"):]]
    else:
      parts.append(p)
  if parts[-1] in ("kernel", "scale", "embedding"):
    parts[-1] = "weight"
  return ".".join(parts)


def hf_to_flax_array(path: tuple[str, ...], value: np.ndarray) -> np.ndarray:
  """Transposes torch layouts to flax ones (Linear [out,in]->[in,out]; Conv OIHW->HWIO)."""
  if path[-1] == "kernel":
    if value.ndim == 2:
      return value.T
    if value.ndim == 4:
      return value.transpose(2, 3, 1, 0)
  return value


def flax_to_hf_array(path: tuple[str, ...], value: np.ndarray) -> np.ndarray:
  if path[-1] == "kernel":
    if value.ndim == 2:
      return value.T
    if value.ndim == 4:
      return value.transpose(3, 2, 0, 1)
  return value


def _paths(tree) -> list[tuple[tuple[str, ...], Any]]:
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return [(tuple(k.key for k in keypath), leaf) for keypath, leaf in flat]


def _summarise(kind: str, items: list[str], limit: int = 6) -> str:
  shown = ", ".join(items[:limit])
  more = f" and {len(items) - limit} more" if len(items) > limit else ""
  return f"{len(items)} {kind} ({shown}{more})"


def params_from_tensors(model: Clip, tensors: dict[str, np.ndarray], source: str = "checkpoint"):
  """Maps transformers tensors onto the parameter tree of `model`, strictly."""
  shapes = model.param_shapes()
  expected = _paths(shapes)
  used, missing, misshaped = set(), [], []
  leaves = []
  for path, spec in expected:
    key = flax_path_to_hf(path)
    if key not in tensors:
      missing.append(key)
      leaves.append(None)
      continue
    used.add(key)
    value = hf_to_flax_array(path, np.asarray(tensors[key]))
    if tuple(value.shape) != tuple(spec.shape):
      want = flax_to_hf_array(path, np.zeros(spec.shape, np.int8)).shape
      misshaped.append(f"{key}: got {tuple(tensors[key].shape)}, expected {tuple(want)}")
    leaves.append(value)
  unexpected = sorted(k for k in tensors if k not in used and k not in IGNORED_KEYS)
  problems = []
  if misshaped:
    problems.append(_summarise("mis-shaped", misshaped))
  if missing:
    problems.append(_summarise("missing", missing))
  if unexpected:
    problems.append(_summarise("unexpected", unexpected))
  if problems:
    raise CheckpointError(f"{source} does not match its config.json: " + "; ".join(problems))
  treedef = jax.tree_util.tree_structure(shapes)
  return jax.tree_util.tree_unflatten(
      treedef, [jnp.asarray(v, jnp.float32) for v in leaves])


def load_clip(name_or_path: str, *, dtype: Any = jnp.float32, remat: bool = False):
  """Loads (Clip, params, checkpoint_dir) from a directory or hub name.

  Args:
    name_or_path: a transformers-format directory, or a hub repo id such as
      "openai/clip-vit-base-patch16" (downloaded when a network exists).
    dtype: compute dtype (parameters stay float32).
    remat: rematerialise each transformer block in the backward pass.

  Returns:
    (model, params, ckpt_dir); params is the frozen tree, float32.

  Raises:
    CheckpointError: with a one-line message naming the problem.
  """
  ckpt_dir = resolve_checkpoint_dir(name_or_path)
  config = read_config(ckpt_dir)
  model = Clip(config, dtype=dtype, remat=remat)
  tensors = read_tensors(ckpt_dir)
  params = params_from_tensors(model, tensors, source=ckpt_dir)
  return model, params, ckpt_dir


def save_clip(out_dir: str, config: ClipConfig, params, tokenizer_dir: str | None = None) -> None:
  """Writes a directory that `transformers.CLIPModel.from_pretrained` loads.

  Tokenizer files are copied from `tokenizer_dir` when given. The directory is
  written under a temporary name and renamed, so a failure leaves nothing half-written.
  """
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  tmp = out_dir.rstrip("/") + ".tmp"
  if os.path.exists(tmp):
    shutil.rmtree(tmp)
  os.makedirs(tmp)
  # np.array (not ascontiguousarray, which makes 0-d arrays 1-d: logit_scale is 0-d).
  tensors = {flax_path_to_hf(path): np.array(flax_to_hf_array(path, np.asarray(leaf, np.float32)),
                                              order="C") for path, leaf in _paths(params)}
  save_file(tensors, os.path.join(tmp, WEIGHTS), metadata={"format": "pt"})
  with open(os.path.join(tmp, CONFIG), "w") as f:
    json.dump(config.to_hf_dict(), f, indent=2, sort_keys=True)
  with open(os.path.join(tmp, PREPROCESSOR), "w") as f:
    json.dump(config.to_preprocessor_dict(), f, indent=2, sort_keys=True)
  if tokenizer_dir is not None:
    for name in TOKENIZER_FILES:
      src = os.path.join(tokenizer_dir, name)
      if os.path.isfile(src):
        shutil.copyfile(src, os.path.join(tmp, name))
  if os.path.exists(out_dir):
    shutil.rmtree(out_dir)
  os.replace(tmp, out_dir)


def main(argv: list[str]) -> int:
  if len(argv) != 2:
    print("usage: python -m fedprompt_jax.models.hf_loader CHECKPOINT_DIR_OR_HUB_NAME",
          file=sys.stderr)
    return 2
  try:
    model, params, ckpt_dir = load_clip(argv[1])
  except CheckpointError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  from fedprompt_jax.models.clip import count_params  # pylint: disable=g-import-not-at-top
  v, t = model.config.vision, model.config.text
  print(f"{ckpt_dir}: CLIP {count_params(params):,} params; vision {v.num_hidden_layers}x"
        f"{v.hidden_size} patch {v.patch_size} @ {v.image_size}px; text {t.num_hidden_layers}x"
        f"{t.hidden_size} vocab {t.vocab_size} ctx {t.max_position_embeddings}; "
        f"embed {model.config.projection_dim}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
