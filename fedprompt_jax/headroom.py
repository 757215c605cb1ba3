"""How much room a world leaves for prompts: centralised few-shot deep VPT against zero-shot.

Deep visual prompts (`[L, 1, P, Dv]`, one set for all layers, VPT-deep) are trained
with cross-entropy over the frozen zero-shot head on s shots per class, and the test
accuracy of zero-shot and of the prompted model are compared. Two protocols:

- per target (`measure_target`): train and test on one shapes domain (or digits);
- union (`measure_union`): train ONE prompt on the union of s shots per class from
  each of several domains, then test it on each of them and on held-out domains it
  never saw. Gains on every trained domain mean one prompt gains on all of them at
  once (no contradiction between the domains); gains on a held-out domain are
  transfer.

The frozen CLIP is an argument of the jitted step, never a closure constant.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedprompt_jax.assets import world
from fedprompt_jax.data import digits, shapes
from fedprompt_jax.data.source import Split, subset
from fedprompt_jax.models import zeroshot
from fedprompt_jax.models.clip import normalize

# Test and train images per (class, domain) rendered for a measurement; the shots are drawn
# from the train images. Seeds are offset so that they share no stream with a default run.
TRAIN_PER_CLASS_DOMAIN = 40
TEST_PER_CLASS_DOMAIN = 20
SEED_OFFSET = 2000


@dataclasses.dataclass(frozen=True)
class Settings:
  """The few-shot protocol: shots per class (per domain), prompt tokens per layer, Adam steps."""
  shots: int = 16
  tokens: int = 8
  steps: int = 300
  batch: int = 64
  lr: float = 3e-2


@dataclasses.dataclass(frozen=True)
class Row:
  """One measured domain: accuracies in [0, 1]; `trained_on` names the domains of the prompt."""
  target: str
  seed: int
  zero_shot: float
  prompted: float
  trained_on: tuple[str, ...]

  @property
  def gain_points(self) -> float:
    return 100 * (self.prompted - self.zero_shot)


def few_shot(split: Split, shots: int, rng: np.random.Generator) -> Split:
  """`shots` examples of every class present in `split`, drawn without replacement."""
  idx = [rng.choice(np.flatnonzero(split.labels == c), shots, replace=False)
         for c in np.unique(split.labels)]
  return subset(split, np.concatenate(idx))


def concat(splits: Sequence[Split]) -> Split:
  return Split(images=np.concatenate([s.images for s in splits]),
               labels=np.concatenate([s.labels for s in splits]),
               domains=np.concatenate([s.domains for s in splits]))


def train_deep_vpt(model, params, head, train: Split, *, num_tokens: int, steps: int,
                   batch: int, lr: float, seed: int) -> jax.Array:
  """Deep prompts [L, 1, num_tokens, Dv] trained by Adam (cosine) on uint8 `train` images."""
  cfg = model.config.vision
  key = jax.random.key(seed)
  prompts = 0.02 * jax.random.normal(key, (cfg.num_hidden_layers, 1, num_tokens, cfg.hidden_size))
  tx = optax.adam(optax.cosine_decay_schedule(lr, steps))
  opt_state = tx.init(prompts)

  @jax.jit
  def step(frozen, prompts, opt_state, x, y):
    def loss_fn(p):
      feats = normalize(model.encode_image(frozen, x, deep=p).embeds)
      logits = jnp.exp(frozen["logit_scale"]) * feats @ head.T
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    loss, g = jax.value_and_grad(loss_fn)(prompts)
    updates, opt_state = tx.update(g, opt_state)
    return optax.apply_updates(prompts, updates), opt_state, loss

  rng = np.random.default_rng(seed)
  for _ in range(steps):
    idx = rng.choice(len(train), min(batch, len(train)), replace=False)
    x = train.images[idx].astype(np.float32) / 255.0
    prompts, opt_state, _ = step(params, prompts, opt_state, x, train.labels[idx])
  return prompts


@functools.partial(jax.jit, static_argnums=0)
def _prompted_top1(model, frozen, head, prompts, images):
  """[N] top-1 classes of uint8 images [N, H, W, 3] under deep prompts and a head [C, E]."""
  feats = normalize(model.encode_image(frozen, images.astype(jnp.float32) / 255.0,
                                       deep=prompts).embeds)
  return jnp.argmax(feats @ head.T, -1)


def prompted_accuracy(model, params, head, prompts, test: Split, batch: int = 512) -> float:
  """Top-1 accuracy of the prompted model on uint8 `test` images (compiled once per shape)."""
  preds = np.concatenate([np.asarray(_prompted_top1(model, params, head, prompts,
                                                    test.images[i:i + batch]))
                          for i in range(0, len(test), batch)])
  return float((preds == test.labels).mean())


def _zero_shot(model, params, head, test: Split) -> float:
  return float((zeroshot.predict(model, params, head, test.images) == test.labels).mean())


def _check_domains(names: Sequence[str]) -> None:
  unknown = [n for n in names if n not in shapes.DOMAINS]
  if unknown:
    raise ValueError(f"unknown shapes domains {unknown}; valid: {', '.join(shapes.DOMAINS)}")


def measure_target(model, params, tok, target: str, seed: int,
                   settings: Settings = Settings()) -> Row:
  """Trains on `target` (a shapes domain or "digits") alone and tests on it."""
  if target == "digits":
    src = digits.load_digits(world.IMAGE_SIZE, seed=seed)
    train, test = src.train, src.test
  else:
    _check_domains([target])
    src = shapes.make_shapes(TRAIN_PER_CLASS_DOMAIN, TEST_PER_CLASS_DOMAIN, world.IMAGE_SIZE,
                             seed=seed + SEED_OFFSET, domains=(target,))
    train, test = src.train, src.test
  head = zeroshot.class_text_features(model, params, tok, src.class_names, world.ZEROSHOT_TEMPLATES)
  shots = few_shot(train, settings.shots, np.random.default_rng(seed))
  prompts = train_deep_vpt(model, params, head, shots, num_tokens=settings.tokens,
                           steps=settings.steps, batch=settings.batch, lr=settings.lr, seed=seed)
  return Row(target, seed, _zero_shot(model, params, head, test),
             prompted_accuracy(model, params, head, prompts, test), (target,))


def measure_union(model, params, tok, train_domains: Sequence[str], heldout: Sequence[str],
                  seed: int, settings: Settings = Settings()) -> list[Row]:
  """One prompt trained on the union of `settings.shots` per class from each train domain.

  Returns one Row per train domain, then one per held-out domain (tested, never trained on).
  """
  train_domains, heldout = tuple(train_domains), tuple(heldout)
  _check_domains(train_domains + heldout)
  if set(train_domains) & set(heldout) or not train_domains:
    raise ValueError(f"train domains {train_domains} must be non-empty and disjoint from the "
                     f"held-out ones {heldout}")
  domains = train_domains + heldout
  src = shapes.make_shapes(TRAIN_PER_CLASS_DOMAIN, TEST_PER_CLASS_DOMAIN, world.IMAGE_SIZE,
                           seed=seed + SEED_OFFSET, domains=domains)
  head = zeroshot.class_text_features(model, params, tok, src.class_names, world.ZEROSHOT_TEMPLATES)
  rng = np.random.default_rng(seed)
  shots = concat([few_shot(subset(src.train, src.train.domains == d), settings.shots, rng)
                  for d in range(len(train_domains))])
  prompts = train_deep_vpt(model, params, head, shots, num_tokens=settings.tokens,
                           steps=settings.steps, batch=settings.batch, lr=settings.lr, seed=seed)
  rows = []
  for d, name in enumerate(domains):
    test = subset(src.test, src.test.domains == d)
    rows.append(Row(name, seed, _zero_shot(model, params, head, test),
                    prompted_accuracy(model, params, head, prompts, test), train_domains))
  return rows
