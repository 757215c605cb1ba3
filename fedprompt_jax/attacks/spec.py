"""Attack specs as written in configs, and AutoAttack-style ensemble robust accuracy.

A spec is a string or a dict. String form: fields separated by ':', the attack
name first, then at most one bare field, the norm (default linf), then
option=value fields in any order:

  "fgsm:linf:eps=1/255"
  "pgd:linf:eps=8/255:steps=10"            PGD-10, step 2.5 * eps / steps, random start
  "pgd:l2:eps=0.5:steps=20:step_size=0.1:random_start=false"
  "cw:linf:eps=8/255:steps=30"             PGD on the CW margin
  "pgd:linf:eps=8/255:loss=kl"             TRADES' inner maximisation
  "apgd-ce:linf:eps=8/255:steps=100:restarts=2"
  "apgd-dlr:l2:eps=0.5"
  "apgd-t:linf:eps=8/255:target=3"         APGD on the targeted DLR, 3rd most likely wrong class
  "pgd:linf:eps=8/255:targeted=true"       targeted PGD-CE to the most likely wrong class

Dict form: the same names as keys, e.g. {"attack": "pgd", "norm": "l2",
"eps": "8/255" or 0.03, "steps": 10}; an optional "name" labels it in
`robust_accuracy` (default: the string itself, or the dict's canonical string).

Attacks (options; defaults): fgsm (eps, loss, targeted, target); pgd (+ steps=10,
step_size=2.5*eps/steps, random_start=true); cw (pgd with loss=cw); apgd (eps,
steps=100, loss=ce, restarts=1, rho=0.75, targeted, target); apgd-ce, apgd-dlr
(apgd with that loss); apgd-t (apgd, loss=dlr, targeted). Losses: ce, cw, dlr,
and kl for pgd. Values: numbers or fractions ("8/255"), integers, booleans
(true/false). `target` is a rank (1 = most likely wrong class; clipped to C - 1).
Every error is a ValueError of one line naming the bad value and the valid ones.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping, Sequence, Union

import jax
import jax.numpy as jnp

from fedprompt_jax.attacks import losses
from fedprompt_jax.metric_keys import WORST_AT
from fedprompt_jax.attacks.apgd import apgd
from fedprompt_jax.attacks.pgd import NORMS, LogitsFn, fgsm, fold_keys, pgd

Array = jax.Array
Spec = Union[str, Mapping[str, Any]]

_COMMON = ("eps", "norm", "targeted", "target")
_PGD = _COMMON + ("steps", "step_size", "random_start")
_APGD = _COMMON + ("steps", "restarts", "rho")
# name -> (function, allowed options, fixed options, allowed losses)
_ATTACKS: dict[str, tuple[str, tuple[str, ...], dict[str, Any], tuple[str, ...]]] = {
    "fgsm": ("fgsm", _COMMON + ("loss",), {}, ("ce", "cw", "dlr")),
    "pgd": ("pgd", _PGD + ("loss",), {}, ("ce", "cw", "dlr", "kl")),
    "cw": ("pgd", _PGD, {"loss": "cw"}, ()),
    "apgd": ("apgd", _APGD + ("loss",), {}, ("ce", "cw", "dlr")),
    "apgd-ce": ("apgd", _APGD, {"loss": "ce"}, ()),
    "apgd-dlr": ("apgd", _APGD, {"loss": "dlr"}, ()),
    "apgd-t": ("apgd", tuple(o for o in _APGD if o != "targeted"),
               {"loss": "dlr", "targeted": True}, ()),
}
_DEFAULT_STEPS = {"pgd": 10, "apgd": 100}
_FUNCTIONS: dict[str, Callable[..., Array]] = {"fgsm": fgsm, "pgd": pgd, "apgd": apgd}
_RESERVED = ("clean", "worst")


@dataclasses.dataclass(frozen=True)
class Attack:
  """A validated attack: callable (logits_fn, x [B,H,W,3], y [B], key) -> x_adv; hashable."""
  name: str
  function: str                         # "fgsm", "pgd" or "apgd"
  options: tuple[tuple[str, Any], ...]  # keyword arguments of that function

  def __call__(self, logits_fn: LogitsFn, x: Array, y: Array, key: Array | None) -> Array:
    return _FUNCTIONS[self.function](logits_fn, x, y, key, **dict(self.options))


def _fail(what: str, spec: Spec, valid: str) -> ValueError:
  return ValueError(f"{what} in attack spec {spec!r}; valid: {valid}")


def _number(key: str, raw: Any, spec: Spec) -> float:
  valid = "a number or a fraction like 8/255"
  if isinstance(raw, bool):
    raise _fail(f"{key}={raw}", spec, valid)
  if isinstance(raw, (int, float)):
    return float(raw)
  try:
    num, _, den = str(raw).partition("/")
    return float(num) / float(den) if den else float(num)
  except (ValueError, ZeroDivisionError):
    raise _fail(f"{key}={raw}", spec, valid) from None


def _integer(key: str, raw: Any, spec: Spec, minimum: int) -> int:
  valid = f"an integer >= {minimum}"
  if isinstance(raw, bool) or not isinstance(raw, (int, str)):
    raise _fail(f"{key}={raw}", spec, valid)
  try:
    value = int(raw)
  except ValueError:
    raise _fail(f"{key}={raw}", spec, valid) from None
  if value < minimum:
    raise _fail(f"{key}={raw}", spec, valid)
  return value


def _boolean(key: str, raw: Any, spec: Spec) -> bool:
  table = {"true": True, "false": False, "1": True, "0": False}
  if isinstance(raw, bool):
    return raw
  if str(raw).lower() not in table:
    raise _fail(f"{key}={raw}", spec, "true, false")
  return table[str(raw).lower()]


def options(spec: Spec) -> tuple[str, dict[str, Any]]:
  """(attack name, raw options incl. norm and name) from a string or a dict; not validated."""
  if isinstance(spec, Mapping):
    fields = dict(spec)
    if "attack" not in fields:
      raise _fail("no 'attack' key", spec, ", ".join(sorted(_ATTACKS)))
    return str(fields.pop("attack")).lower(), fields
  if not isinstance(spec, str):
    raise ValueError(f"attack spec {spec!r} of type {type(spec).__name__}; valid: a string "
                     "like 'pgd:linf:eps=8/255:steps=10' or a dict")
  name, *parts = [p.strip() for p in spec.strip().split(":")]
  fields: dict[str, Any] = {}
  for part in parts:
    key, eq, value = part.partition("=")
    key = "norm" if not eq else key.strip().lower()
    value = part if not eq else value.strip()
    if key in fields:
      raise _fail(f"{key} given twice", spec, "each option at most once, one bare field (norm)")
    fields[key] = value
  return name.lower(), fields


def parse(spec: Spec) -> tuple[str, str, dict[str, Any]]:
  """Validates a spec: (label, function name, keyword arguments)."""
  attack, fields = options(spec)
  if attack not in _ATTACKS:
    raise _fail(f"unknown attack {attack!r}", spec, ", ".join(sorted(_ATTACKS)))
  function, allowed, fixed, loss_names = _ATTACKS[attack]
  label = fields.pop("name", None)
  for key in fields:
    if key not in allowed:
      raise _fail(f"unknown option {key!r} for {attack}", spec, ", ".join(sorted(allowed)))
  if "eps" not in fields:
    raise _fail("no eps", spec, "eps=<number >= 0>, e.g. eps=8/255")
  kwargs: dict[str, Any] = dict(fixed)
  norm = str(fields.get("norm", "linf")).lower()
  if norm not in NORMS:
    raise _fail(f"unknown norm {fields['norm']!r}", spec, ", ".join(NORMS))
  kwargs["norm"] = norm
  kwargs["eps"] = _number("eps", fields["eps"], spec)
  if kwargs["eps"] < 0:
    raise _fail(f"eps={fields['eps']}", spec, "a number >= 0")
  if "loss" in fields:
    if str(fields["loss"]).lower() not in loss_names:
      raise _fail(f"unknown loss {fields['loss']!r} for {attack}", spec, ", ".join(loss_names))
    kwargs["loss"] = str(fields["loss"]).lower()
  if function != "fgsm":
    kwargs["steps"] = _integer("steps", fields.get("steps", _DEFAULT_STEPS[function]), spec, 1)
  if "step_size" in fields:
    kwargs["step_size"] = _number("step_size", fields["step_size"], spec)
    if kwargs["step_size"] <= 0:
      raise _fail(f"step_size={fields['step_size']}", spec, "a number > 0")
  if "random_start" in fields:
    kwargs["random_start"] = _boolean("random_start", fields["random_start"], spec)
  if "restarts" in fields:
    kwargs["n_restarts"] = _integer("restarts", fields["restarts"], spec, 1)
  if "rho" in fields:
    kwargs["rho"] = _number("rho", fields["rho"], spec)
    if not 0 < kwargs["rho"] <= 1:
      raise _fail(f"rho={fields['rho']}", spec, "a number in (0, 1]")
  if "targeted" in fields:
    kwargs["targeted"] = _boolean("targeted", fields["targeted"], spec)
  if "target" in fields:
    if not kwargs.get("targeted", False):
      raise _fail(f"target={fields['target']} without targeted=true", spec,
                  "target only with targeted=true or apgd-t")
    kwargs["target"] = _integer("target", fields["target"], spec, 1)
  if label is None:
    label = spec if isinstance(spec, str) else ":".join(
        [attack, norm] + [f"{k}={fields[k]}" for k in sorted(fields) if k != "norm"])
  return str(label), function, kwargs


def make_attack(spec: Spec | Attack) -> Attack:
  """A validated, hashable attack callable (logits_fn, x, y, key) -> x_adv from a spec."""
  if isinstance(spec, Attack):
    return spec
  label, function, kwargs = parse(spec)
  return Attack(label, function, tuple(sorted(kwargs.items())))


def result_names(attacks: Sequence[Spec | Attack]) -> tuple[str, ...]:
  """The keys `robust_accuracy` gives the attacks: their names, made unique ("#i" appended)."""
  names: list[str] = []
  for i, attack in enumerate(make_attack(a) for a in attacks):
    name = attack.name
    while name in names or name in _RESERVED or name.startswith(WORST_AT):
      name = f"{name}#{i}"
    names.append(name)
  return tuple(names)


def _eps_text(eps: float) -> str:
  """1/255 -> "1/255" (k/255 when it is one), else the shortest float text."""
  k = eps * 255
  return f"{round(k)}/255" if round(k) > 0 and abs(k - round(k)) < 1e-6 else f"{eps:g}"


def radius_groups(attacks: Sequence[Spec | Attack]) -> dict[str, tuple[str, ...]]:
  """{"worst@<norm>:eps=<eps>": result names of the attacks at that radius}, one entry per
  (norm, eps) in order of first appearance; {} when all attacks share one radius (then the
  per-radius worst case is "worst" itself)."""
  built = [make_attack(a) for a in attacks]
  groups: dict[str, list[str]] = {}
  for attack, name in zip(built, result_names(built)):
    opts = dict(attack.options)
    groups.setdefault(f"{WORST_AT}{opts['norm']}:eps={_eps_text(opts['eps'])}", []).append(name)
  return {k: tuple(v) for k, v in groups.items()} if len(groups) > 1 else {}


def robust_outcomes(logits_fn: LogitsFn, attacks: Sequence[Spec | Attack], x: Array, y: Array,
                    key: Array | None) -> tuple[dict[str, Array], dict[str, Array]]:
  """`robust_accuracy` and the cross-entropy at each attack's x_adv, from the same logits.

  Returns:
    (correct, ce): correct as from `robust_accuracy`; ce {"clean": [B], <attack name>: [B]}
    float32, the cross-entropy of the label at x and at each x_adv (the gradient-masking
    check that an attack raises the loss; free, the logits are computed anyway).
  """
  built = [make_attack(a) for a in attacks]
  logits = logits_fn(x)
  if built:  # the attacks would raise too; this says so before any of them runs
    losses.check_classes(logits)
  correct = {"clean": jnp.argmax(logits, axis=-1) == y}
  ce = {"clean": losses.cross_entropy(logits, y)}
  worst = correct["clean"]
  for i, (attack, name) in enumerate(zip(built, result_names(built))):
    x_adv = attack(logits_fn, x, y, None if key is None else fold_keys(key, i))
    logits = logits_fn(jax.lax.stop_gradient(x_adv))
    correct[name] = correct["clean"] & (jnp.argmax(logits, axis=-1) == y)
    ce[name] = losses.cross_entropy(logits, y)
    worst = worst & correct[name]
  correct["worst"] = worst
  for group, names in radius_groups(built).items():
    correct[group] = functools.reduce(jnp.logical_and, [correct[n] for n in names])
  return correct, ce


def robust_accuracy(logits_fn: LogitsFn, attacks: Sequence[Spec | Attack], x: Array, y: Array,
                    key: Array | None) -> dict[str, Array]:
  """Per-example correctness under each attack and under all of them (AutoAttack-style).

  Args:
    logits_fn: x [B, H, W, 3] in [0, 1] -> logits [B, C].
    attacks: specs (strings/dicts) or `Attack`s; attack i gets fold_in(key, i).
    x: clean images [B, H, W, 3]; y: labels [B].
    key: one key, or keys [B] for per-example noise; with per-example keys
      (`pgd.example_keys(key, global_indices)`) the result for an example does
      not depend on the batch it is evaluated in.

  Returns:
    {"clean": [B] bool, <attack name>: [B] bool, ..., "worst": [B] bool}: an
    example is robust to an attack when it is classified correctly both clean
    and at that attack's x_adv; "worst" when it survives every attack. With attacks
    at more than one radius, also "worst@<norm>:eps=<eps>" [B] bool per radius
    (`radius_groups`): it survives every attack at that radius. Sum over
    batches and divide by the number of examples for accuracies. Names are
    `result_names(attacks)`.

  Raises:
    ValueError: logits with fewer than 2 classes and at least one attack.
  """
  return robust_outcomes(logits_fn, attacks, x, y, key)[0]
