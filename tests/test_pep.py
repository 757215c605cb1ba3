"""PEP-FedPT: mixing weights, prototypes, gradients, client statistics and the worst-10%
summary, against hand computations."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from clip_fixtures import fixture_dir
from fedprompt_jax.evaluate import client_summary
from fedprompt_jax.fed.client import ClientBatches, make_local_update
from fedprompt_jax.methods import base, make_method
from fedprompt_jax.methods.pep import fold_prototypes, mixing_weights
from fedprompt_jax.models import hf_loader
from fedprompt_jax.models.tokenizer import load_tokenizer


def test_mixing_weights_by_hand():
  z = jnp.array([[3.0, 4.0]])                       # |z| = 5
  protos = jnp.array([[1.0, 0.0], [0.0, 2.0], [7.0, 7.0]])
  has = jnp.array([True, True, False])              # class 2 has no prototype yet: cos = 0
  prior = jnp.log(jnp.array([0.5, 0.25, 0.25]))
  w = mixing_weights(z, protos, has, prior, tau=0.5)
  # scores: log .5 + (3/5)/.5, log .25 + (4/5)/.5, log .25 + 0
  s = np.array([np.log(.5) + 1.2, np.log(.25) + 1.6, np.log(.25)])
  np.testing.assert_allclose(w[0], np.exp(s) / np.exp(s).sum(), rtol=1e-6)
  np.testing.assert_allclose(mixing_weights(z, protos, has, prior, 0.5, "prior_only")[0],
                             [0.5, 0.25, 0.25], rtol=1e-6)
  np.testing.assert_allclose(mixing_weights(z, protos, has, prior, 0.5, "uniform")[0],
                             [1 / 3] * 3, rtol=1e-6)


def _hand_mixing(z, protos, has, log_prior, tau, rule):
  """Row by row in numpy: the score of each class, then a softmax."""
  out = []
  for x in np.asarray(z, np.float64):
    score = []
    for c in range(len(protos)):
      p = np.asarray(protos[c], np.float64)
      cos = x @ p / (np.linalg.norm(x) * np.linalg.norm(p)) if has[c] else 0.0
      score.append({"bayes": log_prior[c] + cos / tau, "prior_only": log_prior[c],
                    "prototype_only": cos / tau, "uniform": 0.0}[rule])
    e = np.exp(np.array(score) - max(score))
    out.append(e / e.sum())
  return np.array(out)


@pytest.mark.parametrize("rule", ["bayes", "prior_only", "prototype_only", "uniform"])
def test_each_mixing_rule_by_hand(rule):
  z = np.array([[3.0, 4.0, 0.0], [-1.0, 0.5, 2.0]])
  protos = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 1.0], [7.0, 7.0, -3.0], [0.5, -0.5, 4.0]])
  has = np.array([True, True, False, True])       # class 2 has no prototype yet: cos = 0
  prior = np.log(np.array([0.4, 0.3, 0.2, 0.1]))
  w = mixing_weights(jnp.asarray(z), jnp.asarray(protos), jnp.asarray(has), jnp.asarray(prior),
                     0.3, rule)
  np.testing.assert_allclose(w, _hand_mixing(z, protos, has, prior, 0.3, rule), rtol=1e-5)
  # The rules give different weights on these inputs: each case checks its own rule.
  others = [r for r in ("bayes", "prior_only", "prototype_only", "uniform") if r != rule]
  for other in others:
    assert np.abs(_hand_mixing(z, protos, has, prior, 0.3, other) - np.asarray(w)).max() > 1e-2


def test_worst10_on_a_hand_made_list():
  acc = np.array([0.9, 0.2, 0.7, 0.5, 0.1, 0.8, 0.6, 0.95, 0.3, 0.4, 0.85, 0.65,
                  0.75, 0.55, 0.45, 0.35, 0.25, 0.15, 0.05, 1.0, 0.99])  # 21 clients
  out = client_summary(acc)
  # ceil(0.1 * 21) = 3 lowest: 0.05, 0.1, 0.15.
  assert out["pers_acc_worst10"] == pytest.approx((0.05 + 0.1 + 0.15) / 3)
  assert out["pers_acc_mean"] == pytest.approx(sum(acc.tolist()) / 21)
  # Fewer than 10 clients: the single worst one.
  out = client_summary(np.array([0.5, 0.25, 0.75]), prefix="new_client_acc")
  assert out == {"new_client_acc_mean": pytest.approx(0.5), "new_client_acc_worst10": 0.25}


def test_prototypes_by_hand():
  extra = {"prototypes": jnp.array([[1.0, 1.0], [5.0, 5.0], [9.0, 9.0]]),
           "has_proto": jnp.array([True, True, False])}
  stats = {"sums": jnp.array([[4.0, 2.0], [0.0, 0.0], [3.0, 6.0]]),
           "counts": jnp.array([2.0, 0.0, 3.0])}
  out = fold_prototypes(extra, stats, ema=0.0)
  np.testing.assert_allclose(out["prototypes"], [[2.0, 1.0], [5.0, 5.0], [1.0, 2.0]])
  np.testing.assert_array_equal(out["has_proto"], [True, True, True])
  out = fold_prototypes(extra, stats, ema=0.5)  # EMA only where an old prototype exists
  np.testing.assert_allclose(out["prototypes"], [[1.5, 1.0], [5.0, 5.0], [1.0, 2.0]])


@pytest.fixture(scope="module")
def pep():
  model, frozen, ckpt = hf_loader.load_clip(fixture_dir("clip_tiny_b"))  # 3 vision layers
  tok = load_tokenizer(ckpt, model.config.text.max_position_embeddings)
  method = make_method("pep", model, {"num_shared": 2, "num_class_tokens": 3, "class_layers": 1,
                                      "tau": 0.2, "init_std": 0.5})
  names = ("red circle", "blue star", "green heart", "seven")
  aux = method.prepare(base.Context(model, frozen, tok, names))
  params = method.init(jax.random.key(0), aux)
  return model, frozen, method, aux, params


def test_uniform_prior_and_identical_prototypes_give_the_average_class_prompt(pep):
  model, frozen, method, aux, params = pep
  c = params["class"].shape[0]
  extra = {"prototypes": jnp.ones((c, model.config.vision.hidden_size)),
           "has_proto": jnp.ones((c,), bool)}
  client = method.init_client(jnp.ones((c,)))
  pixels = jax.random.uniform(jax.random.key(1), (3, 32, 32, 3))
  ours = method.logits(frozen, params, aux, extra, client, pixels, None)
  mean_prompt = params["class"].mean(0)  # [n_c, Dv]
  deep = jnp.broadcast_to(mean_prompt, (2, 3) + mean_prompt.shape)  # layers 1..2, batch 3
  embeds = model.encode_image(frozen, pixels, shallow=params["shared"], deep=deep,
                              deep_start=1).embeds
  np.testing.assert_allclose(ours, base.cosine_logits(embeds, params["head"],
                                                      frozen["logit_scale"]), atol=1e-5)
  # A peaked prior picks (almost) one class prompt instead.
  peaked = method.init_client(jnp.array([1000.0, 0, 0, 0]))
  other = method.logits(frozen, params, aux, extra, peaked, pixels, None)
  assert np.abs(np.asarray(other - ours)).max() > 1e-3


def test_no_trainable_leaf_is_client_specific(pep):
  _, _, method, _, params = pep
  shared, personal = base.split_params(method, params)
  assert personal == {} and set(shared) == {"shared", "class", "head"}


def test_client_stats_are_per_class_sums_and_counts(pep):
  model, frozen, method, aux, params = pep
  pixels = jax.random.uniform(jax.random.key(2), (4, 32, 32, 3))
  labels = jnp.array([0, 2, 2, 3])
  mask = jnp.array([True, True, False, True])
  stats = method.client_stats(frozen, params, aux, None, None, pixels, labels, mask)
  z = model.encode_image(frozen, pixels, shallow=params["shared"]).pooled
  np.testing.assert_allclose(stats["counts"], [1, 0, 1, 1])
  np.testing.assert_allclose(stats["sums"][2], z[1], atol=1e-6)  # the masked example is left out
  np.testing.assert_allclose(stats["sums"][1], 0.0)


def test_bad_prototype_features_is_one_line(pep):
  model = pep[0]
  with pytest.raises(ValueError) as err:
    make_method("pep", model, {"prototype_features": "local"})
  message = str(err.value)
  assert "method.prototype_features='local'" in message and "received, trained" in message
  assert "\n" not in message


def _pep_inputs(pep):
  """Prototypes that differ per class and a non-uniform prior, so the mixing path matters."""
  model, frozen, method, aux, params = pep
  c, dv = params["class"].shape[0], model.config.vision.hidden_size
  extra = {"prototypes": jax.random.normal(jax.random.key(3), (c, dv)),
           "has_proto": jnp.ones((c,), bool)}
  client = method.init_client(jnp.array([5.0, 1.0, 0.0, 2.0]))
  pixels = jax.random.uniform(jax.random.key(4), (2, 32, 32, 3))
  return model, frozen, method, aux, params, extra, client, pixels


def _hand_pep_logits(model, frozen, params, params_for_z, extra, log_prior, pixels, tau=0.2):
  """PEP's forward written out, with no stop_gradient anywhere; z(x) from `params_for_z`."""
  z = model.encode_image(frozen, pixels, shallow=params_for_z["shared"]).pooled
  unit = lambda x: x / jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True))
  w = jax.nn.softmax(log_prior + unit(z) @ unit(extra["prototypes"]).T / tau, axis=-1)
  mixed = jnp.einsum("bc,cpd->bpd", w, params["class"])
  deep = jnp.stack([mixed, mixed])  # class prompts at layers 1 and 2 of the 3-layer tower
  embeds = model.encode_image(frozen, pixels, shallow=params["shared"], deep=deep,
                              deep_start=1).embeds
  return jnp.exp(frozen["logit_scale"]) * unit(embeds) @ unit(params["head"]).T


def test_pixel_gradient_is_the_full_autodiff_of_the_decision_function(pep):
  model, frozen, method, aux, params, extra, client, pixels = _pep_inputs(pep)
  probe = jax.random.normal(jax.random.key(5), (2, 4))  # d <probe, logits> / d pixels
  ours = jax.jit(jax.grad(lambda x: jnp.sum(probe * method.logits(
      frozen, params, aux, extra, client, x, None))))(pixels)
  full = jax.jit(jax.grad(lambda x: jnp.sum(probe * _hand_pep_logits(
      model, frozen, params, params, extra, client["log_prior"], x))))(pixels)
  np.testing.assert_allclose(ours, full, atol=1e-5)
  # The mixing path carries a real share of the gradient: cutting z(x) would fail the check.
  cut = jax.jit(jax.grad(lambda x: jnp.sum(probe * _hand_pep_logits_cut(
      model, frozen, params, extra, client["log_prior"], x))))(pixels)
  assert np.abs(np.asarray(cut - full)).max() > 100 * 1e-5


def _hand_pep_logits_cut(model, frozen, params, extra, log_prior, pixels):
  """The forward with z(x) held constant in the pixels (what an attack saw before issue 11)."""
  z = jax.lax.stop_gradient(model.encode_image(frozen, pixels, shallow=params["shared"]).pooled)
  unit = lambda x: x / jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True))
  w = jax.nn.softmax(log_prior + unit(z) @ unit(extra["prototypes"]).T / 0.2, axis=-1)
  mixed = jnp.einsum("bc,cpd->bpd", w, params["class"])
  embeds = model.encode_image(frozen, pixels, shallow=params["shared"],
                              deep=jnp.stack([mixed, mixed]), deep_start=1).embeds
  return jnp.exp(frozen["logit_scale"]) * unit(embeds) @ unit(params["head"]).T


def test_parameter_gradient_is_cut_in_the_mixing_path_only(pep):
  model, frozen, method, aux, params, extra, client, pixels = _pep_inputs(pep)
  probe = jax.random.normal(jax.random.key(6), (2, 4))
  ours = jax.grad(lambda p: jnp.sum(probe * method.logits(frozen, p, aux, extra, client, pixels,
                                                          None)))(params)
  # z(x) from a second, constant copy of the params: only the prompted forward is differentiated.
  held = jax.grad(lambda p: jnp.sum(probe * _hand_pep_logits(
      model, frozen, p, params, extra, client["log_prior"], pixels)))(params)
  full = jax.grad(lambda p: jnp.sum(probe * _hand_pep_logits(
      model, frozen, p, p, extra, client["log_prior"], pixels)))(params)
  for name in ("shared", "class", "head"):
    np.testing.assert_allclose(ours[name], held[name], atol=1e-5, err_msg=name)
  assert np.abs(np.asarray(full["shared"] - held["shared"])).max() > 1e-4  # the cut is real


@pytest.mark.parametrize("features", ["received", "trained"])
def test_local_update_statistics_use_the_selected_params(pep, features):
  model, frozen, _, aux, params, extra, client, _ = _pep_inputs(pep)
  method = make_method("pep", model, {"num_shared": 2, "num_class_tokens": 3, "class_layers": 1,
                                      "tau": 0.2, "init_std": 0.5,
                                      "prototype_features": features})
  assert method.stats_from == features
  images = jax.random.randint(jax.random.key(7), (2, 3, 32, 32, 3), 0, 256).astype(jnp.uint8)
  batches = ClientBatches(images, jnp.array([[0, 3, 3], [1, 0, 2]]),
                          jnp.array([[True, True, True], [True, False, True]]))
  update = jax.jit(make_local_update(method, optax.sgd(0.5)))
  res = update(frozen, params, {}, extra, aux, client, batches, jax.random.key(0))
  trained = jax.tree_util.tree_map(jnp.add, params, res.delta)
  expected = {}
  for name, p in (("received", params), ("trained", trained)):
    z = np.concatenate([np.asarray(model.encode_image(frozen, images[s] / 255.0,
                                                      shallow=p["shared"]).pooled)
                        for s in range(2)])
    labels, valid = np.array([0, 3, 3, 1, 0, 2]), np.array([1, 1, 1, 1, 0, 1], bool)
    expected[name] = (np.stack([z[(labels == c) & valid].sum(0) for c in range(4)]),
                      np.array([np.sum((labels == c) & valid) for c in range(4)], np.float32))
  np.testing.assert_allclose(res.stats["counts"], expected[features][1])
  np.testing.assert_allclose(res.stats["sums"], expected[features][0], atol=1e-4)
  other = "trained" if features == "received" else "received"
  assert np.abs(expected[other][0] - expected[features][0]).max() > 1e-3  # training moved z
