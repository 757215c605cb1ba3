"""PromptFL (CoOp in FL): M learnable context vectors shared by all classes, before the name."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fedprompt_jax.methods import base

PLACEHOLDER = "X"


def placeholder_class_tokens(ctx: base.Context, num_ctx: int) -> dict:
  """{"ids", "mask"} [C, T] of "X .. X {class}." with `num_ctx` one-token placeholders.

  Context vectors (CoOp, MaPLe, FedAPT) overwrite the placeholders' embeddings.
  """
  prompts = [" ".join([PLACEHOLDER] * num_ctx) + f" {name}." for name in ctx.class_names]
  ids, mask = ctx.tokenizer(prompts)
  if (mask.sum(axis=1) >= ids.shape[1]).any():
    longest = max(ctx.class_names, key=len)
    raise ValueError(f"method.num_ctx={num_ctx} is invalid; it leaves no room for class name "
                     f"{longest!r} in the text context of {ids.shape[1]} tokens")
  placeholder = ctx.tokenizer.token_id(PLACEHOLDER.lower() + "</w>")
  assert (ids[:, 1:1 + num_ctx] == placeholder).all(), "placeholder must be one token"
  return {"ids": jnp.asarray(ids), "mask": jnp.asarray(mask)}


@base.register("promptfl")
def make(model, config) -> base.PromptMethod:
  """config: num_ctx M, init ("random" N(0, init_std) or a phrase such as "a photo of a")."""
  num_ctx = int(config.get("num_ctx", 16))
  init_mode = str(config.get("ctx_init", "random"))
  init_std = float(config.get("init_std", 0.02))
  if num_ctx < 1:
    raise ValueError(f"method.num_ctx={num_ctx} must be >= 1")

  def prepare(ctx: base.Context):
    """Token ids of "X X .. X {class}." [C, T], and the init phrase's embeddings."""
    aux = placeholder_class_tokens(ctx, num_ctx)
    if init_mode != "random":
      phrase_ids, _ = ctx.tokenizer([init_mode])
      n = ctx.tokenizer.num_tokens(init_mode)
      if n != num_ctx:
        raise ValueError(f"method.ctx_init={init_mode!r} is {n} tokens; method.num_ctx={num_ctx}")
      table = ctx.frozen["text_model"]["embeddings"]["token_embedding"]["embedding"]
      aux["ctx_init"] = table[phrase_ids[0, 1:1 + n]]
    return aux

  def init(key, aux):
    if "ctx_init" in aux:
      return {"ctx": jnp.asarray(aux["ctx_init"])}
    width = model.config.text.hidden_size
    return {"ctx": init_std * jax.random.normal(key, (num_ctx, width))}

  def class_embeds(frozen, params, aux):
    return model.encode_text(frozen, aux["ids"], aux["mask"], prompts=params["ctx"][None]).embeds

  def image_features(frozen, pixels):
    """[B, E] image embeddings of the frozen tower: nothing in PromptFL's image path trains."""
    return model.encode_image(frozen, pixels).embeds

  def logits_from_features(frozen, params, aux, extra, client, features, key):
    del extra, client, key
    return base.cosine_logits(features, class_embeds(frozen, params, aux), frozen["logit_scale"])

  def logits(frozen, params, aux, extra, client, pixels, key):
    return logits_from_features(frozen, params, aux, extra, client,
                                image_features(frozen, pixels), key)

  return base.PromptMethod(name="promptfl", prepare=prepare, init=init, logits=logits,
                           frozen_image=image_features,
                           logits_from_features=logits_from_features)
