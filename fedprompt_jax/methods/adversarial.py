"""Adversarial training of any method inside its local steps: PGD-AT or TRADES.

`adversarial(method, attack, mode, beta)` returns the same method with a loss that
first crafts x_adv against the current prompts (held fixed during the attack) and
over all global classes (the method's logits), then trains on it:
  pgd     method loss at x_adv                                  (Madry et al.)
  trades  L(clean) + beta * KL(p(clean) || p(x_adv))           (Zhang et al.)
where L is the method's own loss (cross-entropy unless the method defines one, e.g.
with a consistency term, which TRADES then keeps).

TRADES' inner maximisation is part of its definition: x_adv maximises
KL(p(x) || p(x')) over the ball, by PGD from x + 0.001 N(0, I), where p(x) is the
clean prediction of the current prompts (`trades_attack`). The attack spec only
gives the radius, norm, steps and step size.
"""

from __future__ import annotations

import dataclasses

import jax
import optax

from fedprompt_jax.attacks import Attack, make_attack, trades_kl
from fedprompt_jax.attacks.spec import Spec
from fedprompt_jax.methods.base import PromptMethod

MODES = ("none", "pgd", "trades")
TRADES_INNER = ("pgd with no loss option (or loss=kl), random_start and untargeted: TRADES "
                "maximises KL(p(x) || p(x')) by PGD from x + 0.001 N(0, 1)")


def trades_inner_problem(attack: Spec | Attack) -> str | None:
  """Why `attack` is not TRADES' inner maximisation once given loss=kl, or None if it is."""
  attack = make_attack(attack)
  opts = dict(attack.options)
  if attack.function != "pgd":
    return f"is {attack.function}, not pgd"
  if opts.get("loss", "kl") != "kl":
    return f"maximises loss {opts['loss']!r}, not the KL"
  if not opts.get("random_start", True):
    return "has random_start=false (the KL has zero gradient at x, so PGD would not move)"
  if opts.get("targeted", False):
    return "is targeted"
  return None


def trades_attack(attack: Spec | Attack, any_inner_attack: bool = False) -> Attack:
  """TRADES' inner attack: `attack` (a pgd spec) with loss=kl; [B, H, W, 3] -> [B, H, W, 3].

  PGD with loss "kl" maximises KL(p(x) || p(x')) with p(x) the logits_fn's clean
  prediction (held fixed), starting at x + 0.001 N(0, I) (see `attacks.pgd`).

  Args:
    attack: a spec or Attack; its eps, norm, steps and step_size are used. A pgd
      spec without a loss option gets loss=kl.
    any_inner_attack: take an attack that is not TRADES' inner maximisation (see
      `trades_inner_problem`: another loss such as CE, fgsm/cw/apgd, no random
      start, targeted) as written instead of refusing it.

  Raises:
    ValueError (one line) for such an attack without `any_inner_attack`.
  """
  attack = make_attack(attack)
  problem = trades_inner_problem(attack)
  if problem is not None and not any_inner_attack:
    raise ValueError(f"TRADES' inner attack {attack.name!r} {problem}; valid: {TRADES_INNER}, "
                     "or any_inner_attack=True to use it as written")
  opts = dict(attack.options)
  if attack.function != "pgd" or "loss" in opts:
    return attack
  return Attack(f"{attack.name}:loss=kl", attack.function,
                tuple(sorted({**opts, "loss": "kl"}.items())))


def adversarial(method: PromptMethod, attack: Spec | Attack, mode: str, beta: float = 6.0,
                any_inner_attack: bool = False) -> PromptMethod:
  """`method` trained on adversarial examples; its loss maps the usual inputs to [B].

  Args:
    method: any PromptMethod.
    attack: the training attack (spec or Attack). With mode "trades" it is made
      TRADES' KL maximisation by `trades_attack` (refused if it names another
      loss, unless `any_inner_attack`).
    mode: "pgd" (PGD-AT) or "trades".
    beta: TRADES' weight of the KL term.
    any_inner_attack: see `trades_attack`.
  """
  if mode not in MODES[1:]:
    raise ValueError(f"adv.train={mode!r} is unknown; valid: {', '.join(MODES)}")
  attack = trades_attack(attack, any_inner_attack) if mode == "trades" else make_attack(attack)

  def loss(frozen, params, aux, extra, client, pixels, labels, key):
    attack_key, loss_key = jax.random.split(key)
    fixed = jax.lax.stop_gradient(params)
    logits_fn = lambda x: method.logits(frozen, fixed, aux, extra, client, x, loss_key)
    x_adv = jax.lax.stop_gradient(attack(logits_fn, pixels, labels, attack_key))
    if mode == "pgd":
      return method.example_loss(frozen, params, aux, extra, client, x_adv, labels, loss_key)
    clean = method.logits(frozen, params, aux, extra, client, pixels, loss_key)
    adv = method.logits(frozen, params, aux, extra, client, x_adv, loss_key)
    if method.loss is None:  # the natural term is CE of the clean logits: reuse them
      natural = optax.softmax_cross_entropy_with_integer_labels(clean, labels)
    else:  # a method's own loss (e.g. with a consistency term) stays the natural term
      natural = method.loss(frozen, params, aux, extra, client, pixels, labels, loss_key)
    return natural + beta * trades_kl(clean, adv)

  # Its loss attacks the images through the whole model: no frozen-feature path (feature_cache.py).
  return dataclasses.replace(method, name=f"{method.name}+{mode}", loss=loss, frozen_image=None,
                             logits_from_features=None)
