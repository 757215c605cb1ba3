"""Adversarial attacks in [0, 1] pixel space: FGSM, PGD (L-inf/L2, CE/CW/DLR/KL), AutoPGD.

All are pure, jittable, vmappable functions of (logits_fn, x, y, key) returning
x_adv [B, H, W, 3]; `spec` parses config strings such as
"pgd:linf:eps=8/255:steps=10" and computes ensemble robust accuracy.

The package attributes `pgd` and `apgd` are the functions; take helpers from the
modules with `from fedprompt_jax.attacks.pgd import ...` (not `import ... as`).
"""

from fedprompt_jax.attacks.apgd import apgd, apgd_ce, apgd_dlr, checkpoint_schedule
from fedprompt_jax.attacks.losses import (cross_entropy, cw_margin, dlr, objective, pick_target,
                                          targeted_ce, targeted_cw, targeted_dlr, trades_kl)
from fedprompt_jax.attacks.pgd import example_keys, fgsm, pgd
from fedprompt_jax.attacks.spec import Attack, make_attack, parse, robust_accuracy

__all__ = [
    "Attack", "apgd", "apgd_ce", "apgd_dlr", "checkpoint_schedule", "cross_entropy", "cw_margin",
    "dlr", "example_keys", "fgsm", "make_attack", "objective", "parse", "pgd", "pick_target",
    "robust_accuracy", "targeted_ce", "targeted_cw", "targeted_dlr", "trades_kl",
]
