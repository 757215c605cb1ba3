"""Adversarial training of any method inside its local steps: PGD-AT or TRADES.

`adversarial(method, attack, mode, beta)` returns the same method with a loss that
first crafts x_adv against the current prompts (held fixed during the attack) and
over all global classes (the method's logits), then trains on it:
  pgd     method loss at x_adv                                  (Madry et al.)
  trades  CE(clean) + beta * KL(p(clean) || p(x_adv))          (Zhang et al.)
"""

from __future__ import annotations

import dataclasses

import jax
import optax

from fedprompt_jax.attacks import Attack, trades_kl
from fedprompt_jax.methods.base import PromptMethod

MODES = ("none", "pgd", "trades")


def adversarial(method: PromptMethod, attack: Attack, mode: str, beta: float = 6.0) -> PromptMethod:
  if mode not in MODES[1:]:
    raise ValueError(f"adv.train={mode!r} is unknown; valid: {', '.join(MODES)}")

  def loss(frozen, params, aux, extra, client, pixels, labels, key):
    attack_key, loss_key = jax.random.split(key)
    fixed = jax.lax.stop_gradient(params)
    logits_fn = lambda x: method.logits(frozen, fixed, aux, extra, client, x, loss_key)
    x_adv = jax.lax.stop_gradient(attack(logits_fn, pixels, labels, attack_key))
    if mode == "pgd":
      return method.example_loss(frozen, params, aux, extra, client, x_adv, labels, loss_key)
    clean = method.logits(frozen, params, aux, extra, client, pixels, loss_key)
    adv = method.logits(frozen, params, aux, extra, client, x_adv, loss_key)
    ce = optax.softmax_cross_entropy_with_integer_labels(clean, labels)
    return ce + beta * trades_kl(clean, adv)

  return dataclasses.replace(method, name=f"{method.name}+{mode}", loss=loss)
