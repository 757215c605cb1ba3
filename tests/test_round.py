"""The jitted, vmapped, sharded round equals a plain Python loop over clients."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from clip_fixtures import fixture_dir
from fedprompt_jax.data import shapes
from fedprompt_jax.data.federated import round_batches
from fedprompt_jax.fed import mesh as mesh_lib
from fedprompt_jax.fed import server
from fedprompt_jax.fed.client import ClientBatches, make_local_update
from fedprompt_jax.fed.round import (RoundInputs, client_key, init_server_state, make_round_fn)
from fedprompt_jax.methods import base, make_method
from fedprompt_jax.models import hf_loader
from fedprompt_jax.models.tokenizer import load_tokenizer


def test_weighted_mean_by_hand():
  deltas = {"p": jnp.array([[1.0, 2.0], [5.0, 6.0], [100.0, 100.0]])}
  weights = jnp.array([1.0, 3.0, 0.0])  # the third client is padding
  total = server.weighted_sum(weights, deltas)
  np.testing.assert_allclose(total["p"], [16.0, 20.0])
  np.testing.assert_allclose(total["p"] / weights.sum(), [4.0, 5.0])


def toy_method():
  """params b (scalar); loss (b - y)^2 / 2. One SGD step at lr 1 moves b to mean(y)."""
  def loss(frozen, params, aux, extra, client, pixels, labels, key):
    return 0.5 * (params["b"] - labels.astype(jnp.float32)) ** 2
  return base.PromptMethod(name="toy", prepare=lambda ctx: {}, init=lambda k, a: {"b": 0.0},
                           logits=None, loss=loss)


@pytest.mark.parametrize("num_devices,chunk", [(1, None), (8, None), (8, 1)])
def test_round_by_hand_on_a_toy_method(num_devices, chunk):
  # Client label sets (one local step, batch 4): means 1, 2, 7 with 1, 4, 2 examples.
  labels = [np.array([1]), np.array([0, 2, 2, 4]), np.array([6, 8])]
  images = np.zeros((7, 2, 2, 3), np.uint8)
  split = type("S", (), {"images": images, "labels": np.concatenate(labels).astype(np.int32)})
  starts = np.cumsum([0] + [len(x) for x in labels])
  indices = [np.arange(starts[i], starts[i + 1]) for i in range(3)]
  mesh = mesh_lib.make_mesh(jax.devices()[:num_devices])
  padded = mesh_lib.padded_size(3, mesh, chunk or 1)
  b = round_batches(split, indices, np.arange(3), steps=1, batch=4, seed=0, round_index=0,
                    padded_k=padded)
  method = toy_method()
  tx = optax.sgd(1.0)
  round_fn = make_round_fn(method, tx, server.make_server_optimizer("fedavg"), mesh, chunk=chunk)
  state = init_server_state(method, tx, {"b": jnp.zeros(())}, {})
  inputs = RoundInputs(ClientBatches(b["pixels"], b["labels"], b["mask"]),
                       jnp.asarray(b["num_examples"], jnp.float32), jnp.asarray(b["client_ids"]),
                       {}, {})
  state, out = round_fn({}, state, {}, jax.random.key(0), inputs)
  # Weighted by examples: (1*1 + 4*2 + 2*7) / 7 = 23/7.
  np.testing.assert_allclose(state.shared["b"], 23 / 7, rtol=1e-6)
  # Training loss is measured before the step (b = 0): mean of y^2 / 2 per client.
  np.testing.assert_allclose(out.client_loss[:3], [0.5, 3.0, 25.0], rtol=1e-6)
  np.testing.assert_allclose(out.loss, (0.5 + 4 * 3.0 + 2 * 25.0) / 7, rtol=1e-6)
  assert int(state.round) == 1


def test_lr_schedule_scales_each_rounds_step_by_hand():
  # One client per round, one SGD step at lr 1 scaled by 1/(r + 2): b moves that fraction of
  # the way to the client's mean label.
  split = type("S", (), {"images": np.zeros((2, 2, 2, 3), np.uint8),
                         "labels": np.array([4, 8], np.int32)})
  mesh = mesh_lib.make_mesh(jax.devices()[:1])
  method = toy_method()
  tx = optax.sgd(1.0)
  round_fn = make_round_fn(method, tx, server.make_server_optimizer("fedavg"), mesh,
                           lr_schedule=lambda r: 1.0 / (r + 2))
  state = init_server_state(method, tx, {"b": jnp.zeros(())}, {})
  expected = 0.0
  for r in range(3):
    b = round_batches(split, [np.arange(2)], np.arange(1), steps=1, batch=2, seed=0,
                      round_index=r, padded_k=1)
    inputs = RoundInputs(ClientBatches(b["pixels"], b["labels"], b["mask"]),
                         jnp.asarray(b["num_examples"], jnp.float32),
                         jnp.asarray(b["client_ids"]), {}, {})
    state, _ = round_fn({}, state, {}, jax.random.key(0), inputs)
    expected += (6.0 - expected) / (r + 2)
    np.testing.assert_allclose(state.shared["b"], expected, rtol=1e-6)
  # Without the schedule the same round moves b all the way to the mean label at once.
  constant = make_round_fn(method, tx, server.make_server_optimizer("fedavg"), mesh)
  state, _ = constant({}, init_server_state(method, tx, {"b": jnp.zeros(())}, {}), {},
                      jax.random.key(0), inputs)
  np.testing.assert_allclose(state.shared["b"], 6.0, rtol=1e-6)


def test_cosine_schedule_over_rounds():
  from fedprompt_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from fedprompt_jax import train  # pylint: disable=g-import-not-at-top
  c = config_lib.default_config()
  c.fed.rounds = 4
  assert train.round_lr_schedule(c) is None
  c.optim.schedule = "cosine"
  schedule = train.round_lr_schedule(c)
  np.testing.assert_allclose([schedule(jnp.int32(r)) for r in range(4)],
                             [1.0, (1 + np.cos(np.pi / 4)) / 2, 0.5, (1 + np.cos(3 * np.pi / 4)) / 2],
                             rtol=1e-6)


@pytest.fixture(scope="module")
def world():
  model, frozen, ckpt = hf_loader.load_clip(fixture_dir("clip_tiny_a"))
  tok = load_tokenizer(ckpt, model.config.text.max_position_embeddings)
  classes = shapes.CLASS_NAMES[:6]
  src = shapes.make_shapes(4, 0, 32, seed=3, domains=("photo",), classes=classes)
  rng = np.random.default_rng(0)
  order = rng.permutation(len(src.train))
  sizes = [1, 2, 3, 5, 7, 2, 1, 3, 2]  # unequal, several smaller than the batch
  starts = np.cumsum([0] + sizes)
  clients = [order[starts[i]:starts[i + 1]] for i in range(len(sizes))]
  return model, frozen, tok, src, clients


def loop_reference(method, local_update, frozen, shared, aux, batches, weights, ids, key, rnd,
                   server_tx, opt_state):
  """Client by client with the same jitted local update, then the mean by numpy."""
  update = jax.jit(local_update)
  deltas = []
  for k in range(len(ids)):
    b = ClientBatches(*(np.asarray(x[k]) for x in batches))
    res = update(frozen, shared, {}, {}, aux, {}, b, client_key(key, jnp.int32(rnd), ids[k]))
    deltas.append(res.delta)
  w = np.asarray(weights, np.float64)
  mean = jax.tree_util.tree_map(
      lambda *d: np.tensordot(w, np.stack([np.asarray(x, np.float64) for x in d]), 1) / w.sum(),
      *deltas)
  mean = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), mean)
  return server.server_step(server_tx, shared, opt_state, mean)


@pytest.mark.parametrize("method_name,server_name", [("fedvpt", "fedavg"),
                                                     ("promptfl", "fedadam")])
def test_round_equals_python_loop_for_several_rounds(world, method_name, server_name):
  model, frozen, tok, src, clients = world
  cfg = {"num_tokens": 2, "depth": 2} if method_name == "fedvpt" else {"num_ctx": 3}
  method = make_method(method_name, model, cfg)
  aux = method.prepare(base.Context(model, frozen, tok, src.class_names))
  client_tx = optax.sgd(0.05, momentum=0.9)
  server_tx = server.make_server_optimizer(server_name, lr=1.0 if server_name == "fedavg" else 0.01)
  shared = method.init(jax.random.key(1), aux)
  key = jax.random.key(7)
  variants = {}
  for name, devices, chunk in (("1dev", 1, None), ("8dev", 8, None), ("8dev_chunk1", 8, 1)):
    mesh = mesh_lib.make_mesh(jax.devices()[:devices])
    variants[name] = (mesh, chunk, make_round_fn(method, client_tx, server_tx, mesh, chunk=chunk,
                                                 donate=False))
  states = {name: init_server_state(method, server_tx, shared, aux) for name in variants}
  ref_shared, ref_opt = shared, server_tx.init(shared)
  local_update = make_local_update(method, client_tx)
  for rnd in range(3):
    ids = np.array([[0, 1, 2, 3, 4, 5, 6, 7, 8], [1, 3, 4, 6, 8], [0, 2, 5, 7, 8]][rnd])
    for name, (mesh, chunk, round_fn) in variants.items():
      padded = mesh_lib.padded_size(len(ids), mesh, chunk or 1)
      b = round_batches(src.train, [clients[i] for i in ids], ids, steps=2, batch=4, seed=0,
                        round_index=rnd, padded_k=padded)
      inputs = RoundInputs(ClientBatches(b["pixels"], b["labels"], b["mask"]),
                           jnp.asarray(b["num_examples"], jnp.float32),
                           jnp.asarray(b["client_ids"]), {}, {})
      states[name], _ = round_fn(frozen, states[name], aux, key, inputs)
    b = round_batches(src.train, [clients[i] for i in ids], ids, steps=2, batch=4, seed=0,
                      round_index=rnd)
    ref_shared, ref_opt = loop_reference(
        method, local_update, frozen, ref_shared, aux,
        (b["pixels"], b["labels"], b["mask"]), b["num_examples"], b["client_ids"], key, rnd,
        server_tx, ref_opt)
    moved = jax.tree_util.tree_leaves(jax.tree_util.tree_map(
        lambda a, s: float(jnp.abs(a - s).max()), ref_shared, shared))
    assert max(moved) > 1e-4  # training did something
    for name, state in states.items():
      diffs = jax.tree_util.tree_leaves(jax.tree_util.tree_map(
          lambda a, r: float(jnp.abs(a - r).max()), state.shared, ref_shared))
      assert max(diffs) <= 1e-5, (name, rnd, diffs)


def pep_loop_reference(model, method, frozen, aux, shared, extra, log_priors, b, lr, momentum):
  """PEP by hand: each client's SGD steps in a Python loop (momentum written out), its
  per-class feature sums with the prompt it received, then FedAvg and the prototype fold."""
  grad_fn = jax.jit(jax.grad(lambda p, x, y, m, prior, ex: jnp.sum(
      optax.softmax_cross_entropy_with_integer_labels(
          method.logits(frozen, p, aux, ex, {"log_prior": prior}, x, None), y) * m) / m.sum()))
  pooled = jax.jit(lambda s, x: model.encode_image(frozen, x, shallow=s).pooled)
  num_classes, width = extra["prototypes"].shape
  deltas, sums, counts = [], np.zeros((num_classes, width)), np.zeros(num_classes)
  for k in range(len(b["client_ids"])):
    params = jax.tree_util.tree_map(np.asarray, shared)
    velocity = jax.tree_util.tree_map(np.zeros_like, params)
    for s in range(b["labels"].shape[1]):
      mask = b["mask"][k, s]
      x = b["pixels"][k, s].astype(np.float32) / 255.0
      if mask.any():
        g = grad_fn(params, x, b["labels"][k, s], mask.astype(np.float32), log_priors[k], extra)
        velocity = jax.tree_util.tree_map(lambda v, gi: momentum * v + np.asarray(gi),
                                          velocity, g)
        params = jax.tree_util.tree_map(lambda p, v: p - lr * v, params, velocity)
      z = np.asarray(pooled(shared["shared"], x))
      for i in np.flatnonzero(mask):
        sums[b["labels"][k, s, i]] += z[i]
        counts[b["labels"][k, s, i]] += 1
    deltas.append(jax.tree_util.tree_map(lambda p, s0: p - np.asarray(s0), params, shared))
  w = b["num_examples"].astype(np.float64)
  new_shared = jax.tree_util.tree_map(
      lambda s0, *d: np.asarray(s0) + sum(wk * dk for wk, dk in zip(w, d)) / w.sum(),
      shared, *deltas)
  protos, has = np.array(extra["prototypes"]), np.array(extra["has_proto"])
  for c in range(num_classes):
    if counts[c]:
      protos[c], has[c] = sums[c] / counts[c], True
  return new_shared, {"prototypes": protos, "has_proto": has}, counts


def test_pep_round_on_8_devices_equals_a_python_loop_with_the_server_update_by_hand(world):
  model, frozen, tok, src, clients = world
  method = make_method("pep", model, {"num_shared": 2, "num_class_tokens": 2, "class_layers": 1,
                                      "tau": 0.1, "init_std": 0.3})
  aux = method.prepare(base.Context(model, frozen, tok, src.class_names))
  lr, momentum = 0.1, 0.9
  server_tx = server.make_server_optimizer("fedavg")
  mesh = mesh_lib.make_mesh(jax.devices()[:8])
  round_fn = make_round_fn(method, optax.sgd(lr, momentum=momentum), server_tx, mesh,
                           donate=False)
  shared = method.init(jax.random.key(2), aux)
  state = init_server_state(method, server_tx, shared, aux)
  ref_shared, ref_extra = shared, method.init_extra(aux)
  key = jax.random.key(9)
  for rnd, ids in enumerate((np.array([0, 2, 3, 4, 6]), np.array([1, 3, 4, 7, 8]))):
    hists = np.stack([np.bincount(src.train.labels[clients[i]], minlength=6) for i in ids])
    log_priors = np.log((hists + 1.0) / (hists + 1.0).sum(1, keepdims=True))  # smoothing 1
    b = round_batches(src.train, [clients[i] for i in ids], ids, steps=2, batch=4, seed=0,
                      round_index=rnd, padded_k=8)
    inputs = RoundInputs(ClientBatches(b["pixels"], b["labels"], b["mask"]),
                         jnp.asarray(b["num_examples"], jnp.float32), jnp.asarray(b["client_ids"]),
                         {}, {"log_prior": jnp.asarray(np.concatenate(
                             [log_priors, np.zeros((3, 6))]), jnp.float32)})
    state, _ = round_fn(frozen, state, aux, key, inputs)
    real = {k: v[:len(ids)] for k, v in b.items()}
    before = ref_shared
    ref_shared, ref_extra, counts = pep_loop_reference(
        model, method, frozen, aux, ref_shared, ref_extra, log_priors.astype(np.float32), real,
        lr, momentum)
    for name in ("shared", "class", "head"):
      assert np.abs(ref_shared[name] - np.asarray(before[name])).max() > 1e-4, name  # it trained
      np.testing.assert_allclose(state.shared[name], ref_shared[name], atol=1e-5,
                                 err_msg=(rnd, name))
    assert counts.sum() > 0 and ref_extra["has_proto"].any()  # round 1 mixes with prototypes
    np.testing.assert_array_equal(state.extra["has_proto"], ref_extra["has_proto"])
    np.testing.assert_allclose(state.extra["prototypes"], ref_extra["prototypes"], atol=1e-5,
                               err_msg=rnd)
