"""Prompt-tuning methods; importing this package fills `base.REGISTRY`."""

from fedprompt_jax.methods import fedapt, fedmvp, pep, text_prompt, visual_prompt, zeroshot  # noqa: F401
from fedprompt_jax.methods.base import REGISTRY, PromptMethod, make_method  # noqa: F401
