"""PEP-FedPT: mixing weights, prototypes and the uniform-prior reduction, against hand computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clip_fixtures import fixture_dir
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
