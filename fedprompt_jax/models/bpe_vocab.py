"""Trains a small CLIP-format byte-level BPE vocabulary (`vocab.json` + `merges.txt`).

Real checkpoints ship OpenAI's 49,408-token vocabulary; the project's tiny CLIP
(and the test fixtures) use a vocabulary trained here on their own captions, in
exactly the same format, so transformers' `CLIPTokenizer` reads both alike:
ids 0..255 are the byte symbols, 256..511 the same with the end-of-word mark
`</w>`, then one id per merge in order, then `<|startoftext|>`, `<|endoftext|>`.
Any text still tokenizes (it falls back to bytes); only unseen words cost more tokens.
"""

from __future__ import annotations

import collections
import json
import os
from typing import Iterable

import regex

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
# transformers' CLIPTokenizer pre-tokenizer pattern (lower-cased input).
_WORD = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""")


def bytes_to_unicode() -> dict[int, str]:
  """GPT-2/CLIP's reversible map from bytes to printable unicode characters."""
  bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1)))
  cs = bs[:]
  n = 0
  for b in range(256):
    if b not in bs:
      bs.append(b)
      cs.append(256 + n)
      n += 1
  return dict(zip(bs, (chr(c) for c in cs)))


def _word_symbols(word: str, byte_map: dict[int, str]) -> tuple[str, ...]:
  chars = [byte_map[b] for b in word.encode("utf-8")]
  return tuple(chars[:-1]) + (chars[-1] + "</w>",)


def train_bpe(texts: Iterable[str], num_merges: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
  """Learns up to `num_merges` merges from `texts`; returns (vocab, merges)."""
  byte_map = bytes_to_unicode()
  counts = collections.Counter()
  for text in texts:
    counts.update(_WORD.findall(" ".join(text.lower().split())))
  words = {_word_symbols(w, byte_map): c for w, c in counts.items()}
  merges = []
  for _ in range(num_merges):
    pairs = collections.Counter()
    for symbols, c in words.items():
      for a, b in zip(symbols, symbols[1:]):
        pairs[a, b] += c
    if not pairs:
      break
    best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]  # deterministic tie-break
    merges.append(best)
    merged = {}
    for symbols, c in words.items():
      out, i = [], 0
      while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
          out.append(symbols[i] + symbols[i + 1])
          i += 2
        else:
          out.append(symbols[i])
          i += 1
      merged[tuple(out)] = merged.get(tuple(out), 0) + c
    words = merged
  base = list(byte_map.values())
  tokens = base + [s + "</w>" for s in base] + ["".join(m) for m in merges] + [BOS, EOS]
  return {t: i for i, t in enumerate(tokens)}, merges


def write_tokenizer_files(out_dir: str, vocab: dict[str, int], merges: list[tuple[str, str]],
                          context_length: int) -> None:
  """Writes vocab.json, merges.txt and tokenizer_config.json for CLIPTokenizer."""
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "vocab.json"), "w") as f:
    json.dump(vocab, f, ensure_ascii=False)
  with open(os.path.join(out_dir, "merges.txt"), "w") as f:
    f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
  with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
    json.dump({"tokenizer_class": "CLIPTokenizer", "model_max_length": context_length,
               "bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS,
               "do_lower_case": True}, f, indent=2)
