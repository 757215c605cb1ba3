"""FedMVP: the PromptFormer, the attribute logits, the consistency loss, LoRA and the engine hook.

Hand computations in numpy (attention, pooling, the mean over attributes) and
independent paths through the CLIP (`encode_image(..).patch_embeds`, per-sentence
`encode_text`) are the references.
"""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from clip_fixtures import fixture_dir
from fedprompt_jax.fed.client import ClientBatches, make_local_update
from fedprompt_jax.methods import base, fedmvp, make_method, promptformer
from fedprompt_jax.models import hf_loader
from fedprompt_jax.models.clip import normalize
from fedprompt_jax.models.tokenizer import load_tokenizer

ATTRS = {"red circle": ("a photo of a red circle, which is round.",
                        "a photo of a red circle, which looks like a coin."),
         "blue star": ("a photo of a blue star, which has five points.",
                       "a blue star in the sky.", "a photo of a blue star, which is blue."),
         "seven": ("a handwritten digit seven.",)}


@pytest.fixture(scope="module")
def clip():
  model, frozen, ckpt = hf_loader.load_clip(fixture_dir("clip_tiny_b"))  # D 48, E 24, Np 16
  tok = load_tokenizer(ckpt, model.config.text.max_position_embeddings)
  return model, frozen, tok


def _method(clip, names=tuple(ATTRS), **config):
  model, frozen, tok = clip
  method = make_method("fedmvp", model, config)
  aux = method.prepare(base.Context(model, frozen, tok, names, {n: ATTRS[n] for n in names}))
  return method, aux


def _pixels(seed, n=3):
  return jax.random.uniform(jax.random.key(seed), (n, 32, 32, 3))


def _np_layer_norm(x, eps=1e-5):
  x = np.asarray(x, np.float64)
  return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)


def _np_attention(p, q_in, kv_in, heads):
  """Multi-head attention written head by head in float64 (no residual)."""
  f = lambda layer, x: x @ np.asarray(layer["kernel"], np.float64) + np.asarray(layer["bias"])
  q, k, v = f(p["q"], q_in), f(p["k"], kv_in), f(p["v"], kv_in)
  d = q.shape[-1] // heads
  outs = []
  for h in range(heads):
    s = q[..., h * d:(h + 1) * d] @ k[:, h * d:(h + 1) * d].T / np.sqrt(d)
    w = np.exp(s - s.max(-1, keepdims=True))
    outs.append((w / w.sum(-1, keepdims=True)) @ v[:, h * d:(h + 1) * d])
  return f(p["out"], np.concatenate(outs, -1))


def test_pool_matrix_is_adaptive_average_pooling():
  np.testing.assert_allclose(promptformer.pool_matrix(5, 2),
                             [[1 / 3, 1 / 3, 1 / 3, 0, 0], [0, 0, 1 / 3, 1 / 3, 1 / 3]])
  np.testing.assert_allclose(promptformer.pool_matrix(16, 4)[1], [0] * 4 + [0.25] * 4 + [0] * 8)


def test_promptformer_shapes_and_parameter_shapes():
  params = promptformer.init(jax.random.key(0), 24, 48, mult=4)
  assert params["kv"]["kernel"].shape == (24, 48)
  assert params["ff"]["fc1"]["kernel"].shape == (48, 8 * 48)   # Linear(D, 8D) then GEGLU
  assert params["ff"]["fc2"]["kernel"].shape == (4 * 48, 48)   # Linear(4D, D)
  patches = jax.random.normal(jax.random.key(1), (3, 16, 48))
  text = normalize(jax.random.normal(jax.random.key(2), (10, 24)))
  out = promptformer.apply(params, patches, text, None, num_tokens=4)
  assert out.shape == (3, 4, 48)
  assert promptformer.apply(params, patches, text, None, num_tokens=2).shape == (3, 2, 48)


def test_attention_has_no_residual_and_the_feed_forward_has_one():
  params = promptformer.init(jax.random.key(0), 24, 48)
  patches = 3.0 * jax.random.normal(jax.random.key(1), (2, 16, 48))
  text = normalize(jax.random.normal(jax.random.key(2), (6, 24)))
  # Zero attention: with no residual around it the block sees zeros, and the feed-forward of
  # zeros is zero (zero biases), so the prompts are exactly 0 whatever the patches.
  no_attn = copy.deepcopy(params)
  no_attn["attn"] = jax.tree_util.tree_map(jnp.zeros_like, params["attn"])
  out = promptformer.apply(no_attn, patches, text, None, num_tokens=4)
  np.testing.assert_array_equal(out, 0.0)
  # Zero feed-forward: the residual passes the attention output through unchanged.
  no_ff = copy.deepcopy(params)
  no_ff["ff"]["fc1"] = jax.tree_util.tree_map(jnp.zeros_like, params["ff"]["fc1"])
  no_ff["ff"]["fc2"] = jax.tree_util.tree_map(jnp.zeros_like, params["ff"]["fc2"])
  out = promptformer.apply(no_ff, patches, text, None, num_tokens=4)
  kv = _np_layer_norm(np.asarray(text, np.float64) @ np.asarray(params["kv"]["kernel"]))
  attn = _np_attention(params["attn"], _np_layer_norm(patches), kv, heads=4)  # [2, 16, 48]
  expected = attn.reshape(2, 4, 4, 48).mean(2)  # P = 4 blocks of 4 patches
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
  assert np.abs(expected).max() > 0.1


def test_masked_sentences_are_never_attended():
  params = promptformer.init(jax.random.key(0), 24, 48)
  patches = jax.random.normal(jax.random.key(1), (2, 16, 48))
  text = normalize(jax.random.normal(jax.random.key(2), (6, 24)))
  mask = jnp.array([True, True, False, True, False, True])
  masked = promptformer.apply(params, patches, text, mask, 4)
  dropped = promptformer.apply(params, patches, text[np.asarray(mask)], None, 4)
  np.testing.assert_allclose(masked, dropped, rtol=1e-5, atol=1e-6)


def test_patch_tokens_are_the_towers_own(clip):
  model, frozen, _ = clip
  x = _pixels(0)
  np.testing.assert_allclose(fedmvp.patch_tokens(model, frozen, x),
                             model.encode_image(frozen, x).patch_embeds, rtol=1e-6, atol=1e-6)


def test_logits_are_the_mean_over_each_class_attributes(clip):
  model, frozen, tok = clip
  method, aux = _method(clip)
  params = method.init(jax.random.key(3), aux)
  x = _pixels(1)
  ours = method.logits(frozen, params, aux, {}, {}, x, None)
  # By hand: prompts from the tower's own patch tokens, the prompted image feature, and
  # every sentence encoded on its own.
  image = model.encode_image(frozen, x).patch_embeds
  prompts = promptformer.apply(params, image, aux["text"].reshape(-1, 24),
                               aux["mask"].reshape(-1), 4)
  f = np.asarray(normalize(model.encode_image(frozen, x, shallow=prompts).embeds), np.float64)
  scale = float(np.exp(frozen["logit_scale"]))
  expected = np.zeros((3, 3))
  ids, mask = tok([s for name in ATTRS for s in ATTRS[name]])
  t = np.asarray(normalize(model.encode_text(frozen, ids, mask).embeds), np.float64)
  start = 0
  for c, name in enumerate(ATTRS):
    n = len(ATTRS[name])
    expected[:, c] = scale * (f @ t[start:start + n].T).mean(1)
    start += n
  np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)
  assert aux["text"].shape == (3, 3, 24) and aux["mask"].sum() == 6


def test_consistency_is_zero_without_prompts_and_flip(clip):
  model, frozen, _ = clip
  x = _pixels(2)
  plain = model.encode_image(frozen, x).embeds
  same = model.encode_image(frozen, fedmvp.random_flip(x, jax.random.key(0), 0.0)).embeds
  np.testing.assert_allclose(fedmvp.consistency(plain, same), 0.0, atol=1e-6)
  flipped = fedmvp.random_flip(x, jax.random.key(0), 1.0)
  np.testing.assert_array_equal(flipped, np.asarray(x)[:, :, ::-1])
  assert np.all(np.asarray(fedmvp.consistency(plain, model.encode_image(frozen, flipped).embeds))
                > 1e-4)


def test_loss_is_ce_plus_alpha_times_consistency(clip):
  model, frozen, _ = clip
  method, aux = _method(clip, consistency_weight=10.0, flip_prob=0.0)
  params = method.init(jax.random.key(4), aux)
  x, labels = _pixels(3), jnp.array([0, 2, 1])
  ours = method.example_loss(frozen, params, aux, {}, {}, x, labels, jax.random.key(5))
  logits = np.asarray(method.logits(frozen, params, aux, {}, {}, x, None), np.float64)
  ce = np.log(np.exp(logits).sum(1)) - logits[np.arange(3), labels]
  prompted = model.encode_image(
      frozen, x, shallow=promptformer.apply(params, fedmvp.patch_tokens(model, frozen, x),
                                            aux["text"].reshape(-1, 24),
                                            aux["mask"].reshape(-1), 4)).embeds
  a = np.asarray(normalize(prompted), np.float64)
  b = np.asarray(normalize(model.encode_image(frozen, x).embeds), np.float64)
  np.testing.assert_allclose(ours, ce + 10.0 * (1 - (a * b).sum(1)), rtol=1e-4)
  assert np.all(1 - (a * b).sum(1) > 1e-5)  # the prompts move the feature


def test_lora_off_has_no_lora_leaves_and_on_starts_as_identity(clip):
  model, frozen, _ = clip
  off, aux = _method(clip)
  params = off.init(jax.random.key(0), aux)
  assert "lora" not in params and off.control_step is None
  on, _ = _method(clip, lora_rank=8)
  lora_params = on.init(jax.random.key(0), aux)
  assert lora_params["lora"]["q"]["a"].shape == (48, 8)
  assert lora_params["lora"]["v"]["b"].shape == (8, 48)
  np.testing.assert_array_equal(lora_params["lora"]["k"]["b"], 0.0)
  x = _pixels(4)
  np.testing.assert_allclose(on.logits(frozen, lora_params, aux, {}, {}, x, None),
                             off.logits(frozen, params, aux, {}, {}, x, None), rtol=1e-6)
  moved = copy.deepcopy(lora_params)
  moved["lora"]["q"]["b"] = jnp.ones_like(moved["lora"]["q"]["b"])
  assert np.abs(np.asarray(on.logits(frozen, moved, aux, {}, {}, x, None) -
                           off.logits(frozen, params, aux, {}, {}, x, None))).max() > 1e-3


def _batches(x, labels, steps=2):
  s = lambda a: jnp.broadcast_to(a, (steps,) + a.shape)
  return ClientBatches((s(x) * 255).astype(jnp.uint8), s(labels),
                       jnp.ones((steps, x.shape[0]), bool))


def _flat(tree):
  return {"/".join(map(str, k)): np.asarray(v) for k, v in
          jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_lora_takes_over_per_client_at_the_threshold(clip):
  model, frozen, _ = clip
  probe, aux = _method(clip, lora_rank=8, consistency_weight=0.0)
  params = probe.init(jax.random.key(0), aux)
  x = _pixels(5, 4)
  logits = probe.logits(frozen, params, aux, {}, {}, x, None)
  easy, hard = jnp.argmax(logits, 1), jnp.argmin(logits, 1)  # a low and a high CE client
  ce = lambda y: float(probe.example_loss(frozen, params, aux, {}, {}, x, y, None).mean())
  low, high = ce(easy), ce(hard)
  assert low < high
  method, _ = _method(clip, lora_rank=8, consistency_weight=0.0,
                      lora_switch_loss=(low + high) / 2)
  update = make_local_update(method, optax.sgd(0.1, momentum=0.9))
  batches = jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), _batches(x, easy),
                                   _batches(x, hard))
  res = jax.jit(jax.vmap(lambda b, k: update(frozen, params, {}, {}, aux, {}, b, k)))(
      batches, jax.random.split(jax.random.key(1), 2))
  delta = _flat(res.delta)
  moved = lambda key, k: np.abs(delta[key][k]).max() > 0
  lora_keys = [k for k in delta if k.startswith("['lora']")]
  base_keys = [k for k in delta if k.startswith(("['attn']", "['ff']", "['ln_q']", "['ln_kv']"))]
  assert lora_keys and base_keys
  # Client 0 (loss below the threshold) trains LoRA (and the kv Linear) only.
  assert not any(moved(k, 0) for k in base_keys)
  assert any(moved(k, 0) for k in lora_keys) and moved("['kv']/['kernel']", 0)
  # Client 1 (above) trains the PromptFormer, never LoRA.
  assert not any(moved(k, 1) for k in lora_keys)
  assert all(moved(k, 1) for k in base_keys if "kernel" in k)


def test_step_once_per_round_is_one_step_on_the_last_nonempty_batch(clip):
  model, frozen, _ = clip
  method, aux = _method(clip, consistency_weight=0.0, step_once_per_round=True)
  params = method.init(jax.random.key(0), aux)
  xs = jnp.stack([_pixels(6), _pixels(7), _pixels(8)])
  labels = jnp.array([[0, 1, 2], [2, 2, 0], [1, 0, 0]])
  mask = jnp.array([[True] * 3, [True, True, False], [False] * 3])  # step 2 is padding
  batches = ClientBatches((xs * 255).astype(jnp.uint8), labels, mask)
  lr = 0.05
  update = make_local_update(method, optax.sgd(lr, momentum=0.9))
  res = jax.jit(lambda b: update(frozen, params, {}, {}, aux, {}, b, jax.random.key(0)))(batches)
  x1 = batches.pixels[1].astype(jnp.float32) / 255.0
  grad = jax.jit(jax.grad(lambda p: (method.example_loss(frozen, p, aux, {}, {}, x1, labels[1], None)
                                     * mask[1]).sum() / 2))(params)
  jax.tree_util.tree_map(
      lambda d, g: np.testing.assert_allclose(d, -lr * g, rtol=1e-3, atol=1e-7), res.delta, grad)


def test_gradients_never_reach_the_frozen_tree(clip):
  model, frozen, _ = clip
  method, aux = _method(clip, lora_rank=8)
  params = method.init(jax.random.key(0), aux)
  before = jax.tree_util.tree_map(np.array, frozen)
  update = make_local_update(method, optax.sgd(0.1, momentum=0.9))
  x = _pixels(9)
  res = jax.jit(update)(frozen, params, {}, {}, aux, {}, _batches(x, jnp.array([0, 1, 2])),
                        jax.random.key(0))
  # The update is over the prompt tree only, and the frozen tree is untouched.
  assert jax.tree_util.tree_structure(res.delta) == jax.tree_util.tree_structure(params)
  jax.tree_util.tree_map(np.testing.assert_array_equal, frozen, before)
  # The reference f0(x) of the consistency term is the frozen CLIP without prompts: the
  # loss's gradient equals that of CE + alpha (1 - cos(f(x), r)) with r a constant.
  plain, _ = _method(clip, flip_prob=0.0)
  y = jnp.array([0, 1, 2])
  r = normalize(model.encode_image(frozen, x).embeds)

  def by_hand(p):
    f = plain.logits(frozen, p, aux, {}, {}, x, None)
    ce = optax.softmax_cross_entropy_with_integer_labels(f, y)
    prompted = model.encode_image(frozen, x, shallow=promptformer.apply(
        p, fedmvp.patch_tokens(model, frozen, x), aux["text"].reshape(-1, 24),
        aux["mask"].reshape(-1), 4)).embeds
    return (ce + 10.0 * (1 - (normalize(prompted) * r).sum(-1))).sum()

  no_lora = {k: v for k, v in params.items() if k != "lora"}
  ours = jax.jit(jax.grad(lambda p: plain.example_loss(
      frozen, p, aux, {}, {}, x, y, jax.random.key(1)).sum()))(no_lora)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6),
                         ours, jax.jit(jax.grad(by_hand))(no_lora))
  assert np.abs(np.asarray(ours["ff"]["fc2"]["kernel"])).max() > 0


def test_missing_attributes_are_named(clip):
  model, frozen, tok = clip
  method = make_method("fedmvp", model, {})
  with pytest.raises(ValueError, match="data.attributes_file"):
    method.prepare(base.Context(model, frozen, tok, ("red circle",), None))
  with pytest.raises(ValueError, match="'seven'"):
    method.prepare(base.Context(model, frozen, tok, ("red circle", "seven"),
                                {"red circle": ATTRS["red circle"]}))
  with pytest.raises(ValueError, match="method.num_heads=5"):
    make_method("fedmvp", model, {"num_heads": 5})


def test_class_name_source_is_one_template_sentence_per_class(clip):
  model, frozen, tok = clip
  names = ("red circle", "blue star", "seven")
  method = make_method("fedmvp", model, {"attribute_source": "class_name",
                                         "templates": ("a {}.", "an image of a {}.")})
  # No attribute file is needed: the data set's sentences are not read.
  aux = method.prepare(base.Context(model, frozen, tok, names, None))
  assert aux["text"].shape == (3, 1, 24) and np.asarray(aux["mask"]).all()
  ids, mask = tok(["a red circle.", "a blue star.", "a seven."])
  want = normalize(model.encode_text(frozen, ids, mask).embeds)
  np.testing.assert_allclose(aux["text"][:, 0], want, rtol=1e-5, atol=1e-6)
  # The logits are then the CLIP similarity to that one sentence.
  params = method.init(jax.random.key(0), aux)
  x = _pixels(10)
  prompts = promptformer.apply(params, fedmvp.patch_tokens(model, frozen, x), aux["text"][:, 0],
                               None, 4)
  f = normalize(model.encode_image(frozen, x, shallow=prompts).embeds)
  np.testing.assert_allclose(method.logits(frozen, params, aux, {}, {}, x, None),
                             np.exp(frozen["logit_scale"]) * f @ want.T, rtol=1e-4, atol=1e-4)
  # The default reads the file's sentences (here the ATTRS table): a different aux.
  file_aux = make_method("fedmvp", model, {}).prepare(
      base.Context(model, frozen, tok, names, ATTRS))
  assert file_aux["text"].shape == (3, 3, 24)
  with pytest.raises(ValueError) as err:
    make_method("fedmvp", model, {"attribute_source": "names"})
  assert str(err.value) == ("method.attribute_source='names' is invalid; valid: file, "
                            "class_name")
