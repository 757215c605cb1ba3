"""PEP-FedPT: class-contextualised mixed prompts from global prototypes and client priors.

Per sample x of client k (METHODS.md; the readings marked "ours" there are flags here):
  z(x)   = CLS feature of a forward pass with the shared prompt P_S only   (mix_feature)
  w(x)   = softmax_c( log pi_k(c) + cos(z(x), mu_c) / tau )              (mixing)
  P(x)   = sum_c w_c(x) P_c                                               [n_c, Dv]
  logits = head(CLIP(x; P_S at the input, P(x) at layers l_c..L))         (class_layers)
mu_c are global class prototypes, set by the server from the per-class feature
sums and counts the clients send up each round (optionally as an EMA), with z(x)
computed by default with the shared prompt the client received (the global one, so
all clients' features share one space; `prototype_features`: received | trained); pi_k is
client k's smoothed label histogram, a constant kept on the client (uniform for
the global model). Every trainable leaf (P_S, {P_c}, head) is shared: FedAvg.

Shapes: B batch, C classes, n_s / n_c prompt tokens, Dv vision width, E embedding dim.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fedprompt_jax.methods import base
from fedprompt_jax.models.clip import normalize

MIXING = ("bayes", "prior_only", "prototype_only", "uniform")
HEAD_INIT = ("zeroshot", "random")


def mixing_weights(z, prototypes, has_proto, log_prior, tau, rule="bayes"):
  """w [B, C] from features z [B, Dv], prototypes [C, Dv], has_proto [C] bool, log_prior [C]."""
  cos = normalize(z) @ jnp.where(has_proto[:, None], normalize(prototypes + 1e-12), 0.0).T
  if rule == "bayes":
    score = log_prior[None] + cos / tau
  elif rule == "prior_only":
    score = jnp.broadcast_to(log_prior[None], cos.shape)
  elif rule == "prototype_only":
    score = cos / tau
  else:
    score = jnp.zeros_like(cos)
  return jax.nn.softmax(score, axis=-1)


def fold_prototypes(extra, stats, ema: float):
  """Server hook: mu_c = sums_c / counts_c for classes seen this round (EMA with the old mu)."""
  counts, sums = stats["counts"], stats["sums"]
  seen = counts > 0
  fresh = sums / jnp.maximum(counts, 1.0)[:, None]
  blended = jnp.where(extra["has_proto"][:, None], ema * extra["prototypes"] + (1 - ema) * fresh,
                      fresh)
  return {"prototypes": jnp.where(seen[:, None], blended, extra["prototypes"]),
          "has_proto": extra["has_proto"] | seen}


@base.register("pep", releases="per-class feature sums and counts (client_stats)")
def make(model, config) -> base.PromptMethod:
  vis = model.config.vision
  num_shared = int(config.get("num_shared", 4))
  num_class_tokens = int(config.get("num_class_tokens", 4))
  class_layers = int(config.get("class_layers", vis.num_hidden_layers // 2))  # l_c
  tau = float(config.get("tau", 0.1))
  rule = str(config.get("mixing", "bayes"))
  prior_smoothing = float(config.get("prior_smoothing", 1.0))
  ema = float(config.get("prototype_ema", 0.0))
  head_init = str(config.get("head_init", "zeroshot"))
  replace_each = bool(config.get("replace_each_layer", True))
  init_std = float(config.get("init_std", 0.02))
  prototype_features = str(config.get("prototype_features", "received"))
  templates = base.template_list(config)
  if rule not in MIXING:
    raise ValueError(f"method.mixing={rule!r} is unknown; valid: {', '.join(MIXING)}")
  if prototype_features not in base.STATS_FROM:
    raise ValueError(f"method.prototype_features={prototype_features!r} is unknown; "
                     f"valid: {', '.join(base.STATS_FROM)}")
  if head_init not in HEAD_INIT:
    raise ValueError(f"method.head_init={head_init!r} is unknown; valid: {', '.join(HEAD_INIT)}")
  if not 0 <= class_layers < vis.num_hidden_layers:
    raise ValueError(f"method.class_layers={class_layers} must be in [0, {vis.num_hidden_layers})")
  if not tau > 0:
    raise ValueError(f"method.tau={tau} must be > 0")
  depth = vis.num_hidden_layers - class_layers if replace_each else 1

  def prepare(ctx: base.Context):
    return {"head": ctx.zeroshot_head(templates)}

  def init(key, aux):
    k1, k2, k3 = jax.random.split(key, 3)
    num_classes, embed = aux["head"].shape
    head = aux["head"] if head_init == "zeroshot" else normalize(
        jax.random.normal(k3, (num_classes, embed)))
    return {"shared": init_std * jax.random.normal(k1, (1, num_shared, vis.hidden_size)),
            "class": init_std * jax.random.normal(k2, (num_classes, num_class_tokens,
                                                       vis.hidden_size)),
            "head": head}

  def init_extra(aux):
    num_classes = aux["head"].shape[0]
    return {"prototypes": jnp.zeros((num_classes, vis.hidden_size)),
            "has_proto": jnp.zeros((num_classes,), bool)}

  def init_client(histogram):
    prior = histogram + prior_smoothing
    return {"log_prior": jnp.log(prior / prior.sum())}

  def features(frozen, params, pixels):
    return model.encode_image(frozen, pixels, shallow=params["shared"]).pooled

  def logits(frozen, params, aux, extra, client, pixels, key):
    del aux, key
    # The mixing weights are cut from the parameters' gradient (METHODS.md, ours) but not from
    # the pixels': an attack differentiates the whole decision function through z(x) too.
    z = features(frozen, jax.lax.stop_gradient(params), pixels)
    w = mixing_weights(z, extra["prototypes"], extra["has_proto"], client["log_prior"], tau, rule)
    mixed = jnp.einsum("bc,cpd->bpd", w, params["class"])  # [B, n_c, Dv]
    deep = jnp.broadcast_to(mixed[None], (depth,) + mixed.shape)
    out = model.encode_image(frozen, pixels, shallow=params["shared"], deep=deep,
                             deep_start=class_layers)
    return base.cosine_logits(out.embeds, params["head"], frozen["logit_scale"])

  def client_stats(frozen, params, aux, extra, client, pixels, labels, mask):
    del aux, extra, client
    z = features(frozen, params, pixels)
    onehot = jax.nn.one_hot(labels, params["class"].shape[0]) * mask[:, None]
    return {"sums": onehot.T @ z, "counts": onehot.sum(0)}

  return base.PromptMethod(
      name="pep", prepare=prepare, init=init, logits=logits, init_extra=init_extra,
      client_stats=client_stats, server_update=lambda e, s: fold_prototypes(e, s, ema),
      init_client=init_client, stats_from=prototype_features)
