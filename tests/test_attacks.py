"""FGSM / PGD / APGD / attack specs on small random models (JAX only)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedprompt_jax import attacks
from fedprompt_jax.attacks import losses
from fedprompt_jax.attacks.spec import make_attack, parse, robust_accuracy

B, SIZE = 16, 8
EPS = {"linf": 8 / 255, "l2": 0.5}


def make_model(num_classes: int = 5, seed: int = 0):
  """A small tanh MLP on 8x8x3 images: x [B, 8, 8, 3] -> logits [B, C]."""
  k1, k2 = jax.random.split(jax.random.key(seed))
  w1 = jax.random.normal(k1, (SIZE * SIZE * 3, 32)) / np.sqrt(SIZE * SIZE * 3) * 4.0
  w2 = jax.random.normal(k2, (32, num_classes)) * 2.0

  def logits_fn(x):
    return jnp.tanh(x.reshape(x.shape[0], -1) @ w1) @ w2

  return logits_fn


def make_data(logits_fn, n: int = B, seed: int = 1):
  """Images with saturated pixels (so the [0, 1] clip matters), labelled by the model."""
  x = jax.random.uniform(jax.random.key(seed), (n, SIZE, SIZE, 3), minval=-0.2, maxval=1.2)
  x = jnp.clip(x, 0.0, 1.0)
  return x, jnp.argmax(logits_fn(x), axis=-1).astype(jnp.int32)


MODEL = make_model()
X, Y = make_data(MODEL)
KEY = jax.random.key(42)

ATTACKS = {
    "fgsm": lambda f, x, y, k, norm: attacks.fgsm(f, x, y, k, eps=EPS[norm], norm=norm),
    "pgd-ce": lambda f, x, y, k, norm: attacks.pgd(f, x, y, k, eps=EPS[norm], steps=5, norm=norm),
    "pgd-cw": lambda f, x, y, k, norm: attacks.pgd(
        f, x, y, k, eps=EPS[norm], steps=5, norm=norm, loss="cw"),
    "pgd-kl": lambda f, x, y, k, norm: attacks.pgd(
        f, x, y, k, eps=EPS[norm], steps=5, norm=norm, loss="kl"),
    "pgd-t": lambda f, x, y, k, norm: attacks.pgd(
        f, x, y, k, eps=EPS[norm], steps=5, norm=norm, targeted=True),
    "apgd-ce": lambda f, x, y, k, norm: attacks.apgd(f, x, y, k, eps=EPS[norm], steps=8, norm=norm),
    "apgd-dlr": lambda f, x, y, k, norm: attacks.apgd(
        f, x, y, k, eps=EPS[norm], steps=8, norm=norm, loss="dlr", n_restarts=2),
    "apgd-t": lambda f, x, y, k, norm: attacks.apgd(
        f, x, y, k, eps=EPS[norm], steps=8, norm=norm, loss="dlr", targeted=True, target=2),
}


NORMS = ("linf", "l2")


def all_attacks(f, names=tuple(ATTACKS), norms=NORMS):
  """One jitted function running several attacks (one compile instead of one per attack)."""
  return jax.jit(lambda x, y, k: {(n, norm): ATTACKS[n](f, x, y, k, norm)
                                  for n in names for norm in norms})


RUN_ALL = all_attacks(MODEL)


@pytest.fixture(scope="module")
def adv():
  """{(attack name, norm): x_adv [B, 8, 8, 3]} for X, Y, KEY."""
  return RUN_ALL(X, Y, KEY)


def assert_valid(x_adv, x, norm, eps):
  x_adv, x = np.asarray(x_adv), np.asarray(x)
  assert x_adv.shape == x.shape and np.isfinite(x_adv).all()
  assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
  delta = (x_adv - x).reshape(len(x), -1)
  if norm == "linf":
    assert np.abs(delta).max() <= eps + 1e-6
  else:
    assert np.linalg.norm(delta, axis=1).max() <= eps * (1 + 1e-5)


def ce(f, x, y):
  return np.asarray(losses.cross_entropy(f(x), y))


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_within_budget_and_box(adv, name, norm):
  x_adv = adv[name, norm]
  assert_valid(x_adv, X, norm, EPS[norm])
  assert np.abs(np.asarray(x_adv - X)).max() > 0  # it moved


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("name", ["fgsm", "pgd-ce", "apgd-ce"])
def test_loss_rises(adv, name, norm):
  clean, attacked = ce(MODEL, X, Y), ce(MODEL, adv[name, norm], Y)
  assert attacked.mean() > clean.mean()
  assert (attacked > clean).mean() >= 0.8, (attacked > clean).mean()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_attacks_fool_some_but_not_all(adv, norm):
  for name in ("pgd-ce", "apgd-ce", "apgd-dlr"):
    robust = np.asarray(jnp.argmax(MODEL(adv[name, norm]), -1) == Y).mean()
    assert 0.0 < robust < 1.0, (name, norm, robust)


def test_targeted_attacks_move_towards_the_target(adv):
  target = losses.pick_target(MODEL(X), Y, 1)
  for name, norm in (("pgd-t", "linf"), ("pgd-t", "l2")):
    before = np.asarray(losses.targeted_ce(MODEL(X), target))
    after = np.asarray(losses.targeted_ce(MODEL(adv[name, norm]), target))
    assert after.mean() > before.mean() and (after > before).mean() >= 0.8, (name, norm)
  target2 = losses.pick_target(MODEL(X), Y, 2)
  assert np.all(np.asarray(target2 != target)) and np.all(np.asarray(target2 != Y))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fgsm_is_one_pgd_step_without_random_start(norm):
  a = attacks.fgsm(MODEL, X, Y, eps=EPS[norm], norm=norm)
  b = attacks.pgd(MODEL, X, Y, None, eps=EPS[norm], step_size=EPS[norm], steps=1, norm=norm,
                  random_start=False)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  if norm == "linf":  # and it is the textbook formula
    g = jax.grad(lambda x: losses.cross_entropy(MODEL(x), Y).sum())(X)
    np.testing.assert_allclose(a, jnp.clip(X + EPS[norm] * jnp.sign(g), 0, 1), atol=1e-7)


def test_keys_determine_the_random_start(adv):
  same = RUN_ALL(X, Y, KEY)
  other = RUN_ALL(X, Y, jax.random.key(4))
  for name in ("pgd-ce", "pgd-cw", "pgd-kl", "pgd-t", "apgd-ce", "apgd-dlr", "apgd-t"):
    for norm in NORMS:
      np.testing.assert_array_equal(np.asarray(adv[name, norm]), np.asarray(same[name, norm]))
      assert np.abs(np.asarray(adv[name, norm] - other[name, norm])).max() > 1e-4, (name, norm)
  np.testing.assert_array_equal(np.asarray(adv["fgsm", "linf"]), np.asarray(other["fgsm", "linf"]))


def test_robust_accuracy_does_not_depend_on_batch_size():
  specs = ["fgsm:linf:eps=8/255", "pgd:linf:eps=8/255:steps=5", "apgd-ce:l2:eps=0.5:steps=6"]
  base = jax.random.key(5)

  evaluate = jax.jit(lambda x, y, keys: robust_accuracy(MODEL, specs, x, y, keys))
  whole = evaluate(X, Y, attacks.example_keys(base, jnp.arange(B)))
  parts = [evaluate(X[i:i + 4], Y[i:i + 4], attacks.example_keys(base, jnp.arange(i, i + 4)))
           for i in range(0, B, 4)]
  # Two radii (8/255 L-inf, 0.5 L2): a worst case per radius too (tests/test_eval_subset.py).
  assert set(whole) == {"clean", "worst", *specs, "worst@linf:eps=8/255", "worst@l2:eps=0.5"}
  for name, value in whole.items():
    np.testing.assert_array_equal(np.asarray(value),
                                  np.concatenate([np.asarray(p[name]) for p in parts]))
  counts = {k: int(v.sum()) for k, v in whole.items()}
  assert counts["worst"] <= min(counts[s] for s in specs) <= counts["clean"] == B
  assert counts["worst"] < B
  assert np.array_equal(whole["worst"], np.all([whole[s] for s in specs], axis=0) & whole["clean"])


def test_few_classes():
  """C = 2 and 3: targeted PGD, APGD-DLR and APGD-T run and stay valid (one compile)."""
  models = {c: make_model(c, seed=c) for c in (2, 3)}
  data = {c: make_data(models[c], seed=c) for c in (2, 3)}
  names = ("pgd-t", "apgd-dlr", "apgd-t")
  results = jax.jit(lambda data: {c: all_attacks(models[c], names).__wrapped__(*data[c], KEY)
                                  for c in data})(data)
  for c, f in models.items():
    x, y = data[c]
    target = losses.pick_target(f(x), y, 2)
    assert not np.any(np.asarray(target == y))
    for (name, norm), x_adv in results[c].items():
      assert_valid(x_adv, x, norm, EPS[norm])
      logits = f(x_adv)
      for value in (losses.dlr(logits, y), losses.targeted_dlr(logits, y, target),
                    losses.targeted_ce(logits, target), losses.targeted_cw(logits, target)):
        assert np.isfinite(np.asarray(value)).all(), (c, name)
      if name != "pgd-t":  # untargeted-success attacks must fool someone at this budget
        assert np.asarray(jnp.argmax(logits, -1) != y).any(), (c, name, norm)


def test_small_class_fallbacks():
  z = jnp.array([[2.0, -1.0], [0.5, 3.0]])
  y, t = jnp.array([0, 0]), jnp.array([1, 1])
  np.testing.assert_allclose(losses.dlr(z, y), [-3.0, 2.5])          # C = 2: margin
  np.testing.assert_allclose(losses.targeted_dlr(z, y, t), [-3.0, 2.5])
  z3 = jnp.array([[3.0, 1.0, 0.0]])
  np.testing.assert_allclose(losses.dlr(z3, jnp.array([0])), [-(3 - 1) / 3], rtol=1e-6)
  np.testing.assert_allclose(losses.targeted_dlr(z3, jnp.array([0]), jnp.array([2])),
                             [-(3 - 0) / 3], rtol=1e-6)             # C = 3: z1 - z3
  with pytest.raises(ValueError, match="at least 2 classes"):
    losses.dlr(jnp.ones((1, 1)), jnp.array([0]))


def test_dlr_matches_autoattack_formula():
  z = np.asarray(jax.random.normal(jax.random.key(0), (32, 7)))
  y = np.arange(32) % 7
  t = (y + 3) % 7
  s, idx = np.sort(z, 1), np.argsort(z, 1)
  u = np.arange(32)
  top_is_y = idx[:, -1] == y
  ref = -(z[u, y] - s[:, -2] * top_is_y - s[:, -1] * ~top_is_y) / (s[:, -1] - s[:, -3] + 1e-12)
  ref_t = -(z[u, y] - z[u, t]) / (s[:, -1] - 0.5 * (s[:, -3] + s[:, -4]) + 1e-12)
  np.testing.assert_allclose(losses.dlr(jnp.asarray(z), y), ref, rtol=1e-5)
  np.testing.assert_allclose(losses.targeted_dlr(jnp.asarray(z), y, t), ref_t, rtol=1e-5)


def test_checkpoints_are_autoattacks():
  is_check, window = attacks.checkpoint_schedule(100)
  # p = 0, .22, .41, .57, .70, .80, .87, .93, .99 of 100 iterations (paper, sec. 3.2).
  assert list(np.nonzero(is_check)[0] + 1) == [22, 41, 57, 70, 80, 87, 93, 99]
  assert list(window[is_check]) == [22, 19, 16, 13, 10, 7, 6, 6]
  assert attacks.checkpoint_schedule(1)[0].tolist() == [True]


def test_trades_kl():
  a = jax.random.normal(jax.random.key(0), (4, 5))
  b = jax.random.normal(jax.random.key(1), (4, 5))
  p, q = jax.nn.softmax(a), jax.nn.softmax(b)
  np.testing.assert_allclose(losses.trades_kl(a, b), jnp.sum(p * jnp.log(p / q), -1), rtol=1e-5)
  np.testing.assert_allclose(losses.trades_kl(a, a), 0.0, atol=1e-6)


def test_vmap_over_clients_equals_a_loop():
  k = 3
  xs, ys = X[:12].reshape((k, 4) + X.shape[1:]), Y[:12].reshape(k, 4)
  keys = jax.random.split(jax.random.PRNGKey(9), k)  # raw uint32 keys work too
  fn = all_attacks(MODEL, ("apgd-dlr",), ("linf",)).__wrapped__
  batched, single = jax.jit(lambda xs, ys, keys: (
      jax.vmap(fn)(xs, ys, keys), [fn(xs[i], ys[i], keys[i]) for i in range(k)]))(xs, ys, keys)
  for i in range(k):
    for name in single[i]:
      np.testing.assert_allclose(batched[name][i], single[i][name], atol=1e-6)


def test_spec_builds_the_same_attack():
  label, function, kwargs = parse("pgd:L2:eps=1/2:steps=3:loss=cw:random_start=false")
  assert (label, function) == ("pgd:L2:eps=1/2:steps=3:loss=cw:random_start=false", "pgd")
  assert kwargs == dict(norm="l2", eps=0.5, steps=3, loss="cw", random_start=False)
  assert parse({"attack": "apgd-t", "eps": "8/255", "target": 2})[2] == dict(
      norm="linf", eps=8 / 255, steps=100, loss="dlr", targeted=True, target=2)
  attack = make_attack("pgd:linf:eps=8/255:steps=4")
  assert attack == make_attack({"attack": "pgd", "eps": "8/255", "steps": 4, "name": attack.name})
  direct = attacks.pgd(MODEL, X, Y, KEY, eps=8 / 255, steps=4)
  np.testing.assert_array_equal(np.asarray(jax.jit(attack, static_argnums=0)(MODEL, X, Y, KEY)),
                                np.asarray(direct))


@pytest.mark.parametrize("spec, message", [
    ("pgd:linf:eps=-1/255:steps=10",
     "eps=-1/255 in attack spec 'pgd:linf:eps=-1/255:steps=10'; valid: a number >= 0"),
    ("pgd:linf:eps=1/255:steps=0",
     "steps=0 in attack spec 'pgd:linf:eps=1/255:steps=0'; valid: an integer >= 1"),
    ("pgdx:linf:eps=1/255", "unknown attack 'pgdx' in attack spec 'pgdx:linf:eps=1/255'; "
     "valid: apgd, apgd-ce, apgd-dlr, apgd-t, cw, fgsm, pgd"),
    ("pgd:l3:eps=1/255", "unknown norm 'l3' in attack spec 'pgd:l3:eps=1/255'; valid: linf, l2"),
    ({"attack": "fgsm", "eps": 0.1, "norm": "l1"},
     "unknown norm 'l1' in attack spec {'attack': 'fgsm', 'eps': 0.1, 'norm': 'l1'}; "
     "valid: linf, l2"),
    ({"attack": "apgd", "eps": -0.5},
     "eps=-0.5 in attack spec {'attack': 'apgd', 'eps': -0.5}; valid: a number >= 0"),
    ("apgd-ce:linf:eps=1/255:steps=-3",
     "steps=-3 in attack spec 'apgd-ce:linf:eps=1/255:steps=-3'; valid: an integer >= 1"),
    ("pgd:linf:eps=abc", "eps=abc in attack spec 'pgd:linf:eps=abc'; "
     "valid: a number or a fraction like 8/255"),
    ("fgsm:linf:eps=1/255:steps=3", "unknown option 'steps' for fgsm in attack spec "
     "'fgsm:linf:eps=1/255:steps=3'; valid: eps, loss, norm, target, targeted"),
    ("apgd:linf:eps=1/255:loss=kl", "unknown loss 'kl' for apgd in attack spec "
     "'apgd:linf:eps=1/255:loss=kl'; valid: ce, cw, dlr"),
    ("pgd:linf", "no eps in attack spec 'pgd:linf'; valid: eps=<number >= 0>, e.g. eps=8/255"),
])
def test_spec_errors(spec, message):
  with pytest.raises(ValueError) as info:
    make_attack(spec)
  assert str(info.value) == message
  assert "\n" not in str(info.value)
