"""With one class there is nothing to attack: every attack path raises the same one-line error."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from fedprompt_jax import attacks
from fedprompt_jax.attacks import spec as spec_lib

MESSAGE = "logits with 1 class; attacks need at least 2 classes"
X = jnp.linspace(0.2, 0.8, 4 * 2 * 2 * 3).reshape(4, 2, 2, 3)
Y = jnp.zeros(4, jnp.int32)
KEY = jax.random.key(0)


def one_class(x):
  """x [B, 2, 2, 3] -> logits [B, 1] (depends on x, so gradients are not trivially zero)."""
  return 3.0 * x.reshape(x.shape[0], -1)[:, :1]


def every_spec():
  """Each attack kind the spec parser knows, with each loss and targeting it allows, both norms."""
  kinds = spec_lib._ATTACKS  # pylint: disable=protected-access
  for name, (_, allowed, _, loss_names) in kinds.items():
    variants = [""] + [f":loss={loss}" for loss in loss_names]
    if "targeted" in allowed:
      variants.append(":targeted=true")
    for norm in ("linf", "l2"):
      for extra in variants:
        yield f"{name}:{norm}:eps=1/255{extra}"


SPECS = list(every_spec())


def test_every_kind_is_covered():
  kinds = {s.split(":")[0] for s in SPECS}
  assert kinds == {"fgsm", "pgd", "cw", "apgd", "apgd-ce", "apgd-dlr", "apgd-t"}
  assert "pgd:linf:eps=1/255:loss=kl" in SPECS and "apgd:l2:eps=1/255:loss=ce" in SPECS


@pytest.mark.parametrize("spec", SPECS)
def test_every_spec_refuses_one_class(spec):
  attack = spec_lib.make_attack(spec)
  with pytest.raises(ValueError) as eager:
    attack(one_class, X, Y, KEY)
  with pytest.raises(ValueError) as jitted:
    jax.jit(lambda x, y, k: attack(one_class, x, y, k))(X, Y, KEY)
  with pytest.raises(ValueError) as robust:
    spec_lib.robust_accuracy(one_class, [spec], X, Y, KEY)
  for info in (eager, jitted, robust):
    assert str(info.value) == MESSAGE


def test_functions_and_custom_losses_refuse_one_class():
  calls = (
      lambda: attacks.pgd(one_class, X, Y, KEY, eps=0.1, loss=lambda z, y: z[:, 0]),
      lambda: attacks.apgd(one_class, X, Y, KEY, eps=0.1, steps=2),
      lambda: attacks.fgsm(one_class, X, Y, None, eps=0.1),
      lambda: attacks.objective("ce", jnp.ones((2, 1)), jnp.zeros(2, jnp.int32)),
  )
  for call in calls:
    with pytest.raises(ValueError) as info:
      call()
    assert str(info.value) == MESSAGE


def test_two_classes_still_run_and_clean_only_needs_no_second_class():
  two = lambda x: jnp.concatenate([one_class(x), -one_class(x)], axis=-1)
  out = spec_lib.robust_accuracy(two, ["apgd-ce:linf:eps=1/255:steps=2"], X, Y, KEY)
  assert set(out) == {"clean", "apgd-ce:linf:eps=1/255:steps=2", "worst"}
  clean = spec_lib.robust_accuracy(one_class, [], X, Y, KEY)
  assert bool(jnp.all(clean["clean"])) and bool(jnp.all(clean["worst"]))
