"""What benchmarks/accelerator.py runs: random-weight CLIPs, the methods on them, round inputs.

No checkpoint is read or written: the model is a `Clip(ClipConfig(...))` with random weights
(`random_params`), built in memory. `vitb16` has the shapes of openai/clip-vit-base-patch16
(scripts/make_vitb16_like.py's VISION, TEXT and PROJECTION_DIM: 224 px, patch 16, width 768,
12 + 12 layers, a 49,408-row token embedding); `tiny` the embedded tiny CLIP's architecture
(fedprompt_jax/assets/tiny_clip/config.json: 32 px, patch 4, width 96, 4 layers). Both use
the embedded tiny CLIP's tokenizer (963 tokens; its ids are a subset of ViT-B/16's rows, so
the compute is ViT-B/16's), with the model's context length.

Each method takes the `method` and `optim` sections of its configs/<name>.py: the `cifar100`
preset (ViT-B/16 paper settings: FedVPT deep over 12 layers, PEP l_c = 6, PromptFL 16
context tokens, ...) for `vitb16`, the embedded default for `tiny`. Training is clean (no
adversarial training: benchmarks/attack_cost.py measures that) in the global label space;
the server optimizer is FedAvg. Class names and FedMVP's attribute sentences (10 per class)
are synthetic: C names "object i", which fix the shapes and nothing else.

Shapes: K clients, S local steps, B batch, H x W images, C classes.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedprompt_jax import assets, train
from fedprompt_jax.fed import mesh as mesh_lib
from fedprompt_jax.fed import server
from fedprompt_jax.fed.client import ClientBatches
from fedprompt_jax.fed.round import RoundInputs, ServerState, init_server_state
from fedprompt_jax.methods import base, make_method
from fedprompt_jax.models.clip import Clip
from fedprompt_jax.models.clip_config import ClipConfig, TextConfig, VisionConfig
from fedprompt_jax.models.hf_loader import read_config
from fedprompt_jax.models.tokenizer import load_tokenizer
from scripts import make_vitb16_like

Tree = Any
MODELS = ("vitb16", "tiny")
# Methods with a federated round to time (zeroshot trains nothing: it has no round).
METHODS = ("fedvpt", "pep", "promptfl", "fedapt", "fedmvp")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
ATTRIBUTES_PER_CLASS = 10


def model_config(name: str) -> ClipConfig:
  """The architecture `name` (MODELS), with the embedded tokenizer's special token ids."""
  if name == "tiny":
    return read_config(assets.TINY_CLIP_DIR)
  if name != "vitb16":
    raise ValueError(f"--model={name!r} is unknown; valid: {', '.join(MODELS)}")
  with open(os.path.join(assets.TINY_CLIP_DIR, "vocab.json")) as f:
    vocab = json.load(f)
  eos, bos = vocab["<|endoftext|>"], vocab["<|startoftext|>"]
  return ClipConfig(vision=VisionConfig(**make_vitb16_like.VISION),
                    text=TextConfig(**make_vitb16_like.TEXT, eos_token_id=eos, bos_token_id=bos,
                                    pad_token_id=eos),
                    projection_dim=make_vitb16_like.PROJECTION_DIM)


def method_config(name: str, model: str):
  """configs/<name>.py's config: the `cifar100` preset for vitb16, the default for tiny."""
  if name not in METHODS:
    raise ValueError(f"--methods: {name!r} is unknown; valid: {', '.join(METHODS)}")
  module = importlib.import_module(f"configs.{name}")
  return module.get_config("cifar100" if model == "vitb16" else None)


@dataclasses.dataclass(frozen=True)
class Variant:
  """One method on one model variant (dtype, remat), ready for make_round_fn."""
  method: base.PromptMethod
  client_tx: optax.GradientTransformation
  server_tx: optax.GradientTransformation
  aux: Tree
  shared: Tree
  personal: Tree   # one client's personal leaves ({} if none)


class Models:
  """One random-weight frozen tree per model; methods and their aux built once, variants on call.

  The aux of a method (zero-shot heads, label embeddings) is computed once with the float32
  model and reused for every dtype and remat: it is a constant input of the round, and only
  its shapes matter here.
  """

  def __init__(self, name: str, classes: int):
    self.name, self.config = name, model_config(name)
    self.frozen = random_params(Clip(self.config))
    self.tokenizer = load_tokenizer(assets.TINY_CLIP_DIR,
                                    self.config.text.max_position_embeddings)
    names = tuple(f"object {i}" for i in range(classes))
    attributes = {n: tuple(f"a photo of the {n}, which has feature {j}."
                           for j in range(ATTRIBUTES_PER_CLASS)) for n in names}
    self.ctx = base.Context(Clip(self.config), self.frozen, self.tokenizer, names, attributes)
    self._aux: dict[str, Tree] = {}

  def variant(self, method_name: str, dtype: str, remat: bool) -> Variant:
    c = method_config(method_name, self.name)
    model = Clip(self.config, dtype=DTYPES[dtype], remat=remat)
    method = make_method(method_name, model, c.method)
    if method_name not in self._aux:
      reference = make_method(method_name, self.ctx.model, c.method)
      self._aux[method_name] = reference.prepare(self.ctx)
    aux = self._aux[method_name]
    shared, personal = base.split_params(method, method.init(jax.random.key(2), aux))
    return Variant(method, train.client_optimizer(c),
                   server.make_server_optimizer(c.fed.server_optimizer), aux, shared, personal)


def random_params(model: Clip, seed: int = 0) -> Tree:
  """The model's parameter tree with random values, on the default device: LayerNorm scales 1,
  biases 0, every other leaf N(0, 0.02^2). Only the shapes come from flax (`eval_shape`:
  traced, not compiled; a jitted `Clip.init` takes 14 s for the tiny CLIP on a loaded CPU)."""
  rng = np.random.default_rng(seed)

  def leaf(path, shape):
    name = getattr(path[-1], "key", "")
    if name == "scale":
      return jnp.ones(shape.shape, shape.dtype)
    if name == "bias":
      return jnp.zeros(shape.shape, shape.dtype)
    return jnp.asarray(0.02 * rng.standard_normal(shape.shape, np.float32), shape.dtype)
  return jax.tree_util.tree_map_with_path(leaf, model.param_shapes())


def stack(tree: Tree, k: int) -> Tree:
  return jax.tree_util.tree_map(lambda x: jnp.repeat(jnp.asarray(x)[None], k, axis=0), tree)


def client_batches(k: int, steps: int, batch: int, size: int, classes: int,
                   seed: int = 0) -> tuple[ClientBatches, np.ndarray]:
  """Random uint8 pixels [K, S, B, H, W, 3], labels [K, S, B], masks all True (host numpy);
  and each client's label histogram [K, C]."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, classes, (k, steps, batch)).astype(np.int32)
  hist = np.stack([np.bincount(labels[i].ravel(), minlength=classes) for i in range(k)])
  pixels = np.frombuffer(rng.bytes(k * steps * batch * size * size * 3), np.uint8)
  return (ClientBatches(pixels.reshape(k, steps, batch, size, size, 3), labels,
                        np.ones((k, steps, batch), bool)), hist.astype(np.float32))


def round_inputs(v: Variant, batches: ClientBatches, hist: np.ndarray, k: int, padded: int,
                 mesh) -> RoundInputs:
  """The round's inputs for K real clients padded to `padded` (weight 0, masks False)."""
  pad = lambda x: x if padded == k else np.concatenate(
      [x, np.zeros((padded - k,) + x.shape[1:], x.dtype)])
  real = np.arange(padded) < k
  b = ClientBatches(pad(batches.pixels), pad(batches.labels),
                    pad(batches.mask) & real[:, None, None])
  client = jax.vmap(v.method.init_client)(jnp.asarray(pad(hist)))
  return mesh_lib.shard_clients(mesh, RoundInputs(
      b, real.astype(np.float32), np.arange(padded, dtype=np.int32),
      stack(v.personal, padded), client))


def server_state(v: Variant) -> ServerState:
  """A fresh server state (its own buffers: the round donates it)."""
  state = init_server_state(v.method, v.server_tx, v.shared, v.aux)
  return jax.tree_util.tree_map(jnp.copy, state)
