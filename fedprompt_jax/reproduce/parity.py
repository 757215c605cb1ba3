"""The `parity` table: our CLIP against transformers' PyTorch CLIPModel, live, on the shipped
fixtures (tests/fixtures/clip_tiny_a, clip_tiny_b: the weights and inputs of
tests/test_clip_parity.py; reference outputs by scripts/make_parity_fixtures.py's function)."""

from __future__ import annotations

import importlib.util
import os
import sys

from fedprompt_jax.reproduce import results_io
from fedprompt_jax.reproduce.tables import REPO, Options, Produced, ProducerError, settings

FIXTURES = os.path.join(REPO, "tests", "fixtures")
DEFAULTS = {"fixtures": "clip_tiny_a,clip_tiny_b"}
COLUMNS = (("image_embeds", "image embeds"), ("text_embeds", "text embeds"),
           ("image_features", "image features"), ("text_features", "text features"),
           ("logits_per_image", "logits_per_image"))


def differs_in(ckpt_dir: str) -> str:
  """What sets a fixture's architecture apart, from its config.json."""
  from fedprompt_jax.models import hf_loader  # pylint: disable=import-outside-toplevel
  c = hf_loader.read_config(ckpt_dir)
  v, t = c.vision, c.text
  heads = (f"{v.num_attention_heads} heads" if v.num_attention_heads == t.num_attention_heads
           else f"{v.num_attention_heads}/{t.num_attention_heads} heads")
  eos = "legacy EOS (argmax)" if t.eos_token_id == 2 else "EOS by id"
  return (f"patch {v.patch_size}, {v.num_hidden_layers} layers, {heads}, {v.hidden_act}, {eos}")


def produce(options: Options) -> Produced:
  if any(importlib.util.find_spec(m) is None for m in ("torch", "transformers")):
    raise ProducerError('table parity needs torch and transformers: pip install -e ".[torch]"')
  names = [n for n in settings("parity", options.overrides, DEFAULTS)["fixtures"].split(",") if n]
  missing = [n for n in names if not os.path.isdir(os.path.join(FIXTURES, n))]
  if missing or not names:
    raise ProducerError(f"parity fixtures {missing or names} not found in {FIXTURES}; valid: "
                        f"{', '.join(sorted(os.listdir(FIXTURES)))}")
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  from fedprompt_jax.models import parity  # pylint: disable=import-outside-toplevel
  sys.path.insert(0, os.path.join(REPO, "scripts"))
  from make_parity_fixtures import reference_outputs  # pylint: disable=import-outside-toplevel
  rows, meta = [], {"fixtures": {}, "torch": torch.__version__,
                    "transformers": transformers.__version__}
  for name in names:
    ckpt = os.path.join(FIXTURES, name)
    with np.load(os.path.join(ckpt, "reference.npz")) as data:
      inputs = {k: data[k] for k in ("pixels", "input_ids", "attention_mask")}
    torch_model = transformers.CLIPModel.from_pretrained(ckpt).eval()
    live = reference_outputs(torch_model, inputs["pixels"], inputs["input_ids"],
                             inputs["attention_mask"])
    with jax.default_matmul_precision("highest"):  # float32 matmuls, as the tests run them
      diffs = parity.max_diffs(parity.our_outputs(ckpt, **inputs), live)
    rows.append((f"`{name}`", differs_in(ckpt)) + tuple(diffs[k] for k, _ in COLUMNS))
    meta["fixtures"][name] = diffs
  table = results_io.Table(
      name="parity", title="CLIP parity with transformers",
      columns=("fixture", "differs in") + tuple(c for _, c in COLUMNS),
      rows=tuple(rows), formats=("g", "g") + ("sci",) * len(COLUMNS),
      notes=("Max abs difference between our flax CLIP and transformers' PyTorch CLIPModel "
             "(float32, run live) on the same weights and inputs (tests/test_clip_parity.py; "
             "fixtures from scripts/make_parity_fixtures.py); features are unnormalised, "
             "embeds unit-norm."))
  return Produced(table, None, meta)
