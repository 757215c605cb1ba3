"""Zero-shot CLIP: hand-written templates, nothing trained."""

from __future__ import annotations

from fedprompt_jax.methods import base


@base.register("zeroshot")
def make(model, config) -> base.PromptMethod:
  templates = base.template_list(config)

  def prepare(ctx: base.Context):
    return {"head": ctx.zeroshot_head(templates)}  # [C, E], unit rows

  def logits(frozen, params, aux, extra, client, pixels, key):
    del params, extra, client, key
    image = model.encode_image(frozen, pixels).embeds
    return base.cosine_logits(image, aux["head"], frozen["logit_scale"])

  return base.PromptMethod(name="zeroshot", prepare=prepare, init=lambda key, aux: {},
                           logits=logits, trains=False)
