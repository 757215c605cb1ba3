"""FedMVP's PromptFormer: image patches attend to class-attribute text features.

Pure functions over an explicit parameter tree (no linen), so that every leaf
is visible to the optimizer masks of the LoRA switch and to the tests:

  kv   Linear E -> D on the attribute text features t_{c,j} (keys = values).
  ln_q, ln_kv   LayerNorms on the queries (patch tokens) and on the keys/values.
  attn {q, k, v, out}   multi-head cross-attention, **no residual**.
  ff   {ln, fc1, fc2}   GEGLU feed-forward LN -> Linear(D, 2 mult D) -> GEGLU ->
       Linear(mult D, D), **with** a residual around it.
  lora {q, k, v}: {a [D, r], b [r, D]} (only when rank r > 0): q = x Wq + bq + (x A) B,
       B zero-initialised so LoRA starts as the identity.

The output tokens are average-pooled over the patch axis to P prompt tokens
(torch's AdaptiveAvgPool1d: token i averages patches floor(i Np / P) ..
ceil((i + 1) Np / P) - 1).

Shapes: B images, Np patches, M = C x J attribute sentences, D vision width,
E joint embedding dim, P prompt tokens, r LoRA rank.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Tree = Any
LN_EPS = 1e-5  # torch's LayerNorm default, as the released code uses


def _dense(key, fan_in: int, fan_out: int, bias: bool = True) -> Tree:
  """torch.nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) weights; zero bias (ours)."""
  bound = fan_in ** -0.5
  out = {"kernel": jax.random.uniform(key, (fan_in, fan_out), jnp.float32, -bound, bound)}
  if bias:
    out["bias"] = jnp.zeros((fan_out,), jnp.float32)
  return out


def _ln(width: int) -> Tree:
  return {"scale": jnp.ones((width,), jnp.float32), "bias": jnp.zeros((width,), jnp.float32)}


def init(key, embed_dim: int, width: int, mult: int = 4, lora_rank: int = 0,
         lora_init_std: float = 0.02) -> Tree:
  """The PromptFormer's parameters (see the module docstring for the tree)."""
  keys = jax.random.split(key, 10)
  params = {
      "kv": _dense(keys[0], embed_dim, width),
      "ln_q": _ln(width), "ln_kv": _ln(width),
      "attn": {name: _dense(k, width, width) for name, k in
               zip(("q", "k", "v", "out"), keys[1:5])},
      "ff": {"ln": _ln(width), "fc1": _dense(keys[5], width, 2 * mult * width),
             "fc2": _dense(keys[6], mult * width, width)},
  }
  if lora_rank > 0:
    params["lora"] = {
        name: {"a": lora_init_std * jax.random.normal(k, (width, lora_rank), jnp.float32),
               "b": jnp.zeros((lora_rank, width), jnp.float32)}
        for name, k in zip(("q", "k", "v"), keys[7:10])}
  return params


def layer_norm(p: Tree, x: jax.Array) -> jax.Array:
  mean = x.mean(-1, keepdims=True)
  var = jnp.square(x - mean).mean(-1, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(var + LN_EPS) * p["scale"] + p["bias"]


def linear(p: Tree, x: jax.Array) -> jax.Array:
  y = x @ p["kernel"]
  return y + p["bias"] if "bias" in p else y


def _projection(params: Tree, name: str, x: jax.Array) -> jax.Array:
  """Attention projection `name` (q, k or v), with its LoRA term when the tree has one."""
  y = linear(params["attn"][name], x)
  if "lora" in params:
    y = y + (x @ params["lora"][name]["a"]) @ params["lora"][name]["b"]
  return y


def cross_attention(params: Tree, queries: jax.Array, context: jax.Array,
                    context_mask: jax.Array | None, num_heads: int) -> jax.Array:
  """Multi-head attention of queries [B, Np, D] over context [M, D] -> [B, Np, D] (no residual).

  `context_mask` [M] bool: False entries are never attended to.
  """
  width = queries.shape[-1]
  if width % num_heads:
    raise ValueError(f"PromptFormer width {width} is not divisible by {num_heads} heads")
  head = width // num_heads
  q = _projection(params, "q", queries).reshape(queries.shape[:-1] + (num_heads, head))
  k = _projection(params, "k", context).reshape(context.shape[:-1] + (num_heads, head))
  v = _projection(params, "v", context).reshape(context.shape[:-1] + (num_heads, head))
  scores = jnp.einsum("bqhd,khd->bhqk", q * head ** -0.5, k)
  if context_mask is not None:
    scores = jnp.where(context_mask, scores, jnp.finfo(scores.dtype).min)
  weights = jax.nn.softmax(scores, axis=-1)
  out = jnp.einsum("bhqk,khd->bqhd", weights, v).reshape(queries.shape)
  return linear(params["attn"]["out"], out)


def feed_forward(p: Tree, x: jax.Array) -> jax.Array:
  """LN -> Linear(D, 2 mult D) -> GEGLU (x * gelu(gate), exact gelu) -> Linear(mult D, D)."""
  h = linear(p["fc1"], layer_norm(p["ln"], x))
  value, gate = jnp.split(h, 2, axis=-1)
  return linear(p["fc2"], value * jax.nn.gelu(gate, approximate=False))


def pool_matrix(num_in: int, num_out: int) -> np.ndarray:
  """[num_out, num_in] averaging weights of AdaptiveAvgPool1d(num_out) over num_in tokens."""
  weights = np.zeros((num_out, num_in), np.float32)
  for i in range(num_out):
    lo, hi = (i * num_in) // num_out, -(-((i + 1) * num_in) // num_out)
    weights[i, lo:hi] = 1.0 / (hi - lo)
  return weights


def apply(params: Tree, patches: jax.Array, text: jax.Array, text_mask: jax.Array | None,
          num_tokens: int, num_heads: int = 4) -> jax.Array:
  """Prompt tokens from patch tokens and attribute features.

  Args:
    params: the PromptFormer tree (`init`).
    patches: [B, Np, D] patch tokens after patch and position embedding (no CLS).
    text: [M, E] attribute text features (all classes' sentences, flattened).
    text_mask: [M] bool, False for padding sentences; None = all valid.
    num_tokens: P.
    num_heads: attention heads.

  Returns:
    [B, P, D] prompt tokens.
  """
  context = layer_norm(params["ln_kv"], linear(params["kv"], text))
  x = cross_attention(params, layer_norm(params["ln_q"], patches), context, text_mask,
                      num_heads)
  x = x + feed_forward(params["ff"], x)
  pool = jnp.asarray(pool_matrix(patches.shape[1], num_tokens), x.dtype)
  return jnp.einsum("pn,bnd->bpd", pool, x)
