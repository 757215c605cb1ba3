"""Zero-shot top-1 accuracy of a CLIP on a data source, overall and per domain."""

from __future__ import annotations

from typing import Sequence

from fedprompt_jax.data.dataset import DataSource
from fedprompt_jax.models import zeroshot
from fedprompt_jax.models.clip import Clip
from fedprompt_jax.models.tokenizer import Tokenizer


def accuracy_by_domain(model: Clip, params, tokenizer: Tokenizer, source: DataSource,
                       templates: Sequence[str], split: str = "test",
                       batch_size: int = 512) -> dict[str, float]:
  """{"all": acc, "<domain>": acc, ...} on `source.<split>` with a class-name x template head."""
  data = getattr(source, split)
  head = zeroshot.class_text_features(model, params, tokenizer, source.class_names, templates)
  correct = zeroshot.predict(model, params, head, data.images, batch_size) == data.labels
  results = {"all": float(correct.mean())}
  if source.domain_names is not None:
    for d, name in enumerate(source.domain_names):
      results[name] = float(correct[data.domains == d].mean())
  return results
