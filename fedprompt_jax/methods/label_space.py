"""A client's label space: the classes its training loss and training-time attack may see.

`local_label_space(method)` wraps any method so that a client's logits over the
classes absent from its own train split are replaced by a large negative finite
constant (`MASKED_LOGIT`; -inf would make 0 * inf = NaN in gradients). The
softmax then gives those classes probability 0, and neither the loss nor an
attack that differentiates the logits gets any gradient through them: a client
crafts adversarial examples only against the labels it knows (FedAPT's "class
information gap"). Applied before `adversarial(...)`, so the attack sees the
masked logits too.

The global model's client constant comes from a uniform histogram (train.py,
`Run.global_client`): nothing is masked, so global and robust evaluation stay
over all C classes, while personalised evaluation uses each client's own space.

Shapes: B batch, C classes.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from fedprompt_jax.methods.base import PromptMethod

LABEL_SPACES = ("global", "local")
MASKED_LOGIT = -1e4


def mask_logits(logits: jax.Array, label_mask: jax.Array) -> jax.Array:
  """[B, C] logits, [C] bool -> [B, C] with the classes outside the mask at MASKED_LOGIT."""
  return jnp.where(label_mask[None], logits, jnp.asarray(MASKED_LOGIT, logits.dtype))


def local_label_space(method: PromptMethod) -> PromptMethod:
  """The same method whose clients see only the classes they hold (client = {inner, label_mask})."""
  if method.loss is not None:
    raise ValueError(f"fed.label_space='local' is not supported for method {method.name!r}, "
                     "which defines its own loss; valid with methods whose loss is "
                     "cross-entropy of their logits")

  def init_client(histogram):
    return {"inner": method.init_client(histogram), "label_mask": histogram > 0}

  def logits(frozen, params, aux, extra, client, pixels, key):
    inner = method.logits(frozen, params, aux, extra, client["inner"], pixels, key)
    return mask_logits(inner, client["label_mask"])

  def client_stats(frozen, params, aux, extra, client, pixels, labels, mask):
    return method.client_stats(frozen, params, aux, extra, client["inner"], pixels, labels, mask)

  if method.client_stats is PromptMethod.client_stats:  # none to forward: keep the default
    client_stats = method.client_stats

  from_features = None
  if method.logits_from_features is not None:  # the same mask on the cached-feature path
    def from_features(frozen, params, aux, extra, client, features, key):
      inner = method.logits_from_features(frozen, params, aux, extra, client["inner"], features,
                                          key)
      return mask_logits(inner, client["label_mask"])

  return dataclasses.replace(method, name=f"{method.name}+local_labels", logits=logits,
                             init_client=init_client, client_stats=client_stats,
                             logits_from_features=from_features)
