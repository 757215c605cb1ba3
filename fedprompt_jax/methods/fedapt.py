"""FedAPT: deep text prompts, and visual prompts generated from them with a Global Label Embedding.

Per layer l = 1..J (0-based 0..J-1 here):
  T_l [M, Dt]   learnable text prompts; T_0 overwrites the M placeholder tokens of
                "X .. X {class}." and T_l replaces those positions before text layer l.
  V_l [M, Dv] = g_phi(T_l + e_l, G)   visual prompts, replacing M slots before image layer l.
  G   [C, Dt]   the Global Label Embedding: the text tower's pooled EOS feature (after
                final_layer_norm, before the projection) of every class name, averaged over
                the templates; computed once in `prepare` (an `aux` leaf, so another class
                set's G can be swapped in), frozen unless `gle_trainable` adds a learnable
                residual [C, Dt] (zeros at init).
The classifier is the prompted text tower's class features (MaPLe). All parameters are
shared and FedAvg'd. J is capped at the depth of the shallower tower.

config (method section):
  num_ctx M (2), depth J (9, capped), init_std (0.02) of T and e,
  generator "attention" (cross-attention over G + MLP + Dt -> Dv) | "linear" (V_l = T_l W + b),
  share_generator (True: one g_phi for all J layers; False: one per layer),
  use_gle (True; False: no G, a plain T_l -> V_l coupling), gle_trainable (False),
  heads (4), mlp_ratio (2), templates (G's templates).
MaPLe's coupling is generator="linear", share_generator=False (no G, no layer embedding).

Shapes: B batch, C classes, J layers, M prompt tokens, Dt/Dv text/vision width, E embedding dim.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from fedprompt_jax.methods import base
from fedprompt_jax.methods import prompt_generator as gen
from fedprompt_jax.methods import text_prompt
from fedprompt_jax.models import zeroshot



def _bool(config, key: str, default: bool) -> bool:
  value = config.get(key, default)
  if not isinstance(value, bool):
    raise ValueError(f"method.{key}={value!r} is invalid; must be True or False")
  return value


def _int(config, key: str, default: int, low: int) -> int:
  value = config.get(key, default)
  if not isinstance(value, int) or isinstance(value, bool) or value < low:
    raise ValueError(f"method.{key}={value!r} is invalid; must be an integer >= {low}")
  return value


@functools.partial(jax.jit, static_argnums=0)
def _pooled(model, frozen, ids, mask):
  return model.encode_text(frozen, ids, mask).pooled


def label_embedding(ctx: base.Context, templates) -> jax.Array:
  """G [C, Dt]: mean over templates of the unprompted text tower's pooled EOS features."""
  texts = zeroshot.render_prompts(ctx.class_names, templates)
  ids, mask = ctx.tokenizer(texts)
  pooled = jnp.concatenate([_pooled(ctx.model, ctx.frozen, ids[i:i + 256], mask[i:i + 256])
                            for i in range(0, len(texts), 256)])
  return pooled.astype(jnp.float32).reshape(len(ctx.class_names), len(templates), -1).mean(1)


@base.register("fedapt")
def make(model, config) -> base.PromptMethod:
  num_ctx = _int(config, "num_ctx", 2, 1)
  requested = _int(config, "depth", 9, 1)
  depth = min(requested, model.config.text.num_hidden_layers,
              model.config.vision.num_hidden_layers)
  init_std = float(config.get("init_std", 0.02))
  kind = config.get("generator", "attention")
  if kind not in gen.KINDS:
    raise ValueError(f"method.generator={kind!r} is invalid; valid: {', '.join(gen.KINDS)}")
  shared = _bool(config, "share_generator", True)
  use_gle = _bool(config, "use_gle", True)
  if use_gle and kind != "attention":
    raise ValueError(f"method.use_gle=True is invalid with method.generator={kind!r}; the "
                     "Global Label Embedding needs generator='attention' (or use_gle=False)")
  gle_trainable = _bool(config, "gle_trainable", False) and use_gle
  heads = _int(config, "heads", 4, 1)
  mlp_ratio = _int(config, "mlp_ratio", 2, 1)
  d_text, d_vision = model.config.text.hidden_size, model.config.vision.hidden_size
  if d_text % heads:
    raise ValueError(f"method.heads={heads} is invalid; must divide the text width {d_text}")
  templates = base.template_list(config)

  def prepare(ctx: base.Context):
    """Token ids of "X .. X {class}." [C, T] with M placeholders, and G [C, Dt]."""
    return dict(text_prompt.placeholder_class_tokens(ctx, num_ctx),
                gle=label_embedding(ctx, templates))

  def init(key, aux):
    k_text, k_layer, k_gen = jax.random.split(key, 3)
    params = {"text": init_std * jax.random.normal(k_text, (depth, num_ctx, d_text)),
              "generator": gen.init_layers(k_gen, depth, shared, kind=kind, d_text=d_text,
                                           d_vision=d_vision, use_gle=use_gle,
                                           mlp_ratio=mlp_ratio)}
    if kind == "attention":
      params["layer_embed"] = init_std * jax.random.normal(k_layer, (depth, d_text))
    if gle_trainable:
      params["gle_residual"] = jnp.zeros_like(aux["gle"])
    return params

  def prompts(params, aux):
    """(T [J, M, Dt], V [J, M, Dv]) for the class set of `aux`."""
    text = params["text"]
    queries = text + params["layer_embed"][:, None] if "layer_embed" in params else text
    g = None
    if use_gle:
      g = aux["gle"]
      if "gle_residual" in params:
        if params["gle_residual"].shape != g.shape:
          raise ValueError(f"method.gle_trainable=True learned a residual for "
                           f"{params['gle_residual'].shape[0]} classes; this class set has "
                           f"{g.shape[0]} (evaluate another class set with a frozen G)")
        g = g + params["gle_residual"]
    return text, gen.apply_layers(params["generator"], queries, g, heads, shared)

  def logits(frozen, params, aux, extra, client, pixels, key):
    del extra, client, key
    text, visual = prompts(params, aux)
    image = model.encode_image(frozen, pixels, deep=visual[:, None]).embeds
    classes = model.encode_text(frozen, aux["ids"], aux["mask"], deep_prompts=text[:, None]).embeds
    return base.cosine_logits(image, classes, frozen["logit_scale"])

  return base.PromptMethod(name="fedapt", prepare=prepare, init=init, logits=logits)
