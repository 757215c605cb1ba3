"""FedVPT: learnable visual prompt tokens, shallow or deep, before a frozen zero-shot head."""

from __future__ import annotations

import jax

from fedprompt_jax.methods import base


@base.register("fedvpt")
def make(model, config) -> base.PromptMethod:
  """config: num_tokens P, depth J (0 = shallow, else deep over the first J layers), init_std."""
  num_tokens = int(config.get("num_tokens", 8))
  depth = int(config.get("depth", 0))
  init_std = float(config.get("init_std", 0.02))
  templates = base.template_list(config)
  width = model.config.vision.hidden_size
  if num_tokens < 1:
    raise ValueError(f"method.num_tokens={num_tokens} must be >= 1")
  if not 0 <= depth <= model.config.vision.num_hidden_layers:
    raise ValueError(f"method.depth={depth} must be in [0, "
                     f"{model.config.vision.num_hidden_layers}] (0 = shallow)")

  def prepare(ctx: base.Context):
    return {"head": ctx.zeroshot_head(templates)}

  def init(key, aux):
    del aux
    if depth == 0:
      return {"shallow": init_std * jax.random.normal(key, (1, num_tokens, width))}
    return {"deep": init_std * jax.random.normal(key, (depth, 1, num_tokens, width))}

  def logits(frozen, params, aux, extra, client, pixels, key):
    del extra, client, key
    image = model.encode_image(frozen, pixels, shallow=params.get("shallow"),
                               deep=params.get("deep")).embeds
    return base.cosine_logits(image, aux["head"], frozen["logit_scale"])

  return base.PromptMethod(name="fedvpt", prepare=prepare, init=init, logits=logits)
