"""fed.local_epochs: per-client step counts from data size, padded and masked to the round's S."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedprompt_jax import config as config_lib
from fedprompt_jax.data import federated
from fedprompt_jax.fed import mesh as mesh_lib
from fedprompt_jax.fed import server
from fedprompt_jax.fed.client import ClientBatches, make_local_update
from fedprompt_jax.fed.round import RoundInputs, init_server_state, make_round_fn
from fedprompt_jax.methods import base


class _Split:
  """N examples whose 1x1 image stores the example's own index (low, high byte)."""

  def __init__(self, n):
    i = np.arange(n)
    self.images = np.zeros((n, 1, 1, 3), np.uint8)
    self.images[:, 0, 0, 0], self.images[:, 0, 0, 1] = i % 256, i // 256
    self.labels = (i % 7).astype(np.int32)


def _index(pixels):
  return pixels[..., 0, 0, 0].astype(np.int64) + 256 * pixels[..., 0, 0, 1].astype(np.int64)


def test_padded_steps_by_hand():
  assert [federated.padded_steps(s) for s in (1, 5, 8, 9, 11, 16, 17, 33, 313)] == [
      1, 5, 8, 10, 12, 16, 20, 40, 320]
  for s in range(1, 3000):
    p = federated.padded_steps(s)
    assert s <= p <= max(8, 1.25 * s)
  sizes = {federated.padded_steps(s) for s in range(129, 257)}
  assert sizes == {160, 192, 224, 256}  # Four compiled sizes per doubling.


def test_round_local_steps_by_hand():
  sizes = np.array([3, 37, 64])  # B=8, 3 epochs: 3*1, 3*5, 3*8 steps.
  np.testing.assert_array_equal(federated.epoch_steps(sizes, 3, 8), [3, 15, 24])
  assert federated.round_local_steps(sizes, 3, 8, max_steps=256) == 24
  assert federated.round_local_steps(np.array([3, 37]), 3, 8, max_steps=256) == 16  # 15 -> 16
  assert federated.round_local_steps(sizes, 3, 8, max_steps=20) == 20


@pytest.mark.parametrize("n", [3, 8, 37])
def test_each_example_seen_exactly_epochs_times(n):
  split, epochs, batch = _Split(200), 3, 8
  mine = np.arange(50, 50 + n)  # Client 1; clients 0 and 2 are larger and smaller.
  clients = [np.arange(0, 50), mine, np.arange(150, 152)]
  steps = federated.round_local_steps(np.array([len(c) for c in clients]), epochs, batch, 256)
  b = federated.round_batches(split, clients, np.array([4, 9, 2]), steps=steps, batch=batch,
                              seed=0, round_index=3, epochs=epochs)
  per_epoch = -(-n // batch)
  valid_steps = b["mask"][1].any(axis=1)
  assert valid_steps.sum() == epochs * per_epoch and valid_steps[:epochs * per_epoch].all()
  seen = _index(b["pixels"][1])[b["mask"][1]]
  np.testing.assert_array_equal(np.bincount(seen, minlength=200)[mine], epochs)
  assert seen.size == epochs * n
  for e in range(epochs):  # Each epoch is one pass: every example once.
    rows = slice(e * per_epoch, (e + 1) * per_epoch)
    np.testing.assert_array_equal(np.sort(_index(b["pixels"][1, rows])[b["mask"][1, rows]]), mine)
  np.testing.assert_array_equal(b["labels"][1][b["mask"][1]], split.labels[seen])


def test_cap_cuts_a_large_client():
  split = _Split(100)
  b = federated.round_batches(split, [np.arange(100)], np.array([0]), steps=6, batch=8,
                              seed=0, round_index=0, epochs=5)  # wants 5 * 13 = 65 steps
  assert b["mask"].shape == (1, 6, 8) and b["mask"].all()
  assert np.unique(_index(b["pixels"][0])).size == 48  # 6 full batches of the first pass


def _toy_method():
  """params b [2]; loss |b - (y, 2y)|^2 / 2 per example."""

  def loss(frozen, params, aux, extra, client, pixels, labels, key):
    y = labels.astype(jnp.float32)[:, None] * jnp.array([1.0, 2.0])
    return 0.5 * jnp.sum((params["b"] - y) ** 2, axis=-1)

  return base.PromptMethod(name="toy", prepare=lambda ctx: {},
                           init=lambda k, a: {"b": jnp.zeros(2)}, logits=None, loss=loss)


@pytest.mark.parametrize("tx", [optax.sgd(0.3, momentum=0.9), optax.adam(0.1)],
                         ids=["sgd_momentum", "adam"])
def test_mixed_sizes_round_equals_each_client_alone(tx):
  # Three clients of 3, 21 and 9 examples, B=4, 2 epochs: 2, 12 and 6 valid steps, S=12.
  split, epochs, batch = _Split(33), 2, 4
  clients = [np.arange(0, 3), np.arange(3, 24), np.arange(24, 33)]
  ids = np.array([0, 1, 2])
  steps = federated.round_local_steps(np.array([3, 21, 9]), epochs, batch, 256)
  assert steps == 12
  mesh = mesh_lib.make_mesh(jax.devices()[:1])
  b = federated.round_batches(split, clients, ids, steps=steps, batch=batch, seed=0,
                              round_index=0, epochs=epochs)
  method = _toy_method()
  round_fn = make_round_fn(method, tx, server.make_server_optimizer("fedavg"), mesh, donate=False)
  state = init_server_state(method, tx, {"b": jnp.zeros(2)}, {})
  inputs = RoundInputs(ClientBatches(b["pixels"], b["labels"], b["mask"]),
                       jnp.asarray(b["num_examples"], jnp.float32), jnp.asarray(ids), {}, {})
  state, out = round_fn({}, state, {}, jax.random.key(0), inputs)
  # Reference: each client alone, with exactly its own number of steps (no padding).
  local_update = jax.jit(make_local_update(method, tx))
  deltas, losses = [], []
  for cid, idx in zip(ids, clients):
    own = int(federated.epoch_steps(len(idx), epochs, batch))
    alone = federated.round_batches(split, [idx], np.array([cid]), steps=own, batch=batch,
                                    seed=0, round_index=0, epochs=epochs)
    assert alone["mask"][0].any(axis=1).all()  # no padding step at all
    r = local_update({}, {"b": jnp.zeros(2)}, {}, {}, {}, {},
                     ClientBatches(*(alone[k][0] for k in ("pixels", "labels", "mask"))),
                     jax.random.key(1))
    deltas.append(np.asarray(r.delta["b"]))
    losses.append(float(r.loss_sum) / float(r.count))
  weights = np.array([3.0, 21.0, 9.0])
  expected = (weights[:, None] * np.stack(deltas)).sum(0) / weights.sum()
  np.testing.assert_allclose(state.shared["b"], expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out.client_loss[:3], losses, rtol=1e-5)


def test_sgd_by_hand_on_a_small_client():
  # 3 examples, B=4, 2 epochs, plain SGD lr 0.5: two steps on all three labels each.
  split = _Split(3)
  b = federated.round_batches(split, [np.arange(3)], np.array([0]), steps=5, batch=4, seed=0,
                              round_index=0, epochs=2)
  method = _toy_method()
  r = make_local_update(method, optax.sgd(0.5))(
      {}, {"b": jnp.zeros(2)}, {}, {}, {}, {},
      ClientBatches(*(b[k][0] for k in ("pixels", "labels", "mask"))), jax.random.key(0))
  y = np.array([0.0, 1.0, 2.0])[:, None] * np.array([1.0, 2.0])  # labels i % 7 of 0, 1, 2
  w = np.zeros(2)
  for _ in range(2):
    w = w - 0.5 * (w - y).mean(0)
  np.testing.assert_allclose(r.delta["b"], w, rtol=1e-6)
  assert int(r.count) == 6


@pytest.mark.parametrize("key,value,message", [
    ("local_epochs", 0, "fed.local_epochs=0 is invalid; must be an integer >= 1, or None for "
     "fed.local_steps fixed steps"),
    ("max_local_steps", 0, "fed.max_local_steps=0 is invalid; must be an integer >= 1"),
])
def test_bad_config(key, value, message):
  c = config_lib.default_config()
  c.fed[key] = value
  with pytest.raises(config_lib.ConfigError) as error:
    config_lib.validate(c)
  assert str(error.value) == message
