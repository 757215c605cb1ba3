"""FedAPT's class-aware prompt generator g_phi as pure functions of a parameter dict.

One generator maps one layer's text-side queries to that layer's visual prompts:

  attention  V = proj(LN(h2)),  h2 = h1 + MLP(LN(h1)),  h1 = q + MHA(LN(q), LN(G))   (use_gle)
                                                         h1 = q                     (no G)
  linear     V = q W + b                                  (MaPLe's per-layer coupling)

with q = T_l + e_l [M, Dt] (T_l alone for "linear"), G [C, Dt] the Global Label
Embedding and proj: Dt -> Dv zero-initialised, so every V_l starts at 0.
Sharing one generator over J layers is `jax.vmap` with the parameters unmapped;
one generator per layer maps them too (leaves with a leading [J] axis). No
Python loop over layers.

Shapes: J layers, M prompt tokens, C classes, Dt text width, Dv vision width, H heads.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

KINDS = ("attention", "linear")
Tree = Any


def _dense(key, d_in: int, d_out: int, scale: float | None = None) -> dict:
  """kernel [d_in, d_out] ~ N(0, 1/d_in) (lecun normal) or zeros when scale == 0; bias zeros."""
  std = d_in ** -0.5 if scale is None else scale
  kernel = std * jax.random.normal(key, (d_in, d_out)) if std else jnp.zeros((d_in, d_out))
  return {"kernel": kernel, "bias": jnp.zeros((d_out,))}


def _layer_norm(width: int) -> dict:
  return {"scale": jnp.ones((width,)), "bias": jnp.zeros((width,))}


def init(key, kind: str, d_text: int, d_vision: int, use_gle: bool, mlp_ratio: int = 2) -> dict:
  """One generator's parameters (no layer axis)."""
  if kind == "linear":
    return {"proj": _dense(key, d_text, d_vision)}
  keys = jax.random.split(key, 6)
  hidden = mlp_ratio * d_text
  phi = {"ln_mlp": _layer_norm(d_text), "fc1": _dense(keys[4], d_text, hidden),
         "fc2": _dense(keys[5], hidden, d_text), "ln_out": _layer_norm(d_text),
         "proj": _dense(keys[0], d_text, d_vision, scale=0.0)}
  if use_gle:
    phi.update(ln_q=_layer_norm(d_text), ln_kv=_layer_norm(d_text),
               q=_dense(keys[1], d_text, d_text), k=_dense(keys[2], d_text, d_text),
               v=_dense(keys[3], d_text, d_text), o=_dense(jax.random.fold_in(keys[3], 1),
                                                           d_text, d_text))
  return phi


def _apply_dense(p, x):
  return x @ p["kernel"] + p["bias"]


def _apply_ln(p, x, eps: float = 1e-5):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(var + eps) * p["scale"] + p["bias"]


def cross_attention(phi: dict, q: jax.Array, g: jax.Array, heads: int) -> jax.Array:
  """Multi-head attention of queries q [M, Dt] over keys/values from G [C, Dt] -> [M, Dt]."""
  width = q.shape[-1]
  split = lambda t: t.reshape(t.shape[0], heads, width // heads)
  qh = split(_apply_dense(phi["q"], _apply_ln(phi["ln_q"], q))) * (width // heads) ** -0.5
  kv = _apply_ln(phi["ln_kv"], g)
  kh, vh = split(_apply_dense(phi["k"], kv)), split(_apply_dense(phi["v"], kv))
  weights = jax.nn.softmax(jnp.einsum("mhd,chd->hmc", qh, kh), axis=-1)
  out = jnp.einsum("hmc,chd->mhd", weights, vh).reshape(q.shape)
  return _apply_dense(phi["o"], out)


def apply(phi: dict, q: jax.Array, g: jax.Array | None, heads: int) -> jax.Array:
  """One layer: q [M, Dt], G [C, Dt] or None -> V [M, Dv]."""
  if "fc1" not in phi:  # linear
    return _apply_dense(phi["proj"], q)
  h = q
  if g is not None and "q" in phi:
    h = h + cross_attention(phi, q, g, heads)
  mlp = _apply_dense(phi["fc2"], jax.nn.gelu(_apply_dense(phi["fc1"], _apply_ln(phi["ln_mlp"], h))))
  h = h + mlp
  return _apply_dense(phi["proj"], _apply_ln(phi["ln_out"], h))


def apply_layers(phi: dict, queries: jax.Array, g: jax.Array | None, heads: int,
                 shared: bool) -> jax.Array:
  """All layers at once: queries [J, M, Dt] -> V [J, M, Dv]; phi without (shared) or with a [J] axis."""
  return jax.vmap(lambda p, q: apply(p, q, g, heads),
                  in_axes=(None if shared else 0, 0))(phi, queries)


def init_layers(key, num_layers: int, shared: bool, **kwargs) -> dict:
  """Shared: one generator; otherwise J generators stacked on a leading [J] axis (one vmap)."""
  if shared:
    return init(key, **kwargs)
  return jax.vmap(lambda k: init(k, **kwargs))(jax.random.split(key, num_layers))
