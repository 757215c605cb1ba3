"""CLIP tokenization through transformers, padded to the model's context length."""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Sequence

import numpy as np


# transformers logs this at import when torch is absent; this library never uses torch.
_NO_TORCH_NOTICE = "PyTorch was not found. Models won't be available"


class _DropNoTorchNotice(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(_NO_TORCH_NOTICE)


def _silence_no_torch_notice() -> None:
  """Drops exactly transformers' "PyTorch was not found ..." notice (logger "transformers")."""
  logger = logging.getLogger("transformers")
  if not any(isinstance(f, _DropNoTorchNotice) for f in logger.filters):
    logger.addFilter(_DropNoTorchNotice())


class TokenizerError(ValueError):
  """A checkpoint directory without usable tokenizer files."""


@dataclasses.dataclass(frozen=True)
class Tokenizer:
  """Texts -> fixed-length token ids, as transformers' CLIPTokenizer makes them.

  Attributes:
    hf: the transformers tokenizer.
    context_length: T, the text tower's max_position_embeddings.
  """
  hf: Any
  context_length: int

  def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Returns (input_ids [N, T] int32, attention_mask [N, T] int32).

    Texts longer than T are truncated with EOS kept last (as transformers does).
    """
    enc = self.hf(list(texts), padding="max_length", truncation=True,
                  max_length=self.context_length, return_tensors="np")
    return enc["input_ids"].astype(np.int32), enc["attention_mask"].astype(np.int32)

  @property
  def eos_id(self) -> int:
    return int(self.hf.eos_token_id)

  @property
  def bos_id(self) -> int:
    return int(self.hf.bos_token_id)

  def token_id(self, token: str) -> int:
    return int(self.hf.convert_tokens_to_ids(token))

  def num_tokens(self, text: str) -> int:
    """Tokens of `text` without BOS/EOS."""
    return len(self.hf(text, add_special_tokens=False)["input_ids"])


def load_tokenizer(ckpt_dir: str, context_length: int) -> Tokenizer:
  """The CLIPTokenizer of a transformers-format checkpoint directory."""
  has_bpe = all(os.path.isfile(os.path.join(ckpt_dir, f)) for f in ("vocab.json", "merges.txt"))
  has_json = os.path.isfile(os.path.join(ckpt_dir, "tokenizer.json"))
  if not (has_bpe or has_json):
    raise TokenizerError(
        f"no tokenizer in {ckpt_dir!r}: expected vocab.json + merges.txt or tokenizer.json")
  _silence_no_torch_notice()
  from transformers import CLIPTokenizer  # pylint: disable=g-import-not-at-top
  hf = CLIPTokenizer.from_pretrained(ckpt_dir)
  return Tokenizer(hf, context_length)
