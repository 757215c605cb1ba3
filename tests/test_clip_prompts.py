"""Prompt hooks: absent prompts are the plain model; deep prompts replace; gradients reach prompts.

The references here are rebuilt by hand from the model's own blocks (embeddings,
one encoder layer, LayerNorm), applied one at a time in a Python loop.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clip_fixtures import fixture_dir, reference
from fedprompt_jax.models import hf_loader
from fedprompt_jax.models.clip import EncoderLayer, TextEmbeddings, VisionEmbeddings, normalize


@pytest.fixture(scope="module")
def clip_b():
  model, params, _ = hf_loader.load_clip(fixture_dir("clip_tiny_b"))  # 3 vision, 3 text layers
  return model, params, reference("clip_tiny_b")


def rand(key, shape, scale=0.5):
  return scale * jax.random.normal(jax.random.key(key), shape)


def manual_vision_cls(model, params, pixels, shallow, deep, deep_start, accumulate=False):
  """Python-loop reference of the visual prompt rules in clip.py's docstring."""
  cfg = model.config.vision
  vp = params["vision_model"]
  norm = (pixels - jnp.asarray(model.config.image_mean)) / jnp.asarray(model.config.image_std)
  x = VisionEmbeddings(cfg).apply({"params": vp["embeddings"]}, norm)
  b = x.shape[0]
  tile = lambda t: jnp.broadcast_to(t, (b,) + t.shape[1:])
  parts = [x[:, :1]]
  if shallow is not None:
    parts.append(tile(shallow))
  slot = 1 + (0 if shallow is None else shallow.shape[1])
  if deep is not None and deep_start == 0:
    parts.append(tile(deep[0]))
  x = jnp.concatenate(parts + [x[:, 1:]], axis=1)
  ln = lambda name, v: nn.LayerNorm(cfg.layer_norm_eps).apply({"params": vp[name]}, v)
  x = ln("pre_layrnorm", x)
  for layer in range(cfg.num_hidden_layers):
    i = layer - deep_start
    if deep is not None and 0 <= i < deep.shape[0] and layer > 0:
      if i == 0:
        x = jnp.concatenate([x[:, :slot], tile(deep[0]), x[:, slot:]], axis=1)
      else:
        p = deep.shape[2]
        if accumulate:  # the wrong rule, for the test below
          x = x.at[:, slot:slot + p].add(tile(deep[i]))
        else:
          x = x.at[:, slot:slot + p].set(tile(deep[i]))
    x = EncoderLayer(cfg).apply({"params": vp["encoder"][f"layers_{layer}"]}, x, None)
  return ln("post_layernorm", x[:, 0])


@pytest.mark.parametrize("with_shallow,deep_len,deep_start", [
    (True, 0, 0), (False, 3, 0), (False, 2, 0), (True, 2, 1), (False, 1, 2), (True, 3, 0)])
def test_visual_prompts_follow_the_documented_rules(clip_b, with_shallow, deep_len, deep_start):
  model, params, ref = clip_b
  d = model.config.vision.hidden_size
  pixels = ref["pixels"][:3]
  shallow = rand(1, (1, 2, d)) if with_shallow else None
  deep = rand(2, (deep_len, 3, 4, d)) if deep_len else None  # per-sample deep prompts
  ours = model.encode_image(params, pixels, shallow, deep, deep_start).pooled
  manual = manual_vision_cls(model, params, pixels, shallow, deep, deep_start)
  np.testing.assert_allclose(ours, manual, atol=1e-5, rtol=1e-5)


def test_deep_prompts_replace_and_do_not_accumulate(clip_b):
  """Before layer i >= 1 the slots hold deep[i], not deep[i] + what layer i-1 made of them."""
  model, params, ref = clip_b
  d = model.config.vision.hidden_size
  pixels = ref["pixels"][:2]
  deep = rand(3, (3, 1, 3, d))
  ours = model.encode_image(params, pixels, deep=deep).pooled
  replaced = manual_vision_cls(model, params, pixels, None, deep, 0)
  accumulated = manual_vision_cls(model, params, pixels, None, deep, 0, accumulate=True)
  np.testing.assert_allclose(ours, replaced, atol=1e-5)
  assert np.abs(np.asarray(ours - accumulated)).max() > 1e-2
  # Every deep[i] is used (a random change of deep[1] moves the CLS output).
  changed = model.encode_image(params, pixels, deep=deep.at[1].add(rand(9, (1, 3, d)))).pooled
  assert np.abs(np.asarray(changed - ours)).max() > 1e-4


def test_absent_and_identity_text_prompts_give_the_plain_model(clip_b):
  model, params, ref = clip_b
  ids, mask = ref["input_ids"], ref["attention_mask"]
  plain = model.encode_text(params, ids, mask).embeds
  np.testing.assert_allclose(normalize(plain), ref["text_embeds"], atol=1e-5)
  # CoOp context equal to the placeholder tokens' own embeddings is the plain model, exactly.
  table = params["text_model"]["embeddings"]["token_embedding"]["embedding"]
  ctx = table[ids[:, 1:4]]  # [N, 3, Dt]
  np.testing.assert_array_equal(model.encode_text(params, ids, mask, prompts=ctx).embeds, plain)
  # Deep prompts that re-insert what the residual stream holds are also the identity.
  emb = TextEmbeddings(model.config.text).apply(
      {"params": params["text_model"]["embeddings"]}, ids, None, 1)
  x1 = EncoderLayer(model.config.text).apply(
      {"params": params["text_model"]["encoder"]["layers_0"]}, emb,
      jnp.where(jnp.tril(jnp.ones((ids.shape[1],) * 2, bool))[None, None]
                & (mask[:, None, None, :] > 0), 0.0, jnp.finfo(jnp.float32).min))
  deep = jnp.stack([ctx, x1[:, 1:4]])
  np.testing.assert_allclose(model.encode_text(params, ids, mask, deep_prompts=deep).embeds,
                             plain, atol=1e-5)


def test_text_prompts_change_only_what_follows_them(clip_b):
  model, params, ref = clip_b
  ids, mask = ref["input_ids"], ref["attention_mask"]
  ctx = rand(4, (1, 3, model.config.text.hidden_size))
  out = model.encode_text(params, ids, mask, prompts=ctx)
  plain = model.encode_text(params, ids, mask)
  # Causal mask: position 0 (BOS) cannot see the prompts; the EOS feature can.
  np.testing.assert_allclose(out.tokens[:, 0], plain.tokens[:, 0], atol=1e-6)
  assert np.abs(np.asarray(out.embeds - plain.embeds)).max() > 1e-3


def test_gradients_reach_every_prompt_and_only_prompts(clip_b):
  model, params, ref = clip_b
  dv, dt = model.config.vision.hidden_size, model.config.text.hidden_size
  prompts = {"shallow": rand(5, (1, 2, dv), 0.1), "deep": rand(6, (3, 1, 2, dv), 0.1),
             "text": rand(7, (3, 1, 3, dt), 0.1)}
  pixels, ids, mask = ref["pixels"], ref["input_ids"], ref["attention_mask"]

  def loss(frozen, p):
    img = model.encode_image(frozen, pixels, p["shallow"], p["deep"]).embeds
    txt = model.encode_text(frozen, ids, mask, deep_prompts=p["text"]).embeds
    logits = 10.0 * normalize(img) @ normalize(txt).T
    return -jax.nn.log_softmax(logits)[:, 0].mean()

  grads = jax.jit(jax.grad(loss, argnums=1))(params, prompts)
  assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(prompts)
  for g in (grads["shallow"], *grads["deep"], *grads["text"]):  # every layer's prompt
    assert np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).max() > 0


def test_bfloat16_and_remat_variants(clip_b):
  model, params, ref = clip_b
  from fedprompt_jax.models.clip import Clip  # pylint: disable=import-outside-toplevel
  pixels = ref["pixels"]
  deep = rand(8, (2, 1, 2, model.config.vision.hidden_size), 0.1)
  f32 = model.encode_image(params, pixels, deep=deep).embeds
  remat = Clip(model.config, remat=True)
  np.testing.assert_allclose(remat.encode_image(params, pixels, deep=deep).embeds, f32,
                             atol=1e-6)
  g = lambda m: jax.grad(lambda d: m.encode_image(params, pixels, deep=d).embeds.sum())(deep)
  np.testing.assert_allclose(g(remat), g(model), atol=1e-5)
  bf16 = Clip(model.config, dtype=jnp.bfloat16).encode_image(params, pixels, deep=deep).embeds
  assert bf16.dtype == jnp.float32
  cos = np.asarray((normalize(bf16) * normalize(f32)).sum(-1))
  assert cos.min() > 0.99, cos


def test_attacks_through_remat_and_bfloat16_towers(clip_b):
  """An attack's pixel gradient is the same with remat on; in bfloat16 the perturbation stays
  float32 (pixels are normalised in float32, the tower casts after) and the attack still bites."""
  from fedprompt_jax.attacks import make_attack  # pylint: disable=import-outside-toplevel
  from fedprompt_jax.models.clip import Clip  # pylint: disable=import-outside-toplevel
  model, params, ref = clip_b
  x = jnp.asarray(ref["pixels"], jnp.float32)  # [B, H, W, 3] in [0, 1]
  text = normalize(rand(3, (4, model.config.projection_dim), 1.0))
  y = jnp.arange(x.shape[0]) % 4

  def logits_of(m):
    return lambda v: 10.0 * normalize(m.encode_image(params, v).embeds) @ text.T

  ce = lambda m: lambda v: -jnp.take_along_axis(jax.nn.log_softmax(logits_of(m)(v)),
                                               y[:, None], 1).sum()
  remat = Clip(model.config, remat=True)
  np.testing.assert_allclose(jax.grad(ce(remat))(x), jax.grad(ce(model))(x), atol=1e-6)
  attack = make_attack("pgd:linf:eps=8/255:steps=3")
  bf16 = Clip(model.config, dtype=jnp.bfloat16)
  x_adv = jax.jit(lambda v: attack(logits_of(bf16), v, y, jax.random.key(0)))(x)
  assert x_adv.dtype == jnp.float32
  assert float(jnp.abs(x_adv - x).max()) <= 8 / 255 + 1e-6
  assert float(ce(bf16)(x_adv)) > float(ce(bf16)(x))
