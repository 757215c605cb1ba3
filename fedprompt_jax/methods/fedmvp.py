"""FedMVP: multimodal visual prompts from a PromptFormer over class attributes.

Read from the official code (mainaksingha01/FedMVP; METHODS.md "FedMVP"):

* `prepare`: every class's attribute sentences -> frozen, L2-normalised text
  features t_{c,j} [C, J, E] (padded with a mask where classes have different
  counts). They are `aux`: novel classes and other data sets swap theirs in.
  method.attribute_source: "file" (default) reads the data set's attribute
  sentences; "class_name" is the no-attributes ablation: each class's list is
  the single sentence of the first zero-shot template (method.templates[0])
  with the class name, J = 1 (ours: the released code has no such switch).
* prompts(x) = PromptFormer(patch tokens of x, Linear(t)) [B, P, D]
  (methods/promptformer.py), shallow visual prompts of the frozen image tower.
  The released code appends them after the patches, [CLS; patches; P], before
  `ln_pre`; ours enter at the tower's shallow slot, [CLS; P; patches], also
  before `pre_layrnorm`. The vision tower has no mask and the prompts get no
  position embedding, so attention is permutation-equivariant over the other
  tokens and the pooled CLS output is the same.
* logits = s * mean_j <f(x), t_{c,j}>, f the normalised image feature.
* loss = CE + alpha * (1 - cos(f(x), f0(flip(x)))), f0 the frozen CLIP without
  prompts, flip a horizontal flip drawn per example with probability p (ours:
  per example; the released code flips the whole batch at once).
* LoRA (method.lora_rank > 0) on the attention's q, k, v projections; a client
  switches to it once a step's mean training loss is below
  method.lora_switch_loss: from that step on only the LoRA leaves and the
  key/value Linear train, the PromptFormer's attention and feed-forward stay
  (as the released code freezes `crossattn` and leaves `linear` trainable).
  The switch is per client and per round (ours: the released code keeps it on
  the client across rounds); LoRA always enters the forward pass (it is the
  identity until trained).
* method.step_once_per_round: the optimizer steps once per round, at the
  client's last non-empty batch with that batch's gradient (as the released
  code does); default False: a step on every batch.

Shapes: B batch, C classes, J sentences per class, E embedding dim, D vision
width, P prompt tokens, Np patches.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedprompt_jax.methods import base, promptformer
from fedprompt_jax.models import clip as clip_lib
from fedprompt_jax.models import zeroshot

Tree = Any


ATTRIBUTE_SOURCES = ("file", "class_name")


def class_name_sentences(class_names, template: str) -> dict[str, tuple[str, ...]]:
  """The no-attributes ablation: {class: (template with the class name,)}."""
  return {name: (template.format(name),) for name in class_names}


def attribute_features(ctx: base.Context,
                       sentences: dict[str, tuple[str, ...]] | None = None) -> dict[str, jax.Array]:
  """{"text": [C, J, E] unit features (zero rows for padding), "mask": [C, J] bool}.

  `sentences` replaces the data set's attribute sentences (`ctx.attributes`) when given.
  """
  if sentences is not None:
    ctx = base.Context(ctx.model, ctx.frozen, ctx.tokenizer, ctx.class_names, sentences)
  if ctx.attributes is None:
    raise ValueError("method fedmvp needs attribute sentences for every class and this data set "
                     "has none; give data.attributes_file=PATH (a JSON object: class name -> "
                     "list of sentences; launch/transfer_eval.py: --attributes_file=PATH)")
  missing = [c for c in ctx.class_names if not ctx.attributes.get(c)]
  if missing:
    raise ValueError(f"method fedmvp: class {missing[0]!r} has no attribute sentences "
                     f"({len(missing)} classes lack them); see data.attributes_file")
  counts = [len(ctx.attributes[c]) for c in ctx.class_names]
  sentences = [s for c in ctx.class_names for s in ctx.attributes[c]]
  feats = zeroshot.class_text_features(ctx.model, ctx.frozen, ctx.tokenizer, sentences, ("{}",))
  width = max(counts)
  text = np.zeros((len(counts), width, feats.shape[-1]), np.float32)
  mask = np.zeros((len(counts), width), bool)
  start = 0
  for c, n in enumerate(counts):
    text[c, :n] = np.asarray(feats[start:start + n])
    mask[c, :n] = True
    start += n
  return {"text": jnp.asarray(text), "mask": jnp.asarray(mask)}


def patch_tokens(model: clip_lib.Clip, frozen: Tree, pixels: jax.Array) -> jax.Array:
  """[B, H, W, 3] in [0, 1] -> [B, Np, D]: patch tokens after patch + position embedding."""
  cfg = model.config
  mean = jnp.asarray(cfg.image_mean, jnp.float32)
  std = jnp.asarray(cfg.image_std, jnp.float32)
  x = ((pixels.astype(jnp.float32) - mean) / std).astype(model.dtype)
  embeddings = clip_lib.VisionEmbeddings(cfg.vision, model.dtype)
  return embeddings.apply({"params": frozen["vision_model"]["embeddings"]}, x)[:, 1:]


def attribute_logits(image_embeds: jax.Array, text: jax.Array, mask: jax.Array,
                     logit_scale: jax.Array) -> jax.Array:
  """s * mean_j <normalised image [B, E], t_{c,j}> over each class's valid sentences -> [B, C]."""
  sims = jnp.einsum("be,cje->bcj", clip_lib.normalize(image_embeds), text)
  valid = mask.astype(sims.dtype)
  return jnp.exp(logit_scale) * (sims * valid).sum(-1) / valid.sum(-1)


def consistency(image_embeds: jax.Array, frozen_embeds: jax.Array) -> jax.Array:
  """[B] 1 - cos(f(x), f0(flip(x)))."""
  return 1.0 - jnp.sum(clip_lib.normalize(image_embeds) * clip_lib.normalize(frozen_embeds), -1)


def random_flip(pixels: jax.Array, key: jax.Array, prob: float) -> jax.Array:
  """Flips each image of [B, H, W, 3] horizontally with probability `prob`."""
  flip = jax.random.bernoulli(key, prob, (pixels.shape[0],))
  return jnp.where(flip[:, None, None, None], pixels[:, :, ::-1], pixels)


def _mask_tree(tree: Tree, factor: jax.Array) -> Tree:
  return jax.tree_util.tree_map(lambda u: u * factor.astype(u.dtype), tree)


@base.register("fedmvp")
def make(model, config) -> base.PromptMethod:
  """config: num_tokens P (4), num_heads (4), ff_mult (4), consistency_weight alpha (10),
  flip_prob (0.5), lora_rank (0 = off), lora_switch_loss (0.5), step_once_per_round (False),
  attribute_source ("file" | "class_name"), templates (the first is class_name's sentence)."""
  num_tokens = int(config.get("num_tokens", 4))
  num_heads = int(config.get("num_heads", 4))
  ff_mult = int(config.get("ff_mult", 4))
  alpha = float(config.get("consistency_weight", 10.0))
  flip_prob = float(config.get("flip_prob", 0.5))
  lora_rank = int(config.get("lora_rank", 0))
  switch_loss = float(config.get("lora_switch_loss", 0.5))
  once = bool(config.get("step_once_per_round", False))
  source = config.get("attribute_source", "file")
  template = base.template_list(config)[0]
  width = model.config.vision.hidden_size
  embed_dim = model.config.projection_dim
  for key, value, ok, valid in (
      ("num_tokens", num_tokens, num_tokens >= 1, "must be >= 1"),
      ("num_heads", num_heads, num_heads >= 1 and width % num_heads == 0,
       f"must divide the vision width {width}"),
      ("ff_mult", ff_mult, ff_mult >= 1, "must be >= 1"),
      ("consistency_weight", alpha, alpha >= 0, "must be >= 0"),
      ("flip_prob", flip_prob, 0 <= flip_prob <= 1, "must be in [0, 1]"),
      ("lora_rank", lora_rank, lora_rank >= 0, "must be >= 0 (0 = off)"),
      ("attribute_source", source, source in ATTRIBUTE_SOURCES,
       f"valid: {', '.join(ATTRIBUTE_SOURCES)}")):
    if not ok:
      raise ValueError(f"method.{key}={value!r} is invalid; {valid}")

  def prepare(ctx: base.Context):
    if source == "class_name":
      return attribute_features(ctx, class_name_sentences(ctx.class_names, template))
    return attribute_features(ctx)

  def init(key, aux):
    del aux
    return promptformer.init(key, embed_dim, width, ff_mult, lora_rank)

  def prompts(frozen, params, aux, pixels):
    """[B, P, D] prompt tokens of the images."""
    text = aux["text"].reshape(-1, aux["text"].shape[-1])
    return promptformer.apply(params, patch_tokens(model, frozen, pixels), text,
                              aux["mask"].reshape(-1), num_tokens, num_heads)

  def embeds(frozen, params, aux, pixels):
    return model.encode_image(frozen, pixels, shallow=prompts(frozen, params, aux, pixels)).embeds

  def logits(frozen, params, aux, extra, client, pixels, key):
    del extra, client, key
    return attribute_logits(embeds(frozen, params, aux, pixels), aux["text"], aux["mask"],
                            frozen["logit_scale"])

  def loss(frozen, params, aux, extra, client, pixels, labels, key):
    del extra, client
    image = embeds(frozen, params, aux, pixels)
    ce = optax.softmax_cross_entropy_with_integer_labels(
        attribute_logits(image, aux["text"], aux["mask"], frozen["logit_scale"]), labels)
    if alpha == 0:
      return ce
    reference = model.encode_image(frozen, random_flip(pixels, key, flip_prob)).embeds
    return ce + alpha * consistency(image, reference)

  def init_step_state(params):
    del params
    return {"lora_on": jnp.zeros((), bool)}

  def control_step(state, params, updates, batch_loss, is_last):
    del params
    apply = is_last if once else jnp.ones((), bool)
    if lora_rank == 0:
      return updates, apply, state
    on = state["lora_on"] | (batch_loss < switch_loss)
    updates = dict(updates)
    for name in ("ln_q", "ln_kv", "attn", "ff"):  # the PromptFormer proper
      updates[name] = _mask_tree(updates[name], ~on)
    updates["lora"] = _mask_tree(updates["lora"], on)
    return updates, apply, {"lora_on": on}

  needs_control = once or lora_rank > 0
  return base.PromptMethod(
      name="fedmvp", prepare=prepare, init=init, logits=logits, loss=loss,
      init_step_state=init_step_state if needs_control else (lambda params: {}),
      control_step=control_step if needs_control else None)
