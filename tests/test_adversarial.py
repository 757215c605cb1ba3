"""PGD-AT and TRADES (methods/adversarial.py) against hand computations on a linear model.

The model: logits = flatten(x) @ w + b, with w [D, C] the trainable "prompt" and
b [C] frozen; D = 2 * 2 * 3 = 12 pixels, C = 3 classes, B = 6. The hand
computations below are NumPy in float64 (softmax, CE, KL and the PGD iterates
with their gradients written out), independent of the project's losses.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedprompt_jax import config as config_lib
from fedprompt_jax.attacks import make_attack
from fedprompt_jax.methods import base
from fedprompt_jax.methods.adversarial import adversarial, trades_attack

B, D, C = 6, 12, 3
RNG = np.random.default_rng(0)
W = (RNG.normal(size=(D, C)) * 3.0).astype(np.float32)
BIAS = (RNG.normal(size=(C,)) * 0.5).astype(np.float32)
# Pixels anywhere in [0, 1], some saturated, so the [0, 1] clip matters.
X = np.clip(RNG.uniform(-0.1, 1.1, size=(B, 2, 2, 3)), 0.0, 1.0).astype(np.float32)
Y = np.array([0, 1, 2, 0, 1, 2], np.int32)
KEY = jax.random.key(7)
FROZEN, PARAMS = {"b": jnp.asarray(BIAS)}, {"w": jnp.asarray(W)}


def linear_method() -> base.PromptMethod:
  def logits(frozen, params, aux, extra, client, pixels, key):
    del aux, extra, client, key
    return pixels.reshape(pixels.shape[0], -1) @ params["w"] + frozen["b"]
  return base.PromptMethod(name="linear", prepare=lambda ctx: {}, init=lambda k, a: dict(PARAMS),
                           logits=logits)


def loss_of(method, params=PARAMS, key=KEY):
  return method.loss(FROZEN, params, {}, {}, {}, jnp.asarray(X), jnp.asarray(Y), key)


# ------------------------------------------------------------------ by hand (NumPy)

def softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def logits(x, w=W):
  return x.reshape(len(x), -1).astype(np.float64) @ w.astype(np.float64) + BIAS


def ce(x, y, w=W):
  p = softmax(logits(x, w))
  return -np.log(p[np.arange(len(y)), y])


def kl(p, q):
  return np.sum(p * (np.log(p) - np.log(q)), -1)


def pgd_linf(x, eps, step, steps, grad, start):
  """x_{t+1} = clip(clip(x_t + step * sign(grad(x_t)), x - eps, x + eps), 0, 1)."""
  x = x.astype(np.float64)
  x_adv = start
  for _ in range(steps):
    x_adv = np.clip(np.clip(x_adv + step * np.sign(grad(x_adv)), x - eps, x + eps), 0.0, 1.0)
  return x_adv


def ce_grad(y):
  """d CE / d x for the linear model: ((softmax(z) - onehot(y)) @ w^T), reshaped like x."""
  def grad(x_adv):
    g = (softmax(logits(x_adv)) - np.eye(C)[y]) @ W.T.astype(np.float64)
    return g.reshape(x_adv.shape)
  return grad


def kl_grad(p):
  """d KL(p || softmax(z(x'))) / d x' = ((softmax(z(x')) - p) @ w^T), reshaped like x'."""
  def grad(x_adv):
    return ((softmax(logits(x_adv)) - p) @ W.T.astype(np.float64)).reshape(x_adv.shape)
  return grad


def trades_start(key):
  """x + 0.001 N(0, 1) with the noise of the attack's key (the first half of split(key))."""
  attack_key = jax.random.split(key)[0]
  noise = np.asarray(jax.random.normal(attack_key, X.shape, jnp.float32), np.float64)
  return np.clip(X + 0.001 * noise, 0.0, 1.0)


# ------------------------------------------------------------------------- PGD-AT

def test_pgd_at_loss_is_ce_at_a_hand_crafted_x_adv():
  eps, step, steps = 0.05, 0.03, 2
  method = adversarial(linear_method(), make_attack(
      f"pgd:linf:eps={eps}:steps={steps}:step_size={step}:random_start=false"), "pgd")
  x_adv = pgd_linf(X, eps, step, steps, ce_grad(Y), start=X.astype(np.float64))
  assert np.abs(x_adv - X).max() == pytest.approx(eps)      # the attack moved to the boundary
  np.testing.assert_allclose(loss_of(method), ce(x_adv, Y), rtol=1e-5)
  assert np.all(ce(x_adv, Y) > ce(X, Y))
  # The gradient treats x_adv as a constant: d mean CE(x_adv) / d w = x_adv^T (p - onehot) / B.
  grad = jax.grad(lambda p: jnp.mean(loss_of(method, p)))(PARAMS)["w"]
  by_hand = x_adv.reshape(B, -1).T @ (softmax(logits(x_adv)) - np.eye(C)[Y]) / B
  np.testing.assert_allclose(grad, by_hand, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------- TRADES

@pytest.mark.parametrize("spec", ["pgd:linf:eps=0.05:steps=3:step_size=0.02",
                                  "pgd:linf:eps=0.05:steps=3:step_size=0.02:loss=kl"])
def test_trades_loss_is_ce_plus_beta_kl_at_the_kl_maximiser(spec):
  eps, step, steps, beta = 0.05, 0.02, 3, 2.5
  method = adversarial(linear_method(), spec, "trades", beta)
  p = softmax(logits(X))   # the clean prediction of the current prompts
  x_adv = pgd_linf(X, eps, step, steps, kl_grad(p), start=trades_start(KEY))
  expected = ce(X, Y) + beta * kl(p, softmax(logits(x_adv)))
  np.testing.assert_allclose(loss_of(method), expected, rtol=1e-5)
  # The CE inner attack (the old behaviour) gives a different loss.
  x_ce = pgd_linf(X, eps, step, steps, ce_grad(Y), start=trades_start(KEY))
  assert not np.allclose(expected, ce(X, Y) + beta * kl(p, softmax(logits(x_ce))), rtol=1e-3)


def test_trades_keeps_a_methods_own_loss_as_the_natural_term():
  """A method with its own loss (here CE + 0.7 * sum w^2) keeps it under TRADES; the KL is added."""
  eps, step, steps, beta = 0.05, 0.02, 3, 2.5
  inner = linear_method()

  def own_loss(frozen, params, aux, extra, client, pixels, labels, key):
    z = inner.logits(frozen, params, aux, extra, client, pixels, key)
    return (optax.softmax_cross_entropy_with_integer_labels(z, labels)
            + 0.7 * jnp.sum(params["w"] ** 2))

  method = adversarial(dataclasses.replace(inner, loss=own_loss),
                       f"pgd:linf:eps={eps}:steps={steps}:step_size={step}", "trades", beta)
  p = softmax(logits(X))
  x_adv = pgd_linf(X, eps, step, steps, kl_grad(p), start=trades_start(KEY))
  expected = (ce(X, Y) + 0.7 * np.sum(W.astype(np.float64) ** 2)
              + beta * kl(p, softmax(logits(x_adv))))
  np.testing.assert_allclose(loss_of(method), expected, rtol=1e-5)


def test_trades_gradient_flows_through_both_clean_and_adversarial_logits():
  beta = 3.0
  method = adversarial(linear_method(), "pgd:linf:eps=0.05:steps=2:step_size=0.03", "trades", beta)
  p = softmax(logits(X))
  x_adv = pgd_linf(X, 0.05, 0.03, 2, kl_grad(p), start=trades_start(KEY))
  q = softmax(logits(x_adv))
  xc, xa = X.reshape(B, -1).astype(np.float64), x_adv.reshape(B, -1)
  # d/dz of CE(z, y) = p - onehot; of KL(softmax(z) || q) = p * (log p - log q - KL);
  # of KL(p || softmax(z')) = q - p; each through z = x w + b.
  dkl_dz = p * (np.log(p) - np.log(q) - kl(p, q)[:, None])
  by_hand = (xc.T @ (p - np.eye(C)[Y] + beta * dkl_dz) + beta * xa.T @ (q - p)) / B
  grad = jax.grad(lambda w: jnp.mean(loss_of(method, w)))(PARAMS)["w"]
  np.testing.assert_allclose(grad, by_hand, rtol=1e-4, atol=1e-6)


def test_trades_inner_attack_increases_the_kl():
  p = softmax(logits(X))
  x0 = trades_start(KEY)
  kls = {}
  for steps in (1, 5):
    attack = trades_attack(f"pgd:linf:eps=0.05:steps={steps}:step_size=0.02")
    assert dict(attack.options)["loss"] == "kl"
    logits_fn = lambda x: x.reshape(x.shape[0], -1) @ PARAMS["w"] + FROZEN["b"]
    x_adv = np.asarray(attack(logits_fn, jnp.asarray(X), jnp.asarray(Y),
                              jax.random.split(KEY)[0]), np.float64)
    assert np.abs(x_adv - X).max() <= 0.05 + 1e-6 and 0.0 <= x_adv.min() <= x_adv.max() <= 1.0
    kls[steps] = kl(p, softmax(logits(x_adv)))
  start = kl(p, softmax(logits(x0)))
  assert np.all(start < 1e-4)                 # the start is near x ...
  assert np.all(kls[1] > 100 * start)         # ... and every example's KL rises from there
  assert np.all(kls[5] >= kls[1] - 1e-6) and kls[5].mean() > kls[1].mean()


# -------------------------------------------------------- refusals of other inner attacks

@pytest.mark.parametrize("spec, problem", [
    ("pgd:linf:eps=1/255:loss=ce", "maximises loss 'ce', not the KL"),
    ("cw:linf:eps=1/255", "maximises loss 'cw', not the KL"),
    ("apgd-ce:linf:eps=1/255:steps=5", "is apgd, not pgd"),
    ("fgsm:linf:eps=1/255", "is fgsm, not pgd"),
    ("pgd:linf:eps=1/255:random_start=false", "has random_start=false (the KL has zero gradient "
     "at x, so PGD would not move)"),
    ("pgd:linf:eps=1/255:targeted=true", "is targeted"),
])
def test_trades_refuses_other_inner_attacks_unless_told(spec, problem):
  with pytest.raises(ValueError) as info:
    adversarial(linear_method(), spec, "trades")
  assert str(info.value).startswith(f"TRADES' inner attack {spec!r} {problem}; valid: pgd ")
  assert "\n" not in str(info.value)
  c = config_lib.default_config()
  c.adv.train, c.adv.train_attack = "trades", spec
  with pytest.raises(config_lib.ConfigError) as info:
    config_lib.validate(c)
  message = str(info.value)
  assert message.startswith(f"adv.train_attack={spec!r} is invalid; with adv.train='trades' it "
                            f"{problem}; valid: pgd with no loss option (or loss=kl)")
  assert message.endswith("or adv.trades_any_inner_attack=True to use it as written")
  assert "\n" not in message
  # The flag takes the attack as written; PGD-AT never rewrites its attack.
  c.adv.trades_any_inner_attack = True
  config_lib.validate(c)
  written = make_attack(spec)
  as_given = dict(written.options)
  if written.function == "pgd" and "loss" not in as_given:  # a pgd spec without loss: still kl
    as_given["loss"] = "kl"
  taken = trades_attack(spec, any_inner_attack=True)
  assert (taken.function, dict(taken.options)) == (written.function, as_given)
  c.adv.train, c.adv.trades_any_inner_attack = "pgd", False
  config_lib.validate(c)


def test_trades_with_the_flag_runs_the_ce_inner_attack_as_written():
  beta = 2.0
  method = adversarial(linear_method(), "pgd:linf:eps=0.05:steps=3:step_size=0.02:loss=ce",
                       "trades", beta, any_inner_attack=True)
  p = softmax(logits(X))
  # pgd's random start for CE: x + eps * U(-1, 1), from the same attack key.
  noise = np.asarray(jax.random.uniform(jax.random.split(KEY)[0], X.shape, jnp.float32, -1.0,
                                        1.0), np.float64)
  x_ce = pgd_linf(X, 0.05, 0.02, 3, ce_grad(Y), start=np.clip(X + 0.05 * noise, 0.0, 1.0))
  np.testing.assert_allclose(loss_of(method), ce(X, Y) + beta * kl(p, softmax(logits(x_ce))),
                             rtol=1e-5)


def test_default_config_with_trades_validates_and_gets_the_kl():
  c = config_lib.default_config()
  c.adv.train = "trades"
  config_lib.validate(c)
  options = dict(trades_attack(c.adv.train_attack).options)
  assert options == dict(make_attack(c.adv.train_attack).options, loss="kl")
