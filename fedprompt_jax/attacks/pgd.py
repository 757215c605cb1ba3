"""FGSM and PGD (L-inf, L2) in [0, 1] pixel space, plus the helpers AutoPGD shares.

All attacks are pure functions of (logits_fn, x, y, key): jittable, vmappable
(e.g. over a leading client axis inside a jitted federated round), with the step
loop in `lax.fori_loop`. `logits_fn` maps x [B, H, W, 3] in [0, 1] to logits
[B, C] and must treat examples independently (no batch statistics); callers
close over frozen parameters and prompts inside their own jitted function.

Budgets are in pixel units: `eps=8/255` bounds |x_adv - x| per pixel (L-inf) or
||x_adv - x||_2 per image (L2). Every returned x_adv lies in the eps-ball around
x and in [0, 1].

Randomness: `key` is one PRNG key (noise drawn for the whole batch) or a batch of
keys [B] (example i's noise depends only on key[i], so results do not depend on
how a data set is cut into batches; see `example_keys`). Both new-style
(`jax.random.key`) and raw uint32 keys work.

Shapes: B batch, H x W images, C classes.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from fedprompt_jax.attacks import losses

Array = jax.Array
LogitsFn = Callable[[Array], Array]  # x [B, H, W, 3] in [0, 1] -> logits [B, C]
NORMS = ("linf", "l2")
_TINY = 1e-12


# ----------------------------------------------------------------------------- keys

def _key_is_batched(key: Array) -> bool:
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    return key.ndim == 1
  return key.ndim == 2


def example_keys(key: Array, indices: Array) -> Array:
  """Per-example keys [B] from one key and global example indices [B] (fold_in)."""
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.asarray(indices, jnp.uint32))


def split_keys(key: Array, num: int) -> Array:
  """`num` keys (each a single key or a batch [B] like `key`), stacked on axis 0."""
  if _key_is_batched(key):
    return jnp.swapaxes(jax.vmap(lambda k: jax.random.split(k, num))(key), 0, 1)
  return jax.random.split(key, num)


def fold_keys(key: Array, data: int) -> Array:
  """fold_in for a single key or a batch of keys [B]."""
  if _key_is_batched(key):
    return jax.vmap(lambda k: jax.random.fold_in(k, data))(key)
  return jax.random.fold_in(key, data)


def sample(key: Array, shape: tuple[int, ...], fn: Callable[[Array, tuple], Array]) -> Array:
  """fn(key, shape) -> [B, ...], drawn per example when `key` is a batch of keys."""
  if _key_is_batched(key):
    return jax.vmap(lambda k: fn(k, (1,) + tuple(shape[1:]))[0])(key)
  return fn(key, tuple(shape))


# ----------------------------------------------------------------------- geometry

def bcast(v: Array, x: Array) -> Array:
  """Per-example values [B] -> [B, 1, 1, 1] (broadcastable against x)."""
  return jnp.reshape(v, v.shape + (1,) * (x.ndim - v.ndim))


def l2_norm(d: Array) -> Array:
  """Per-example L2 norm [B, ...] -> [B, 1, ..., 1]."""
  return jnp.sqrt(jnp.sum(jnp.square(d), axis=tuple(range(1, d.ndim)), keepdims=True))


def linf_norm(d: Array) -> Array:
  """Per-example L-inf norm [B, ...] -> [B, 1, ..., 1]."""
  return jnp.max(jnp.abs(d), axis=tuple(range(1, d.ndim)), keepdims=True)


def check_norm(norm: str) -> str:
  if norm not in NORMS:
    raise ValueError(f"unknown norm {norm!r}; valid: {', '.join(NORMS)}")
  return norm


def ascent_direction(grad: Array, norm: str) -> Array:
  """sign(g) for L-inf, g / ||g||_2 for L2 (the steepest ascent unit step)."""
  if norm == "linf":
    return jnp.sign(grad)
  return grad / (l2_norm(grad) + _TINY)


def project(x_adv: Array, x: Array, eps, norm: str) -> Array:
  """Projects onto {||x_adv - x|| <= eps} and then onto [0, 1] (which keeps the ball)."""
  if norm == "linf":
    x_adv = jnp.clip(x_adv, x - eps, x + eps)
  else:  # AutoAttack's form: x + d / ||d|| * min(eps, ||d||)
    delta = x_adv - x
    norm_d = l2_norm(delta)
    x_adv = x + delta / (norm_d + _TINY) * jnp.minimum(eps, norm_d)
  return jnp.clip(x_adv, 0.0, 1.0)


def random_init(key: Array, x: Array, eps, norm: str) -> Array:
  """A uniform start in the L-inf box, or for L2 a random direction times U(0, 1) * eps."""
  if norm == "linf":
    noise = sample(key, x.shape, lambda k, s: jax.random.uniform(k, s, x.dtype, -1.0, 1.0))
    return jnp.clip(x + eps * noise, 0.0, 1.0)

  def l2_noise(k, shape):
    k_dir, k_rad = jax.random.split(k)
    direction = jax.random.normal(k_dir, shape, x.dtype)
    radius = jax.random.uniform(k_rad, (shape[0],) + (1,) * (len(shape) - 1), x.dtype)
    return direction / (l2_norm(direction) + _TINY) * radius

  return project(x + eps * sample(key, x.shape, l2_noise), x, eps, "l2")


# ------------------------------------------------------------------------ targets

def resolve_target(logits_fn: LogitsFn, x: Array, y: Array, targeted: bool,
                   target) -> Array | None:
  """None when untargeted; else the target classes [B].

  `target` is a Python int rank r >= 1 (the r-th most likely class other than y
  at the clean input, clipped to C - 1; None means 1) or an array of class ids
  ([B], or 0-d for one class for all examples).
  """
  if not targeted:
    return None
  if target is None or (isinstance(target, int) and not isinstance(target, bool)):
    clean = jax.lax.stop_gradient(logits_fn(x))
    return losses.pick_target(clean, y, 1 if target is None else target)
  return jnp.broadcast_to(jnp.asarray(target, jnp.int32), y.shape)


def make_objective(logits_fn: LogitsFn, x: Array, y: Array, *, loss: losses.Loss,
                   targeted: bool, target) -> Callable[[Array], tuple[Array, tuple[Array, Array]]]:
  """Returns f(x_adv) -> (sum of objectives, (per-example objective [B], logits [B, C]))."""
  target_arr = resolve_target(logits_fn, x, y, targeted, target)
  clean = jax.lax.stop_gradient(logits_fn(x)) if loss == "kl" else None

  def f(x_adv):
    logits = logits_fn(x_adv)
    per_example = losses.objective(loss, logits, y, targeted=targeted, target=target_arr,
                                   clean_logits=clean)
    return jnp.sum(per_example), (per_example, logits)

  return f


# ------------------------------------------------------------------------ attacks

def pgd(logits_fn: LogitsFn, x: Array, y: Array, key: Array | None = None, *, eps,
        step_size=None, steps: int = 10, norm: str = "linf", loss: losses.Loss = "ce",
        random_start: bool = True, targeted: bool = False, target=None) -> Array:
  """Projected gradient ascent (Madry et al.) on `loss`; returns the last iterate.

  x <- Proj_{ball(x0, eps) & [0,1]}(x + step_size * sign(g))   (L-inf; L2: g / ||g||_2)

  Args:
    logits_fn: x [B, H, W, 3] in [0, 1] -> logits [B, C].
    x: clean images [B, H, W, 3] in [0, 1].
    y: true labels [B] int.
    key: PRNG key or keys [B] for the random start (unused without one).
    eps: budget in pixel units (L-inf per pixel, L2 per image).
    step_size: default 2.5 * eps / steps (Madry et al.).
    steps: number of gradient steps, >= 1 (static).
    norm: "linf" or "l2".
    loss: "ce", "cw" (margin; PGD-CW), "dlr", "kl" (TRADES inner maximisation:
      KL(p_clean || p_adv), with TRADES' start x + 0.001 N(0, I) when
      random_start) or a callable (logits, labels) -> [B] to maximise.
    random_start: start uniformly in the L-inf box (L2: random direction,
      radius U(0, eps)); otherwise at x.
    targeted: maximise the targeted objective towards `target`.
    target: class ids [B] (array), or a Python int rank r (the r-th most likely
      non-true class at x, clipped to C - 1; None = 1); only with `targeted`.

  Returns:
    x_adv [B, H, W, 3] within the eps-ball and [0, 1].
  """
  check_norm(norm)
  if steps < 1:
    raise ValueError(f"steps={steps}; valid: an integer >= 1")
  if step_size is None:
    step_size = 2.5 * eps / steps
  grad_fn = jax.grad(make_objective(logits_fn, x, y, loss=loss, targeted=targeted,
                                    target=target), has_aux=True)
  if random_start and key is None:
    raise ValueError("random_start=True needs a key")
  if random_start and loss == "kl":
    noise = sample(key, x.shape, lambda k, s: jax.random.normal(k, s, x.dtype))
    x_adv = project(x + 0.001 * noise, x, eps, norm)
  elif random_start:
    x_adv = random_init(key, x, eps, norm)
  else:
    x_adv = x

  def step(_, x_adv):
    grad, _ = grad_fn(x_adv)
    return project(x_adv + step_size * ascent_direction(grad, norm), x, eps, norm)

  return jax.lax.fori_loop(0, steps, step, x_adv)


def fgsm(logits_fn: LogitsFn, x: Array, y: Array, key: Array | None = None, *, eps,
         norm: str = "linf", loss: losses.Loss = "ce", targeted: bool = False,
         target=None) -> Array:
  """Fast gradient sign method (L2: fast gradient method): one step of size eps from x.

  Identical to `pgd(..., steps=1, step_size=eps, random_start=False)`. `key` is
  accepted for a uniform signature and unused. Returns x_adv [B, H, W, 3].
  """
  del key
  return pgd(logits_fn, x, y, None, eps=eps, step_size=eps, steps=1, norm=norm, loss=loss,
             random_start=False, targeted=targeted, target=target)
