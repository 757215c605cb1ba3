"""Images stored at their own size and resized (and augmented) on device inside the jitted
round, the evaluation and the feature cache (data.storage_size, data.augment).

The embedded tiny CLIP reads 32 x 32 images; these tests store them at 40 or 48.
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedprompt_jax import train
from fedprompt_jax.data import shapes
from fedprompt_jax.data.federated import round_batches
from fedprompt_jax.data.transforms import Preprocess
from fedprompt_jax.fed import mesh as mesh_lib
from fedprompt_jax.fed import server
from fedprompt_jax.fed.client import ClientBatches, make_local_update
from fedprompt_jax.fed.round import RoundInputs, init_server_state, make_round_fn
from fedprompt_jax.methods import base, make_method
from fedprompt_jax.models.hf_loader import load_clip
from fedprompt_jax.models.tokenizer import load_tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_SIDE = 32


def corner_method():
  """params b (scalar); loss (b - red of the top-left pixel)^2 / 2: any crop or flip of a
  non-uniform image changes it. It checks that it receives the model's side."""
  def loss(frozen, params, aux, extra, client, pixels, labels, key):
    assert pixels.shape[1:] == (MODEL_SIDE, MODEL_SIDE, 3), pixels.shape
    return 0.5 * (params["b"] - pixels[:, 0, 0, 0]) ** 2
  return base.PromptMethod(name="corner", prepare=lambda ctx: {}, init=lambda k, a: {"b": 0.0},
                           logits=None, loss=loss)


@pytest.fixture(scope="module")
def stored():
  """A shapes train split at 40 x 40 (48 classes, one photo each)."""
  return shapes.make_shapes(image_size=40, num_train_per_class_domain=1,
                            num_test_per_class_domain=0, seed=2, domains=("photo",)).train


def corner_round(split, preprocess, mesh, chunk=None, steps=2):
  """Client losses of one round of two clients (ids 0 and 1) with the very same batches."""
  method, tx = corner_method(), optax.sgd(0.5)
  padded = mesh_lib.padded_size(2, mesh, chunk or 1)
  pixels = np.zeros((padded, steps, 4) + split.images.shape[1:], np.uint8)
  pixels[:2] = split.images[:steps * 4].reshape((steps, 4) + split.images.shape[1:])
  mask = np.zeros((padded, steps, 4), bool)
  mask[:2] = True
  weights = mask.sum((1, 2)).astype(np.float32)
  fn = make_round_fn(method, tx, server.make_server_optimizer("fedavg"), mesh, chunk=chunk,
                     donate=False, preprocess=preprocess)
  inputs = RoundInputs(ClientBatches(pixels, np.zeros((padded, steps, 4), np.int32), mask),
                       weights, np.arange(padded, dtype=np.int32), {}, {})
  state = init_server_state(method, tx, {"b": jnp.zeros(())}, {})
  _, out = fn({}, state, {}, jax.random.key(7), inputs)
  return np.asarray(out.client_loss[:2])


def test_round_augments_per_client_and_reproducibly(stored):
  one = mesh_lib.make_mesh(jax.devices()[:1])
  plain = corner_round(stored, Preprocess(MODEL_SIDE), one)
  assert plain[0] == plain[1]  # same examples, resized alike
  augmented = Preprocess(MODEL_SIDE, "crop_flip")
  a = corner_round(stored, augmented, one)
  np.testing.assert_array_equal(a, corner_round(stored, augmented, one))  # same key, same crops
  assert abs(a[0] - a[1]) > 1e-4 * abs(a[0])  # the client id keys the crops
  # Keys depend on the round key, client id and step only: not on chunking or sharding.
  for mesh, chunk in ((one, 1), (mesh_lib.make_mesh(jax.devices()[:2]), None)):
    np.testing.assert_allclose(corner_round(stored, augmented, mesh, chunk), a, rtol=1e-6)


def test_each_local_step_draws_new_crops(stored):
  """With lr 0 every step sees the same params, and a masked step adds no loss: step 1's loss
  differs from step 0's exactly when its crops do, and step 0's crops do not depend on the
  number of steps (threefry keys are partitionable: split(k, S)[i] is the same for any S)."""
  update = jax.jit(make_local_update(corner_method(), optax.sgd(0.0),
                                     Preprocess(MODEL_SIDE, "crop_flip")))
  plain = jax.jit(make_local_update(corner_method(), optax.sgd(0.0), Preprocess(MODEL_SIDE)))
  batch = jnp.asarray(stored.images[:4])

  def loss_of(fn, steps, valid_step):
    mask = jnp.zeros((steps, 4), bool).at[valid_step].set(True)
    b = ClientBatches(jnp.stack([batch] * steps), jnp.zeros((steps, 4), jnp.int32), mask)
    return float(fn({}, {"b": jnp.zeros(())}, {}, {}, {}, {}, b, jax.random.key(3)).loss_sum)

  first = loss_of(update, 1, 0)
  assert loss_of(update, 2, 0) == loss_of(update, 3, 0) == first
  assert abs(loss_of(update, 2, 1) - first) > 1e-4 * first
  assert loss_of(plain, 2, 1) == loss_of(plain, 1, 0)


@pytest.fixture(scope="module")
def fedvpt():
  model, frozen, ckpt = load_clip("embedded")
  assert model.config.vision.image_size == MODEL_SIDE
  tokenizer = load_tokenizer(ckpt, model.config.text.max_position_embeddings)
  src = shapes.make_shapes(4, 0, MODEL_SIDE, seed=1, domains=("falsecolour",),
                           classes=shapes.CLASS_NAMES[:6])
  method = make_method("fedvpt", model, {})
  aux = method.prepare(base.Context(model, frozen, tokenizer, src.class_names))
  return method, frozen, aux, src.train


def test_the_models_side_is_bit_identical_to_unresized_images(fedvpt):
  """Stored at the model's side, the round runs exactly as it did before storage_size."""
  method, frozen, aux, split = fedvpt
  mesh = mesh_lib.make_mesh(jax.devices()[:1])
  tx = optax.sgd(0.1)
  b = round_batches(split, [np.arange(12), np.arange(12, 24)], np.arange(2), steps=2, batch=4,
                    seed=0, round_index=0, padded_k=2)
  inputs = RoundInputs(ClientBatches(b["pixels"], b["labels"], b["mask"]),
                       jnp.asarray(b["num_examples"], jnp.float32), jnp.asarray(b["client_ids"]),
                       {}, {})
  params = method.init(jax.random.key(0), aux)
  outs = []
  for preprocess in (None, Preprocess(MODEL_SIDE)):
    fn = make_round_fn(method, tx, server.make_server_optimizer("fedavg"), mesh, donate=False,
                       preprocess=preprocess)
    state = init_server_state(method, tx, params, aux)
    outs.append(fn(frozen, state, aux, jax.random.key(1), inputs))
  for x, y in zip(jax.tree_util.tree_leaves(outs[0]), jax.tree_util.tree_leaves(outs[1])):
    np.testing.assert_array_equal(x, y)


def small_config(name: str, **values):
  """configs/<name>.py (embedded tiny CLIP) shrunk to seconds: one of its tinted domains."""
  sys.path.insert(0, REPO)
  import importlib  # pylint: disable=import-outside-toplevel
  c = importlib.import_module(f"configs.{name}").get_config()
  c.eval.check_zero_shot, c.eval.every = False, 1
  c.data.domains = c.data.domains[:1]
  c.data.train_per_class_domain, c.data.test_per_class_domain = 4, 2
  c.fed.num_clients, c.fed.clients_per_round = 8, 3
  c.fed.rounds, c.fed.local_steps, c.fed.batch_size = 2, 2, 8
  c.adv.eval, c.adv.eval_examples, c.adv.sanity_attack = ("pgd:linf:eps=1/255:steps=2",), 16, ""
  for key, value in values.items():
    section, leaf = key.split("__")
    c[section][leaf] = value
  return c


@pytest.mark.slow
def test_larger_storage_with_augmentation_trains_and_evaluates(tmp_path, capsys):
  """FedVPT (its prompts are in the image tower, so every step's crops reach the loss) with
  images stored at 48: trains, evaluates clean, robust and personalised, and its zero-shot
  accuracy is close to that of images rendered at the model's side."""
  c = small_config("fedvpt", data__storage_size=48, data__augment="crop_flip")
  records = train.train_and_evaluate(c, str(tmp_path / "stored48"))
  assert [r["round"] for r in records] == [0, 1, 2]
  last = records[-1]
  assert np.isfinite(last["train_loss"]) and 0 <= last["global_acc"] <= 1
  assert 0 <= last["robust_acc/pgd:linf:eps=1/255:steps=2"] <= last["robust_acc/clean"]
  assert 0 <= last["pers_acc_mean"] <= 1
  assert records[1]["train_loss"] != records[2]["train_loss"]
  reference = train.Run(small_config("fedvpt"), str(tmp_path / "native"))
  assert reference.source.train.images.shape[1:] == (MODEL_SIDE, MODEL_SIDE, 3)
  zero_shot = reference.zero_shot_accuracy()["zeroshot_acc"]
  assert abs(records[0]["zeroshot_acc"] - zero_shot) <= 0.1, (records[0]["zeroshot_acc"],
                                                              zero_shot)
  assert "frozen-feature" not in capsys.readouterr().out  # FedVPT has no frozen image path


@pytest.mark.slow
def test_cached_features_of_stored_images_equal_the_resizing_round(tmp_path, capsys):
  """PromptFL at storage 48: the cache encodes resized images once; the uncached round resizes
  them at every step. Same figures to float rounding (tests/test_feature_cache.py)."""
  values = dict(data__storage_size=48, fed__rounds=1, adv__eval=())
  cached = train.train_and_evaluate(small_config("promptfl", **values), str(tmp_path / "on"))
  log = capsys.readouterr().out
  assert "frozen-feature cache on" in log and "train split, 192 images" in log
  uncached = train.train_and_evaluate(
      small_config("promptfl", data__cache_frozen_features=False, **values), str(tmp_path / "off"))
  for a, b in zip(uncached, cached):
    for key in a:
      if key == "seconds_per_round":
        continue
      if "acc" in key:
        assert a[key] == b[key], (key, a[key], b[key])
      else:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-5, err_msg=key)
