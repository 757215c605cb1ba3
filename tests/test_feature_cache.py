"""The frozen-feature cache (feature_cache.py): cached PromptFL runs equal uncached ones, the
feature path equals the pixel path, and the cache is off, with its reason logged, under AT."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedprompt_jax import config as config_lib
from fedprompt_jax import feature_cache, train
from fedprompt_jax.attacks import make_attack
from fedprompt_jax.data import shapes
from fedprompt_jax.methods import base, make_method
from fedprompt_jax.methods.adversarial import adversarial
from fedprompt_jax.methods.label_space import local_label_space
from fedprompt_jax.models.hf_loader import load_clip
from fedprompt_jax.models.tokenizer import load_tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The cached run encodes each split once in batches of eval.batch_size; the uncached one runs
# the same image tower inside the round at the round's batch. XLA may pick other kernels for
# other shapes, so the two agree to float rounding (measured: 1.2e-7 relative on the training
# loss), not bit for bit. Accuracies are compared exactly: no prediction flips at this size.
RTOL = 1e-5


def promptfl_config(**values):
  """configs/promptfl.py (embedded tiny CLIP) shrunk to seconds: one of its tinted domains."""
  sys.path.insert(0, REPO)
  from configs import promptfl  # pylint: disable=import-outside-toplevel
  c = promptfl.get_config()
  c.eval.check_zero_shot, c.eval.every = False, 1
  c.data.domains = c.data.domains[:1]
  c.data.train_per_class_domain, c.data.test_per_class_domain = 4, 2
  c.fed.num_clients, c.fed.clients_per_round = 8, 3
  c.fed.rounds, c.fed.local_steps, c.fed.batch_size = 2, 2, 8
  c.adv.eval, c.adv.eval_examples, c.adv.sanity_attack = ("pgd:linf:eps=1/255:steps=2",), 16, ""
  for key, value in values.items():
    section, name = key.split("__")
    c[section][name] = value
  return c


def assert_close_records(uncached, cached):
  assert [r["round"] for r in uncached] == [r["round"] for r in cached]
  for a, b in zip(uncached, cached):
    assert set(a) == set(b)
    for key in a:
      if key == "seconds_per_round":
        continue
      if "acc" in key:
        assert a[key] == b[key], (a["round"], key, a[key], b[key])
      else:
        np.testing.assert_allclose(b[key], a[key], rtol=RTOL, err_msg=f"{a['round']} {key}")


@pytest.mark.slow
@pytest.mark.parametrize("values", [
    {},
    # DP clips and noises the deltas the round computes; the cache only changes where the image
    # features come from, so the noise (from the round key) and the clipping are the same.
    dict(dp__enabled=True, fed__weighting="uniform", dp__clip=0.05, dp__noise_multiplier=1.0,
         fed__rounds=1, eval__personalized=False, adv__eval=()),
], ids=["plain", "dp"])
def test_cached_run_equals_uncached_run(tmp_path, capsys, values):
  uncached = train.train_and_evaluate(promptfl_config(data__cache_frozen_features=False, **values),
                                      str(tmp_path / "uncached"))
  log = capsys.readouterr().out
  assert "frozen-feature cache off: data.cache_frozen_features=False" in log
  assert "frozen-feature cache: train split" not in log
  cached = train.train_and_evaluate(promptfl_config(**values), str(tmp_path / "cached"))
  log = capsys.readouterr().out
  assert "frozen-feature cache on: promptfl" in log
  assert log.count("frozen-feature cache: train split, 192 images -> 64 features") == 1  # once
  assert log.count("frozen-feature cache: test split") == 1
  assert_close_records(uncached, cached)


@pytest.mark.parametrize("values,reason", [
    (dict(adv__train="pgd"), "frozen-feature cache off: adv.train='pgd' trains on images the "
                             "attack changes at every step"),
    (dict(adv__train="trades"), "frozen-feature cache off: adv.train='trades'"),
    (dict(data__cache_frozen_features=False), "frozen-feature cache off: "
                                              "data.cache_frozen_features=False"),
    (dict(data__augment="crop_flip"), "frozen-feature cache off: data.augment='crop_flip' "
                                      "trains on new random crops and flips at every step"),
])
def test_cache_is_off_with_the_reason_logged(tmp_path, capsys, values, reason):
  run = train.Run(promptfl_config(**values), str(tmp_path))
  lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("frozen-feature")]
  assert len(lines) == 1 and lines[0].startswith(reason), lines
  assert run.cache is None and run.train_method is run.method
  assert run.inputs_of(run.source.train, "train") is None


def test_methods_without_a_frozen_image_path_log_nothing(tmp_path, capsys):
  c = promptfl_config(method__name="fedvpt")
  assert feature_cache.decide(c, make_method("fedvpt", load_clip("embedded")[0], c.method)) == (
      False, None)
  run = train.Run(c, str(tmp_path))
  assert "frozen-feature" not in capsys.readouterr().out
  assert run.cache is None and run.train_method is run.method


@pytest.fixture(scope="module")
def world():
  model, frozen, ckpt = load_clip("embedded")
  tokenizer = load_tokenizer(ckpt, model.config.text.max_position_embeddings)
  src = shapes.make_shapes(2, 0, 32, seed=1, domains=("falsecolour",),
                           classes=shapes.CLASS_NAMES[:6])
  ctx = base.Context(model, frozen, tokenizer, src.class_names)
  return model, frozen, ctx, src


def test_feature_path_equals_pixel_path_with_local_label_spaces(world):
  model, frozen, ctx, src = world
  method = local_label_space(make_method("promptfl", model, {"num_ctx": 4}))
  aux = method.prepare(ctx)
  params = method.init(jax.random.key(0), aux)
  client = method.init_client(jnp.asarray([1, 0, 1, 1, 0, 1], jnp.float32))
  pixels = src.train.images[:8]
  x = base.as_model_input(jnp.asarray(pixels))
  on_pixels = jax.jit(method.logits)(frozen, params, aux, {}, client, x, None)
  features = feature_cache.encode_images(feature_cache.make_encoder(method), frozen, pixels, 4)
  assert features.shape == (8, model.config.projection_dim) and features.dtype == np.float32
  on_features = jax.jit(feature_cache.on_features(method).logits)(
      frozen, params, aux, {}, client, jnp.asarray(features), None)
  np.testing.assert_allclose(on_features, on_pixels, rtol=1e-5, atol=1e-4)
  assert (np.asarray(on_features)[:, [1, 4]] < -1e3).all()  # the label mask is kept


def test_only_methods_with_a_frozen_image_path_get_features(world):
  model = world[0]
  promptfl = make_method("promptfl", model, {"num_ctx": 4})
  at = adversarial(promptfl, make_attack("pgd:linf:eps=1/255:steps=2"), "pgd")
  assert at.frozen_image is None and at.logits_from_features is None
  for method in (make_method("fedvpt", model, {}), make_method("pep", model, {}), at):
    with pytest.raises(ValueError, match="declares no frozen image path"):
      feature_cache.on_features(method)
  with pytest.raises(ValueError, match="both frozen_image and logits_from_features"):
    base.PromptMethod(name="x", prepare=None, init=None, logits=None,
                      frozen_image=lambda frozen, pixels: pixels)


def test_bad_value_gives_one_line(tmp_path):
  c = promptfl_config()
  with c.unlocked():
    del c.data["cache_frozen_features"]
    c.data.cache_frozen_features = "yes"
  with pytest.raises(config_lib.ConfigError, match=r"data.cache_frozen_features='yes' is invalid; "
                                                   "valid: True, False"):
    train.train_and_evaluate(c, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()
