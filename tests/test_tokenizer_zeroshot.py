"""Tokenizer from a checkpoint directory; zero-shot class features."""

import json

import numpy as np
import pytest

from clip_fixtures import fixture_dir
from fedprompt_jax.models import bpe_vocab, hf_loader, zeroshot
from fedprompt_jax.models.clip import normalize
from fedprompt_jax.models.tokenizer import TokenizerError, load_tokenizer


@pytest.fixture(scope="module")
def loaded():
  model, params, ckpt = hf_loader.load_clip(fixture_dir("clip_tiny_a"))
  return model, params, load_tokenizer(ckpt, model.config.text.max_position_embeddings)


def test_tokens_are_padded_to_the_context_length_with_bos_and_eos(loaded):
  model, _, tok = loaded
  ids, mask = tok(["a photo of a red circle.", "a " * 40])
  t = model.config.text.max_position_embeddings
  assert ids.shape == mask.shape == (2, t) and ids.dtype == np.int32
  assert ids[0, 0] == tok.bos_id == model.config.text.bos_token_id
  n = int(mask[0].sum())
  assert ids[0, n - 1] == tok.eos_id and (ids[0, n:] == tok.eos_id).all()  # pad = EOS
  assert mask[1].all() and ids[1, -1] == tok.eos_id  # truncated, EOS kept last
  words = tok.hf.convert_ids_to_tokens(ids[0, 1:n - 1])
  assert "".join(words).replace("</w>", " ").strip() == "a photo of a red circle ."


def test_vocab_format_matches_clip(tmp_path):
  vocab, merges = bpe_vocab.train_bpe(["the quick brown fox", "the lazy dog"] * 3, 30)
  assert len(vocab) == 512 + len(merges) + 2
  assert vocab[bpe_vocab.EOS] == len(vocab) - 1  # EOS is the largest id (legacy argmax pooling)
  bpe_vocab.write_tokenizer_files(str(tmp_path), vocab, merges, 12)
  assert json.loads((tmp_path / "vocab.json").read_text()) == vocab
  tok = load_tokenizer(str(tmp_path), 12)
  assert tok.num_tokens("the") == 1  # learned merge "the</w>"
  assert tok.num_tokens("zebra") == 5  # unseen word: byte fallback, no UNK


def test_missing_tokenizer_files(tmp_path):
  with pytest.raises(TokenizerError, match="no tokenizer in"):
    load_tokenizer(str(tmp_path), 16)


def test_class_features_are_the_mean_of_normalised_template_features(loaded):
  model, params, tok = loaded
  names, templates = ["red circle", "blue star", "seven"], ["a photo of a {}.", "a sketch of a {}."]
  feats = zeroshot.class_text_features(model, params, tok, names, templates, batch_size=4)
  assert feats.shape == (3, model.config.projection_dim)
  np.testing.assert_allclose(np.linalg.norm(feats, axis=-1), 1.0, atol=1e-6)
  ids, mask = tok([t.format(n) for n in names for t in templates])
  each = normalize(model.encode_text(params, ids, mask).embeds).reshape(3, 2, -1)
  manual = each.mean(1) / np.linalg.norm(each.mean(1), axis=-1, keepdims=True)
  np.testing.assert_allclose(feats, manual, atol=1e-6)


def test_template_without_placeholder():
  with pytest.raises(ValueError, match="has no '{}' placeholder"):
    zeroshot.render_prompts(["cat"], ["a photo"])
