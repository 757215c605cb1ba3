"""CLIP in flax.linen, numerically the transformers `CLIPModel`, with prompt hooks.

Module and parameter names mirror transformers' (`vision_model/encoder/layers_3/
self_attn/q_proj/kernel` is `vision_model.encoder.layers.3.self_attn.q_proj.weight`),
so `hf_loader` maps checkpoints by name alone.

Prompts are explicit inputs; nothing here is trainable by a method (DESIGN §2.2):

* Visual prompts. `shallow` [B|1, Ps, Dv] tokens enter with the patch tokens and
  flow through every layer. `deep` [Ld, B|1, Pd, Dv] tokens occupy their own
  slots from layer `deep_start` on: `deep[0]` is inserted before layer
  `deep_start`, and `deep[i]` *replaces* the slot contents before layer
  `deep_start + i` (VPT-deep / MaPLe); after the last one the slots flow on.
  Tokens entering at layer 0 pass through `pre_layrnorm` with the image tokens;
  tokens entering later join the residual stream as they are. Sequence layout:
  [CLS, shallow, deep, patches]. The vision tower has no attention mask and
  prompts get no position embedding, so the order changes nothing but the
  index of the CLS token, which stays 0.
* Text prompts (CoOp). `prompts` [N|1, M, Dt] overwrite the token embeddings at
  positions `prompt_start .. prompt_start+M-1` (the placeholder tokens that
  follow BOS) before the position embedding is added. `deep_prompts`
  [Ld, N|1, M, Dt] do the same for layer 0 and then replace the residual stream
  at those positions before layers 1..Ld-1 (MaPLe-style deep text prompts).

Pixels enter in [0, 1] as [B, H, W, 3]; CLIP's mean/std normalisation is done
here, so attacks can work in pixel space.

Shapes: B images, N texts, T text length, P prompt tokens, L layers, D width,
E joint embedding dim, Np patches.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fedprompt_jax.models.clip_config import ClipConfig, TowerConfig, VisionConfig, TextConfig

Array = jax.Array


def _activation(name: str) -> Callable[[Array], Array]:
  if name == "quick_gelu":
    return lambda x: x * jax.nn.sigmoid(1.702 * x)
  if name == "gelu":
    return lambda x: jax.nn.gelu(x, approximate=False)
  if name in ("gelu_new", "gelu_pytorch_tanh"):
    return lambda x: jax.nn.gelu(x, approximate=True)
  if name == "relu":
    return jax.nn.relu
  raise ValueError(f"unknown activation {name!r}")


class ImageOutput(NamedTuple):
  embeds: Array        # [B, E] projected CLS feature (not normalised)
  pooled: Array        # [B, Dv] CLS after post_layernorm, before the projection
  tokens: Array        # [B, S, Dv] last hidden state (before post_layernorm)
  patch_embeds: Array  # [B, Np, Dv] patch tokens after patch + position embedding


class TextOutput(NamedTuple):
  embeds: Array  # [N, E] projected EOS feature (not normalised)
  pooled: Array  # [N, Dt] EOS token after final_layer_norm
  tokens: Array  # [N, T, Dt] last hidden state after final_layer_norm


class Attention(nn.Module):
  config: TowerConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, bias: Array | None) -> Array:
    """x: [B, S, D]; bias: additive mask broadcastable to [B, H, S, S] or None."""
    cfg = self.config
    dense = lambda name: nn.Dense(cfg.hidden_size, dtype=self.dtype, name=name)
    split = lambda t: t.reshape(t.shape[:-1] + (cfg.num_attention_heads, cfg.head_dim))
    q = split(dense("q_proj")(x)) * (cfg.head_dim ** -0.5)
    k = split(dense("k_proj")(x))
    v = split(dense("v_proj")(x))
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32)
    if bias is not None:
      scores = scores + bias
    weights = jax.nn.softmax(scores, axis=-1).astype(self.dtype)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(x.shape[:-1] + (cfg.hidden_size,))
    return dense("out_proj")(out)


class MLP(nn.Module):
  config: TowerConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    x = nn.Dense(self.config.intermediate_size, dtype=self.dtype, name="fc1")(x)
    x = _activation(self.config.hidden_act)(x)
    return nn.Dense(self.config.hidden_size, dtype=self.dtype, name="fc2")(x)


class EncoderLayer(nn.Module):
  """Pre-LN transformer block: x + attn(ln1(x)), then x + mlp(ln2(x))."""
  config: TowerConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, bias: Array | None) -> Array:
    ln = lambda name: nn.LayerNorm(self.config.layer_norm_eps, dtype=self.dtype, name=name)
    x = x + Attention(self.config, self.dtype, name="self_attn")(ln("layer_norm1")(x), bias)
    return x + MLP(self.config, self.dtype, name="mlp")(ln("layer_norm2")(x))


def _broadcast_batch(p: Array, batch: int) -> Array:
  """[1|B, P, D] -> [B, P, D]."""
  return jnp.broadcast_to(p, (batch,) + p.shape[1:])


class Encoder(nn.Module):
  """The layer stack, with deep-prompt insertion/replacement between layers.

  Layer-0 prompts are the tower's business (they enter with the embeddings);
  the encoder handles deep[i] for layers deep_start + i >= 1.
  """
  config: TowerConfig
  dtype: Any = jnp.float32
  remat: bool = False

  @nn.compact
  def __call__(self, x: Array, bias: Array | None, deep: Array | None = None,
               deep_start: int = 0, slot: int = 1) -> Array:
    """x: [B, S, D]; deep: [Ld, B|1, P, D]; slot: first sequence index of the deep tokens."""
    layer_cls = nn.remat(EncoderLayer) if self.remat else EncoderLayer
    batch = x.shape[0]
    for layer in range(self.config.num_hidden_layers):
      i = layer - deep_start
      if deep is not None and 0 <= i < deep.shape[0] and layer >= 1:
        tokens = _broadcast_batch(deep[i].astype(x.dtype), batch)
        if i == 0:  # the slots open here
          x = jnp.concatenate([x[:, :slot], tokens, x[:, slot:]], axis=1)
        else:
          x = jax.lax.dynamic_update_slice_in_dim(x, tokens, slot, axis=1)
      x = layer_cls(self.config, self.dtype, name=f"layers_{layer}")(x, bias)
    return x


class VisionEmbeddings(nn.Module):
  config: VisionConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, pixels: Array) -> Array:
    """pixels: normalised [B, H, W, C] -> [B, 1 + Np, Dv] (CLS first)."""
    cfg = self.config
    patches = nn.Conv(cfg.hidden_size, (cfg.patch_size,) * 2, strides=(cfg.patch_size,) * 2,
                      padding="VALID", use_bias=False, dtype=self.dtype,
                      name="patch_embedding")(pixels)
    patches = patches.reshape(patches.shape[0], -1, cfg.hidden_size)
    cls = self.param("class_embedding", nn.initializers.normal(cfg.hidden_size ** -0.5),
                     (cfg.hidden_size,))
    pos = nn.Embed(cfg.num_patches + 1, cfg.hidden_size, name="position_embedding").embedding
    cls = jnp.broadcast_to(cls.astype(patches.dtype), (patches.shape[0], 1, cfg.hidden_size))
    return jnp.concatenate([cls, patches], axis=1) + pos[None].astype(patches.dtype)


class VisionTransformer(nn.Module):
  config: VisionConfig
  image_mean: tuple[float, ...]
  image_std: tuple[float, ...]
  dtype: Any = jnp.float32
  remat: bool = False

  @nn.compact
  def __call__(self, pixels: Array, shallow: Array | None = None, deep: Array | None = None,
               deep_start: int = 0) -> tuple[Array, Array, Array]:
    """Returns (tokens [B, S, Dv], pooled [B, Dv], patch_embeds [B, Np, Dv])."""
    cfg = self.config
    expected = (cfg.image_size, cfg.image_size, cfg.num_channels)
    if pixels.shape[1:] != expected:
      raise ValueError(f"pixels of shape {pixels.shape}; expected [B, {expected[0]}, "
                       f"{expected[1]}, {expected[2]}] in [0, 1]")
    mean = jnp.asarray(self.image_mean, jnp.float32)
    std = jnp.asarray(self.image_std, jnp.float32)
    pixels = ((pixels.astype(jnp.float32) - mean) / std).astype(self.dtype)
    x = VisionEmbeddings(cfg, self.dtype, name="embeddings")(pixels)
    patch_embeds = x[:, 1:]
    batch = x.shape[0]
    entering = [x[:, :1]]
    num_shallow = 0
    if shallow is not None:
      entering.append(_broadcast_batch(shallow.astype(x.dtype), batch))
      num_shallow = shallow.shape[1]
    if deep is not None and deep_start == 0:
      entering.append(_broadcast_batch(deep[0].astype(x.dtype), batch))
    entering.append(patch_embeds)
    x = jnp.concatenate(entering, axis=1) if len(entering) > 2 else x
    x = nn.LayerNorm(cfg.layer_norm_eps, dtype=self.dtype, name="pre_layrnorm")(x)
    x = Encoder(cfg, self.dtype, self.remat, name="encoder")(
        x, None, deep=deep, deep_start=deep_start, slot=1 + num_shallow)
    pooled = nn.LayerNorm(cfg.layer_norm_eps, dtype=self.dtype, name="post_layernorm")(x[:, 0])
    return x, pooled, patch_embeds


class TextEmbeddings(nn.Module):
  config: TextConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, input_ids: Array, prompts: Array | None, prompt_start: int) -> Array:
    """[N, T] ids -> [N, T, Dt]; prompts [N|1, M, Dt] overwrite tokens prompt_start.. first."""
    cfg = self.config
    x = nn.Embed(cfg.vocab_size, cfg.hidden_size, dtype=self.dtype,
                 name="token_embedding")(input_ids)
    if prompts is not None:
      tokens = _broadcast_batch(prompts.astype(x.dtype), x.shape[0])
      x = jax.lax.dynamic_update_slice_in_dim(x, tokens, prompt_start, axis=1)
    pos = nn.Embed(cfg.max_position_embeddings, cfg.hidden_size,
                   name="position_embedding").embedding
    return x + pos[None, :input_ids.shape[1]].astype(x.dtype)


class TextTransformer(nn.Module):
  config: TextConfig
  dtype: Any = jnp.float32
  remat: bool = False

  @nn.compact
  def __call__(self, input_ids: Array, attention_mask: Array | None = None,
               deep_prompts: Array | None = None,
               prompt_start: int = 1) -> tuple[Array, Array]:
    """input_ids: [N, T] int. Returns (tokens [N, T, Dt], pooled [N, Dt])."""
    cfg = self.config
    length = input_ids.shape[1]
    if length > cfg.max_position_embeddings:
      raise ValueError(f"text length {length} > max_position_embeddings "
                       f"{cfg.max_position_embeddings}")
    first = None if deep_prompts is None else deep_prompts[0]
    x = TextEmbeddings(cfg, self.dtype, name="embeddings")(input_ids, first, prompt_start)
    # Causal mask plus key padding mask, as an additive float32 bias [N|1, 1, T, T].
    neg = jnp.finfo(jnp.float32).min
    allowed = jnp.tril(jnp.ones((length, length), bool))[None, None]
    if attention_mask is not None:
      allowed = allowed & (attention_mask[:, None, None, :] > 0)
    bias = jnp.where(allowed, 0.0, neg).astype(jnp.float32)
    x = Encoder(cfg, self.dtype, self.remat, name="encoder")(
        x, bias, deep=deep_prompts, deep_start=0, slot=prompt_start)
    x = nn.LayerNorm(cfg.layer_norm_eps, dtype=self.dtype, name="final_layer_norm")(x)
    if cfg.eos_token_id == 2:
      # Legacy configs (before transformers PR #24773): EOS is the largest id.
      eos_pos = jnp.argmax(input_ids, axis=-1)
    else:
      eos_pos = jnp.argmax((input_ids == cfg.eos_token_id).astype(jnp.int32), axis=-1)
    pooled = jnp.take_along_axis(x, eos_pos[:, None, None], axis=1)[:, 0]
    return x, pooled


class CLIPModule(nn.Module):
  """The linen module; use it through `Clip`, which holds it with its config."""
  config: ClipConfig
  dtype: Any = jnp.float32
  remat: bool = False

  def setup(self):
    cfg = self.config
    self.vision_model = VisionTransformer(cfg.vision, cfg.image_mean, cfg.image_std,
                                          self.dtype, self.remat)
    self.text_model = TextTransformer(cfg.text, self.dtype, self.remat)
    self.visual_projection = nn.Dense(cfg.projection_dim, use_bias=False, dtype=self.dtype)
    self.text_projection = nn.Dense(cfg.projection_dim, use_bias=False, dtype=self.dtype)
    self.logit_scale = self.param(
        "logit_scale", nn.initializers.constant(cfg.logit_scale_init_value), ())

  def encode_image(self, pixels, shallow=None, deep=None, deep_start=0) -> ImageOutput:
    tokens, pooled, patch_embeds = self.vision_model(pixels, shallow, deep, deep_start)
    embeds = self.visual_projection(pooled)
    return ImageOutput(embeds.astype(jnp.float32), pooled, tokens, patch_embeds)

  def encode_text(self, input_ids, attention_mask=None, deep_prompts=None,
                  prompt_start=1) -> TextOutput:
    tokens, pooled = self.text_model(input_ids, attention_mask, deep_prompts, prompt_start)
    return TextOutput(self.text_projection(pooled).astype(jnp.float32), pooled, tokens)

  def __call__(self, pixels, input_ids, attention_mask=None):
    image = self.encode_image(pixels).embeds
    text = self.encode_text(input_ids, attention_mask).embeds
    return logits_per_image(image, text, self.logit_scale)


def normalize(x: Array) -> Array:
  """L2-normalises the last axis (as transformers does before the logits)."""
  return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def logits_per_image(image_embeds: Array, text_embeds: Array, logit_scale: Array) -> Array:
  """[B, E] x [C, E] -> [B, C]: exp(logit_scale) * cosine similarity."""
  return jnp.exp(logit_scale) * normalize(image_embeds) @ normalize(text_embeds).T


@dataclasses.dataclass(frozen=True)
class Clip:
  """A CLIP architecture with pure functions of its (frozen) parameter tree.

  The parameters are never stored here: every function takes them as an
  argument, so callers pass them into `jit` rather than closing over them.
  """
  config: ClipConfig
  dtype: Any = jnp.float32
  remat: bool = False

  @property
  def module(self) -> CLIPModule:
    return CLIPModule(self.config, self.dtype, self.remat)

  def init(self, rng: Array) -> dict[str, Any]:
    """Random parameters (for tests and from-scratch pretraining only)."""
    v, t = self.config.vision, self.config.text
    pixels = jnp.zeros((1, v.image_size, v.image_size, v.num_channels), jnp.float32)
    ids = jnp.zeros((1, t.max_position_embeddings), jnp.int32)
    return self.module.init(rng, pixels, ids)["params"]

  def param_shapes(self) -> dict[str, Any]:
    """The parameter tree as `jax.ShapeDtypeStruct`s, without allocating it."""
    return jax.eval_shape(self.init, jax.random.key(0))

  def encode_image(self, params, pixels: Array, shallow: Array | None = None,
                   deep: Array | None = None, deep_start: int = 0) -> ImageOutput:
    """pixels [B, H, W, 3] in [0, 1]; shallow [B|1, Ps, Dv]; deep [Ld, B|1, Pd, Dv]."""
    return self.module.apply({"params": params}, pixels, shallow, deep, deep_start,
                             method=CLIPModule.encode_image)

  def encode_text(self, params, input_ids: Array, attention_mask: Array | None = None,
                  prompts: Array | None = None, deep_prompts: Array | None = None,
                  prompt_start: int = 1) -> TextOutput:
    """input_ids [N, T]; prompts [N|1, M, Dt] (shallow) or deep_prompts [Ld, N|1, M, Dt]."""
    if prompts is not None:
      if deep_prompts is not None:
        raise ValueError("give either prompts (shallow) or deep_prompts, not both")
      deep_prompts = prompts[None]
    return self.module.apply({"params": params}, input_ids, attention_mask, deep_prompts,
                             prompt_start, method=CLIPModule.encode_text)

  def logits(self, params, pixels: Array, input_ids: Array,
             attention_mask: Array | None = None) -> Array:
    """logits_per_image [B, N], as transformers' CLIPModel computes them."""
    return self.module.apply({"params": params}, pixels, input_ids, attention_mask)


def count_params(tree) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))
