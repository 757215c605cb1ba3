"""The one method interface: a frozen dataclass of pure functions, and the registry.

A method never holds arrays. Everything it computes from the frozen CLIP once per
class set (zero-shot head, class-prompt token ids, label embeddings) is its
`aux` tree, built on the host by `prepare` and passed to jitted code as an
argument, like the frozen tree itself.

Trees a method deals with (legend: B batch, C classes, E embedding dim):
  frozen  CLIP weights (never trained, aggregated or checkpointed).
  params  the trainable prompt tree; `is_personal(path)` marks leaves that stay on
          the client (never aggregated); all others are shared and FedAvg'd.
  aux     per-class-set constants from `prepare`.
  extra   server-side state that is not trained but updated each round from
          client statistics (e.g. PEP-FedPT's class prototypes); {} if unused.
  client  per-client constants kept on the client (e.g. a label prior); {} if unused.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import optax
from flax import traverse_util

from fedprompt_jax.data.transforms import Preprocess
from fedprompt_jax.models import zeroshot
from fedprompt_jax.models.clip import logits_per_image

Tree = Any
Path = tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Context:
  """What `prepare` may read: the frozen CLIP, its tokenizer, the class set."""
  model: Any          # fedprompt_jax.models.clip.Clip
  frozen: Tree
  tokenizer: Any      # fedprompt_jax.models.tokenizer.Tokenizer
  class_names: tuple[str, ...]
  attributes: dict[str, tuple[str, ...]] | None = None
  _heads: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

  def zeroshot_head(self, templates: Sequence[str]) -> jax.Array:
    """[C, E] unit zero-shot text features of the class set; computed once per templates."""
    key = tuple(templates)
    if key not in self._heads:
      self._heads[key] = zeroshot.class_text_features(
          self.model, self.frozen, self.tokenizer, self.class_names, key)
    return self._heads[key]


def _never(path: Path) -> bool:
  del path
  return False


def _no_stats(frozen, params, aux, extra, client, pixels, labels, mask):
  del frozen, params, aux, extra, client, pixels, labels, mask
  return {}


def _no_server_update(extra, stats):
  del stats
  return extra


@dataclasses.dataclass(frozen=True)
class PromptMethod:
  """A federated prompt-tuning method as pure functions.

  Attributes:
    name: registry name.
    prepare: (Context) -> aux, on the host, once per class set.
    init: (key, aux) -> params, the global initial prompt tree.
    logits: (frozen, params, aux, extra, client, pixels [B, H, W, 3] in [0, 1], key) -> [B, C].
    loss: optional (frozen, params, aux, extra, client, pixels, labels [B], key) -> [B]
      per-example loss; default cross-entropy of `logits`.
    is_personal: path of a params leaf -> True if it stays on the client.
    trains: False for methods with nothing to train (zero-shot).
    init_extra: (aux) -> extra, the server-side state before round 0.
    client_stats: statistics one client sends up, summed over its local data and
      then over clients: (frozen, params, aux, extra, client, pixels, labels, mask) -> tree.
    server_update: (extra, summed stats) -> new extra.
    stats_from: which params `client_stats` sees in the local update: "received" (the
      shared leaves the client received this round, with its personal leaves as they were
      before the local steps) or "trained" (the params after the local steps).
    init_client: (label_histogram [C] float) -> client tree of constants.
    init_step_state: (params) -> step state, a small per-client tree carried across
      the local steps of one round (fresh each round); {} if unused.
    frozen_image: optional (frozen, pixels [B, H, W, 3] in [0, 1]) -> [B, F] float32
      features, for a method whose image path has nothing trainable: what the frozen
      CLIP computes from an image without any prompt (PromptFL: the image embedding).
      With it the method gives `logits_from_features`, and `logits` must be
      logits_from_features(frozen, params, aux, extra, client, frozen_image(frozen,
      pixels), key); the engine may then encode a split once and train and evaluate
      cleanly from the features (feature_cache.py). (A text path with nothing
      trainable needs no declaration: `prepare` computes it once, e.g. a zero-shot head.)
    logits_from_features: (frozen, params, aux, extra, client, features [B, F], key) ->
      [B, C]; given with `frozen_image`.
    control_step: optional (step_state, params, updates, batch_loss, is_last) ->
      (updates, apply, step_state), called inside the jitted local update after the
      optimizer has proposed `updates` for a batch whose mean training loss is
      `batch_loss` (scalar); `is_last` is True at the client's last non-empty step.
      It may mask or rescale the updates, and `apply` (bool scalar) False keeps
      the parameters and the optimizer state as they were (e.g. FedMVP's LoRA
      switch and its once-per-round stepping). None = every step applies.
  """
  name: str
  prepare: Callable[[Context], Tree]
  init: Callable[[jax.Array, Tree], Tree]
  logits: Callable[..., jax.Array]
  loss: Callable[..., jax.Array] | None = None
  is_personal: Callable[[Path], bool] = _never
  trains: bool = True
  init_extra: Callable[[Tree], Tree] = lambda aux: {}
  client_stats: Callable[..., Tree] = _no_stats
  server_update: Callable[[Tree, Tree], Tree] = _no_server_update
  stats_from: str = "received"
  init_client: Callable[[jax.Array], Tree] = lambda histogram: {}
  init_step_state: Callable[[Tree], Tree] = lambda params: {}
  control_step: Callable[..., tuple[Tree, jax.Array, Tree]] | None = None
  frozen_image: Callable[[Tree, jax.Array], jax.Array] | None = None
  logits_from_features: Callable[..., jax.Array] | None = None

  def __post_init__(self):
    if (self.frozen_image is None) != (self.logits_from_features is None):
      raise ValueError(f"method {self.name!r} must give both frozen_image and "
                       "logits_from_features, or neither")

  def example_loss(self, frozen, params, aux, extra, client, pixels, labels, key) -> jax.Array:
    """[B] per-example loss (cross-entropy of the logits unless the method defines `loss`)."""
    if self.loss is not None:
      return self.loss(frozen, params, aux, extra, client, pixels, labels, key)
    logits = self.logits(frozen, params, aux, extra, client, pixels, key)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def as_model_input(x: jax.Array) -> jax.Array:
  """What a method's `logits` receive from images at the model's side: uint8 pixels scaled to
  [0, 1] float32; anything else (float32 features from the frozen-feature cache) as it is.
  (The engine uses data/transforms.Preprocess, which also resizes stored images.)"""
  return Preprocess()(x)


def split_params(method: PromptMethod, params: Tree) -> tuple[Tree, Tree]:
  """params -> (shared, personal), two nested dicts with disjoint leaves."""
  flat = traverse_util.flatten_dict(params) if params else {}
  shared = {k: v for k, v in flat.items() if not method.is_personal(k)}
  personal = {k: v for k, v in flat.items() if method.is_personal(k)}
  return traverse_util.unflatten_dict(shared), traverse_util.unflatten_dict(personal)


def merge_params(shared: Tree, personal: Tree) -> Tree:
  flat = dict(traverse_util.flatten_dict(shared)) if shared else {}
  if personal:
    flat.update(traverse_util.flatten_dict(personal))
  return traverse_util.unflatten_dict(flat)


def local_only(method: PromptMethod) -> PromptMethod:
  """The same method trained by each client alone: every leaf personal, nothing aggregated."""
  return dataclasses.replace(method, name=f"{method.name}+local",
                             is_personal=lambda path: True)


STATS_FROM = ("received", "trained")


# name -> factory(model config, method config) -> PromptMethod; filled by methods/__init__.py.
REGISTRY: dict[str, Callable[..., PromptMethod]] = {}
# name -> what the method's `client_stats` send to the server besides the shared deltas (the
# data a differentially private run must also cover); methods that send nothing else are absent.
RELEASED_STATS: dict[str, str] = {}


def register(name: str, releases: str = ""):
  """Registers a method factory; `releases` describes what its `client_stats` send up, if any."""
  def wrap(factory):
    REGISTRY[name] = factory
    if releases:
      RELEASED_STATS[name] = releases
    return factory
  return wrap


def make_method(name: str, model, config) -> PromptMethod:
  """Builds the method registered as `name` for `model` (a Clip) with `config` (method section)."""
  if name not in REGISTRY:
    raise ValueError(f"method.name={name!r} is unknown; valid: {', '.join(sorted(REGISTRY))}")
  return REGISTRY[name](model, config)


def cosine_logits(image_embeds: jax.Array, class_embeds: jax.Array,
                  logit_scale: jax.Array) -> jax.Array:
  """exp(logit_scale) * <normalised image [B, E], normalised class [C, E]> -> [B, C]."""
  return logits_per_image(image_embeds, class_embeds, logit_scale)


def template_list(config) -> Sequence[str]:
  return tuple(config.get("templates", ("a photo of a {}.",)))
