"""FedAPT: generator shapes and sharing, the Global Label Embedding, gradients, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clip_fixtures import fixture_dir
from fedprompt_jax.methods import base, make_method
from fedprompt_jax.methods import prompt_generator as gen
from fedprompt_jax.models import hf_loader
from fedprompt_jax.models.clip import count_params
from fedprompt_jax.models.tokenizer import load_tokenizer

NAMES = ("red circle", "blue star", "green heart", "seven")
OTHER = ("cat", "dog", "red circle", "yellow square", "tree", "house", "boat")


@pytest.fixture(scope="module")
def clip():
  model, frozen, ckpt = hf_loader.load_clip(fixture_dir("clip_tiny_b"))  # text 3 x 64, vision 3 x 48
  tok = load_tokenizer(ckpt, model.config.text.max_position_embeddings)
  return model, frozen, tok


def build(clip, names=NAMES, **config):
  model, frozen, tok = clip
  method = make_method("fedapt", model, dict({"num_ctx": 2, "depth": 9, "heads": 4}, **config))
  aux = method.prepare(base.Context(model, frozen, tok, names))
  return method, aux


def live(params, seed=3):
  """The init with its zero projection(s) replaced, so that V depends on everything."""
  proj = params["generator"]["proj"]
  kernel = 0.3 * jax.random.normal(jax.random.key(seed), proj["kernel"].shape)
  return dict(params, generator=dict(params["generator"], proj=dict(proj, kernel=kernel)))


PIXELS = jax.random.uniform(jax.random.key(1), (3, 32, 32, 3))


def test_depth_is_capped_by_the_shallower_tower_and_prompts_have_their_shapes(clip):
  method, aux = build(clip)
  params = method.init(jax.random.key(0), aux)
  assert params["text"].shape == (3, 2, 64)              # J = min(9, 3, 3), M = 2, Dt = 64
  assert params["layer_embed"].shape == (3, 64)
  assert aux["gle"].shape == (4, 64)                     # G [C, Dt]
  visual = gen.apply_layers(params["generator"], params["text"], aux["gle"], 4, shared=True)
  assert visual.shape == (3, 2, 48)                      # V [J, M, Dv]
  np.testing.assert_array_equal(visual, 0.0)             # zero-initialised projection
  small, small_aux = build(clip, depth=2)
  assert small.init(jax.random.key(0), small_aux)["text"].shape == (2, 2, 64)


def test_vmapped_layers_equal_one_generator_call_per_layer(clip):
  for shared in (True, False):
    method, aux = build(clip, share_generator=shared)
    p = live(method.init(jax.random.key(0), aux))
    queries = p["text"] + p["layer_embed"][:, None]
    out = gen.apply_layers(p["generator"], queries, aux["gle"], 4, shared)
    for l in range(3):
      phi = p["generator"] if shared else jax.tree_util.tree_map(lambda x: x[l], p["generator"])
      np.testing.assert_allclose(out[l], gen.apply(phi, queries[l], aux["gle"], 4), atol=1e-6)
    assert np.abs(np.asarray(out[0] - out[1])).max() > 1e-4  # layers differ (T_l, e_l)


def test_logits_are_the_prompted_towers_by_hand(clip):
  model, frozen, _ = clip
  method, aux = build(clip)
  p = live(method.init(jax.random.key(0), aux))
  queries = p["text"] + p["layer_embed"][:, None]
  g = aux["gle"]
  # Hand-written cross-attention block for layer 0 (one head at a time), then the towers.
  phi = p["generator"]
  ln = lambda q, x: (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) \
      * q["scale"] + q["bias"]
  dense = lambda q, x: x @ q["kernel"] + q["bias"]
  visual = []
  for l in range(3):
    q, kv = ln(phi["ln_q"], queries[l]), ln(phi["ln_kv"], g)
    qq, kk, vv = dense(phi["q"], q), dense(phi["k"], kv), dense(phi["v"], kv)
    heads = []
    for h in range(4):
      s = slice(16 * h, 16 * (h + 1))
      w = jax.nn.softmax(qq[:, s] @ kk[:, s].T / 4.0, axis=-1)
      heads.append(w @ vv[:, s])
    h1 = queries[l] + dense(phi["o"], jnp.concatenate(heads, -1))
    h2 = h1 + dense(phi["fc2"], jax.nn.gelu(dense(phi["fc1"], ln(phi["ln_mlp"], h1))))
    visual.append(dense(phi["proj"], ln(phi["ln_out"], h2)))
  visual = jnp.stack(visual)
  image = model.encode_image(frozen, PIXELS, deep=visual[:, None]).embeds
  text = model.encode_text(frozen, aux["ids"], aux["mask"], deep_prompts=p["text"][:, None]).embeds
  expected = base.cosine_logits(image, text, frozen["logit_scale"])
  ours = method.logits(frozen, p, aux, {}, {}, PIXELS, None)
  np.testing.assert_allclose(ours, expected, atol=2e-4)
  assert ours.shape == (3, 4)


def test_sharing_serves_all_layers_with_one_parameter_set(clip):
  shared, aux = build(clip)
  per_layer, _ = build(clip, share_generator=False)
  shallow, shallow_aux = build(clip, depth=1)
  g_shared = shared.init(jax.random.key(0), aux)["generator"]
  g_layers = per_layer.init(jax.random.key(0), aux)["generator"]
  g_one = shallow.init(jax.random.key(0), shallow_aux)["generator"]
  leaves = jax.tree_util.tree_leaves
  assert len(leaves(g_shared)) == len(leaves(g_layers)) == 22  # 11 blocks (7 dense, 4 layer norms) of 2 arrays
  assert count_params(g_shared) == count_params(g_one)        # independent of J
  assert count_params(g_layers) == 3 * count_params(g_shared)
  assert all(x.shape[0] == 3 for x in leaves(g_layers))
  assert jax.tree_util.tree_structure(g_shared) == jax.tree_util.tree_structure(g_layers)


def test_without_gle_the_generator_ignores_g(clip):
  model, frozen, _ = clip
  for config, depends in (({"use_gle": False}, False), ({}, True)):
    method, aux = build(clip, **config)
    p = live(method.init(jax.random.key(0), aux))
    moved = dict(aux, gle=aux["gle"] + jax.random.normal(jax.random.key(5), aux["gle"].shape))
    a = method.logits(frozen, p, aux, {}, {}, PIXELS, None)
    b = method.logits(frozen, p, moved, {}, {}, PIXELS, None)
    if depends:
      assert np.abs(np.asarray(a - b)).max() > 1e-4
    else:
      np.testing.assert_array_equal(a, b)
  method, aux = build(clip, use_gle=False)
  assert not {"q", "k", "v", "o", "ln_q", "ln_kv"} & set(method.init(jax.random.key(0), aux)["generator"])


def test_maple_coupling_is_one_linear_map_per_layer(clip):
  model, frozen, _ = clip
  method, aux = build(clip, generator="linear", share_generator=False, use_gle=False)
  p = method.init(jax.random.key(0), aux)
  assert set(p) == {"text", "generator"} and set(p["generator"]) == {"proj"}
  w, b = p["generator"]["proj"]["kernel"], p["generator"]["proj"]["bias"]
  assert w.shape == (3, 64, 48)
  b = b + 0.1  # a bias that shows
  p = dict(p, generator={"proj": {"kernel": w, "bias": b}})
  visual = jnp.stack([p["text"][l] @ w[l] + b[l] for l in range(3)])
  image = model.encode_image(frozen, PIXELS, deep=visual[:, None]).embeds
  text = model.encode_text(frozen, aux["ids"], aux["mask"], deep_prompts=p["text"][:, None]).embeds
  np.testing.assert_allclose(method.logits(frozen, p, aux, {}, {}, PIXELS, None),
                             base.cosine_logits(image, text, frozen["logit_scale"]), atol=2e-4)


def test_gradients_reach_only_the_prompt_tree(clip):
  model, frozen, _ = clip
  labels = jnp.array([0, 3, 1])
  for config, keys in (({}, {"text", "layer_embed", "generator"}),
                       ({"gle_trainable": True}, {"text", "layer_embed", "generator", "gle_residual"})):
    method, aux = build(clip, **config)
    p = live(method.init(jax.random.key(0), aux))
    assert set(p) == keys
    loss = lambda q, f: method.example_loss(f, q, aux, {}, {}, PIXELS, labels, None).mean()
    grads = jax.grad(loss)(p, frozen)
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
      assert np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).max() > 0, path
    # The frozen tree is an argument the loss depends on, but is never part of what is trained.
    frozen_ids = {id(x) for x in jax.tree_util.tree_leaves(frozen)}
    assert not frozen_ids & {id(x) for x in jax.tree_util.tree_leaves(p)}
    assert not any(x is aux["gle"] for x in jax.tree_util.tree_leaves(p))
  method, aux = build(clip, gle_trainable=True)
  p = method.init(jax.random.key(0), aux)
  np.testing.assert_array_equal(p["gle_residual"], 0.0)
  _, other_aux = build(clip, names=OTHER, gle_trainable=True)
  with pytest.raises(ValueError, match="learned a residual for 4 classes; this class set has 7"):
    method.logits(frozen, p, other_aux, {}, {}, PIXELS, None)


def test_swapping_g_for_another_class_set_changes_only_the_width(clip):
  model, frozen, _ = clip
  method, aux = build(clip)
  p = live(method.init(jax.random.key(0), aux))
  _, other = build(clip, names=OTHER)
  wide = method.logits(frozen, p, other, {}, {}, PIXELS, None)
  assert wide.shape == (3, 7) and np.isfinite(np.asarray(wide)).all()
  # The generator attends over G as a set: permuting the class set permutes the logits' columns.
  order = (3, 1, 0, 2)
  _, permuted = build(clip, names=tuple(NAMES[i] for i in order))
  np.testing.assert_allclose(method.logits(frozen, p, permuted, {}, {}, PIXELS, None),
                             method.logits(frozen, p, aux, {}, {}, PIXELS, None)[:, order],
                             atol=1e-5)


@pytest.mark.parametrize("key,value,message", [
    ("share_generator", "yes", "method.share_generator='yes' is invalid; must be True or False"),
    ("use_gle", 1, "method.use_gle=1 is invalid; must be True or False"),
    ("gle_trainable", None, "method.gle_trainable=None is invalid; must be True or False"),
    ("num_ctx", 0, "method.num_ctx=0 is invalid; must be an integer >= 1"),
    ("depth", 0, "method.depth=0 is invalid; must be an integer >= 1"),
    ("depth", 2.5, "method.depth=2.5 is invalid; must be an integer >= 1"),
    ("heads", 3, "method.heads=3 is invalid; must divide the text width 64"),
    ("generator", "mlp", "method.generator='mlp' is invalid; valid: attention, linear"),
    ("generator", "linear", "method.use_gle=True is invalid with method.generator='linear'"),
])
def test_bad_config_is_one_line(clip, key, value, message):
  with pytest.raises(ValueError) as err:
    build(clip, **{key: value})
  assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_too_many_context_tokens_is_one_line(clip):
  with pytest.raises(ValueError) as err:
    build(clip, num_ctx=200)
  assert str(err.value).startswith("method.num_ctx=200 is invalid; it leaves no room")
  assert "\n" not in str(err.value)
