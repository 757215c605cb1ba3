"""fed.label_space: a client's loss and training attack see only its own classes (hand references)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedprompt_jax import config as config_lib
from fedprompt_jax.attacks import make_attack
from fedprompt_jax.methods import base
from fedprompt_jax.methods.adversarial import adversarial
from fedprompt_jax.methods.label_space import MASKED_LOGIT, local_label_space, mask_logits

B, C, SIZE = 6, 5, 4
HISTOGRAM = jnp.array([3.0, 0.0, 2.0, 0.0, 1.0])  # the client holds classes 0, 2, 4
HELD = np.array([0, 2, 4])


def linear_method(columns=None) -> base.PromptMethod:
  """logits = tanh(x W1) W2[:, columns]: a small trainable model standing in for a prompt method."""

  def logits(frozen, params, aux, extra, client, pixels, key):
    del frozen, aux, extra, client, key
    out = jnp.tanh(pixels.reshape(pixels.shape[0], -1) @ params["w1"]) @ params["w2"]
    return out if columns is None else out[:, columns]

  return base.PromptMethod(name="linear", prepare=lambda ctx: {}, init=lambda k, a: {},
                           logits=logits)


def params(seed=0):
  k1, k2 = jax.random.split(jax.random.key(seed))
  return {"w1": jax.random.normal(k1, (SIZE * SIZE * 3, 16)) * 0.5,
          "w2": jax.random.normal(k2, (16, C)) * 2.0}


X = jax.random.uniform(jax.random.key(1), (B, SIZE, SIZE, 3))
LABELS = jnp.array([0, 2, 4, 4, 0, 2])
LOCAL_LABELS = jnp.array([0, 1, 2, 2, 0, 1])  # the same labels among the held classes
KEY = jax.random.key(7)


def test_mask_logits_by_hand():
  logits = jnp.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
  out = mask_logits(logits, jnp.array([True, False, True]))
  np.testing.assert_array_equal(out, [[1.0, MASKED_LOGIT, 3.0], [4.0, MASKED_LOGIT, 6.0]])


def test_client_constants_and_global_client_masks_nothing():
  method = local_label_space(linear_method())
  client = method.init_client(HISTOGRAM)
  np.testing.assert_array_equal(client["label_mask"], [True, False, True, False, True])
  assert client["inner"] == {}
  glob = method.init_client(jnp.ones((C,)))
  p = params()
  np.testing.assert_array_equal(method.logits(None, p, {}, {}, glob, X, KEY),
                                linear_method().logits(None, p, {}, {}, {}, X, KEY))
  stacked = jax.vmap(method.init_client)(jnp.stack([HISTOGRAM, jnp.ones((C,))]))
  assert stacked["label_mask"].shape == (2, C) and int(stacked["label_mask"].sum()) == 3 + C


def test_local_loss_is_cross_entropy_over_the_held_classes_only():
  method = local_label_space(linear_method())
  client = method.init_client(HISTOGRAM)
  p = params()
  ours = method.example_loss(None, p, {}, {}, client, X, LABELS, KEY)
  held_logits = linear_method().logits(None, p, {}, {}, {}, X, KEY)[:, HELD]
  reference = optax.softmax_cross_entropy_with_integer_labels(held_logits, LOCAL_LABELS)
  np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-6)
  # Global label space: the loss is over all five classes, and larger.
  full = linear_method().example_loss(None, p, {}, {}, {}, X, LABELS, KEY)
  assert (np.asarray(full) > np.asarray(ours) + 1e-4).all()


def test_loss_and_attack_get_no_gradient_from_classes_not_held():
  attack = make_attack("pgd:linf:eps=8/255:steps=3")
  method = adversarial(local_label_space(linear_method()), attack, "pgd")
  client = method.init_client(HISTOGRAM)
  p = params()
  loss = lambda q: method.example_loss(None, q, {}, {}, client, X, LABELS, KEY).mean()
  grads = jax.grad(loss)(p)
  absent = np.asarray(grads["w2"])[:, [1, 3]]
  np.testing.assert_array_equal(absent, 0.0)              # no gradient from classes 1 and 3
  assert np.abs(np.asarray(grads["w2"])[:, HELD]).min() > 0
  # Changing the columns of the absent classes changes neither the attack nor the loss ...
  q = {"w1": p["w1"], "w2": p["w2"].at[:, [1, 3]].set(50.0)}
  np.testing.assert_array_equal(loss(q), loss(p))
  # ... which equal PGD-AT on a model with only the held classes (the same key and random start).
  restricted = adversarial(linear_method(HELD), attack, "pgd")
  reference = restricted.example_loss(None, p, {}, {}, {}, X, LOCAL_LABELS, KEY).mean()
  np.testing.assert_allclose(loss(p), reference, rtol=1e-5)
  # Under the global label space the attack uses all classes: a different loss.
  glob = adversarial(linear_method(), attack, "pgd")
  other = glob.example_loss(None, p, {}, {}, {}, X, LABELS, KEY).mean()
  assert abs(float(other) - float(reference)) > 1e-3
  assert np.isfinite(np.asarray(jax.tree_util.tree_leaves(grads)[0])).all()


def test_methods_with_their_own_loss_are_refused():
  own = base.PromptMethod(name="own", prepare=lambda ctx: {}, init=lambda k, a: {},
                          logits=linear_method().logits, loss=lambda *a: jnp.zeros(()))
  with pytest.raises(ValueError, match="fed.label_space='local' is not supported for method 'own'"):
    local_label_space(own)


@pytest.mark.parametrize("value", ["both", "Local", None])
def test_bad_label_space_is_one_line(value):
  c = config_lib.default_config()
  c.fed.label_space = value
  with pytest.raises(config_lib.ConfigError) as err:
    config_lib.validate(c)
  message = str(err.value)
  assert message.startswith(f"fed.label_space={value!r} is invalid; valid: global, local")
  assert "\n" not in message
  c.fed.label_space = "local"
  config_lib.validate(c)
