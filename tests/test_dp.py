"""Client-level DP-FedAvg: clipping, noise, accounting, replay and bad inputs (privacy/)."""

import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import optimize, stats

import dp_accounting
from fedprompt_jax import config as config_lib
from fedprompt_jax.fed import mesh as mesh_lib
from fedprompt_jax.fed import server
from fedprompt_jax.fed.client import ClientBatches
from fedprompt_jax.fed.round import RoundInputs, init_server_state, make_round_fn
from fedprompt_jax.methods import base
from fedprompt_jax.privacy import accountant as accountant_lib
from fedprompt_jax.privacy import mechanism
from fedprompt_jax.privacy.settings import DPSpec

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K = 8  # clients per round in the toy rounds


def toy_method(width=3, with_stats=False):
  """params {w [width], b}; loss (w . x + b - y)^2 / 2 with x the mean pixel per channel.

  With `with_stats` each client sends up {"s": [sum of labels, count]} and the server
  keeps the last (noised) sum as its `extra`.
  """
  def loss(frozen, params, aux, extra, client, pixels, labels, key):
    x = jnp.mean(pixels, axis=(1, 2))  # [B, 3]
    pred = x @ params["w"][:3] + params["b"] + jnp.sum(params["w"][3:])
    return 0.5 * (pred - labels.astype(jnp.float32)) ** 2

  kwargs = {}
  if with_stats:
    kwargs = dict(
        init_extra=lambda aux: {"s": jnp.zeros((2,))},
        client_stats=lambda frozen, params, aux, extra, client, pixels, labels, mask: {
            "s": jnp.stack([jnp.sum(labels * mask), jnp.sum(mask)]).astype(jnp.float32)},
        server_update=lambda extra, s: s)
  return base.PromptMethod(name="toy", prepare=lambda ctx: {}, init=None, logits=None, loss=loss,
                           **kwargs)


def toy_inputs(mesh, steps=2, batch=2, seed=0, real=K):
  """K rows: `real` clients with random images and labels (client k's around k), then padding."""
  rng = np.random.default_rng(seed)
  pixels = rng.integers(0, 256, (K, steps, batch, 2, 2, 3), dtype=np.uint8)
  labels = (np.arange(K)[:, None, None] + rng.integers(0, 3, (K, steps, batch))).astype(np.int32)
  is_real = np.arange(K) < real
  mask = np.broadcast_to(is_real[:, None, None], (K, steps, batch)).copy()
  inputs = RoundInputs(ClientBatches(pixels, labels, mask), is_real.astype(np.float32),
                       np.arange(K, dtype=np.int32), {}, {})
  return mesh_lib.shard_clients(mesh, inputs)


def toy_state(method, tx, width=3):
  return init_server_state(method, tx, {"w": jnp.zeros((width,)), "b": jnp.zeros(())}, {})


def toy_round(dp, devices=8, lr=0.1, width=3, server_tx=None, with_stats=False):
  method = toy_method(width, with_stats)
  tx = optax.sgd(lr, momentum=0.9)
  server_tx = server_tx or server.make_server_optimizer("fedavg")
  mesh = mesh_lib.make_mesh(jax.devices()[:devices])
  fn = make_round_fn(method, tx, server_tx, mesh, dp=dp, donate=False)
  return fn, init_server_state(method, server_tx, {"w": jnp.zeros((width,)),
                                                   "b": jnp.zeros(())}, {}), mesh


def as_numpy(tree):
  return jax.tree_util.tree_map(np.asarray, tree)


def test_every_clipped_delta_has_norm_at_most_clip():
  rng = np.random.default_rng(0)
  scales = np.array([0.0, 1e-3, 0.3, 0.5, 0.7, 2.0, 50.0, 1e4])  # [K] norms around clip 0.5
  tree = {"a": rng.normal(size=(K, 4, 3)), "b": {"c": rng.normal(size=(K, 7))}}
  norms = np.sqrt((tree["a"] ** 2).sum((1, 2)) + (tree["b"]["c"] ** 2).sum(1))
  tree = jax.tree_util.tree_map(
      lambda x: jnp.asarray(x * (scales / np.maximum(norms, 1e-12)).reshape(
          (-1,) + (1,) * (x.ndim - 1)), jnp.float32), tree)
  for clip in (0.5, 1.0, 0.01):
    clipped, before = mechanism.clip_per_client(tree, clip)
    np.testing.assert_allclose(before, scales, rtol=1e-5)
    after = np.asarray(mechanism.client_norms(clipped))
    assert (after <= clip + 1e-6).all(), (clip, after)
    inside = np.asarray(before) <= clip
    for x, y in zip(jax.tree_util.tree_leaves(tree), jax.tree_util.tree_leaves(clipped)):
      np.testing.assert_array_equal(np.asarray(x)[inside], np.asarray(y)[inside])  # untouched
      assert np.allclose(np.asarray(y)[~inside] / np.asarray(x)[~inside],
                         (clip / np.asarray(before)[~inside]).reshape(
                             (-1,) + (1,) * (x.ndim - 1)), rtol=1e-5)  # same direction


def test_round_with_clip_and_no_noise_is_the_mean_of_clipped_deltas_by_hand():
  clip = 0.05
  fn_plain, state, mesh = toy_round(None)
  inputs = toy_inputs(mesh)
  _, plain = fn_plain({}, state, {}, jax.random.key(0), inputs)
  # The unclipped deltas, client by client, from 1-client rounds of the same local update.
  fn_dp, state_dp, _ = toy_round(DPSpec(clip, 0.0, K, None))
  new_state, out = fn_dp({}, state_dp, {}, jax.random.key(0), inputs)
  np.testing.assert_allclose(out.delta_norm, plain.delta_norm, rtol=1e-6)
  assert (np.asarray(out.delta_norm) > clip).sum() >= 4  # most clients are clipped
  deltas = []
  fn1, start, _ = toy_round(None, devices=1)
  for k in range(K):
    one = jax.tree_util.tree_map(lambda x, k=k: x[k:k + 1], as_numpy(inputs))
    s1, _ = fn1({}, start, {}, jax.random.key(0), one)
    d = as_numpy(s1.shared)
    n = math.sqrt(sum(float((v ** 2).sum()) for v in jax.tree_util.tree_leaves(d)))
    np.testing.assert_allclose(n, out.delta_norm[k], rtol=1e-5)
    deltas.append(jax.tree_util.tree_map(lambda v, n=n: v * min(1.0, clip / n), d))
  expected = jax.tree_util.tree_map(lambda *v: sum(v) / K, *deltas)
  for name in ("w", "b"):
    np.testing.assert_allclose(new_state.shared[name], expected[name], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("server_name,real", [("fedavg", 5), ("fedyogi", 3)])
def test_no_noise_and_infinite_clip_equals_the_round_without_dp_bit_for_bit(server_name, real):
  # `real` sampled clients in K = 8 rows (the others are padding, weight 0): the round
  # without DP and uniform weights divides by the weights' sum, the DP round by `real`.
  server_tx = server.make_server_optimizer(server_name, lr=1.0 if server_name == "fedavg" else 0.1)
  fn_plain, state, mesh = toy_round(None, server_tx=server_tx)
  fn_dp, _, _ = toy_round(DPSpec(math.inf, 0.0, real, None), server_tx=server_tx)
  s_plain, s_dp = state, state
  for r in range(2):
    inputs = toy_inputs(mesh, seed=r, real=real)
    s_plain, o_plain = fn_plain({}, s_plain, {}, jax.random.key(3), inputs)
    s_dp, o_dp = fn_dp({}, s_dp, {}, jax.random.key(3), inputs)
  for a, b in zip(jax.tree_util.tree_leaves(s_plain), jax.tree_util.tree_leaves(s_dp)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert float(jnp.abs(s_plain.shared["w"]).max()) > 1e-3  # it trained
  np.testing.assert_array_equal(o_plain.loss, o_dp.loss)


def noise_after(dp, devices, rounds, keys=(0,), width=20_000):
  """[len(keys), rounds, width] server noise: zero learning rate, so shared moves by noise / K."""
  fn, start, mesh = toy_round(dp, devices=devices, lr=0.0, width=width)
  inputs = toy_inputs(mesh)
  out = []
  for key in keys:
    state, per_round = start, []
    for _ in range(rounds):
      before = np.asarray(state.shared["w"])
      state, _ = fn({}, state, {}, jax.random.key(key), inputs)
      per_round.append(np.asarray(state.shared["w"]) - before)
    out.append(per_round)
  return np.asarray(out)


def test_noise_std_is_z_clip_over_k():
  clip, z = 0.3, 1.7
  draws = noise_after(DPSpec(clip, z, K, None), 1, 3, keys=(0, 1))  # 120,000 draws
  expected = z * clip / K
  assert abs(draws.std() / expected - 1) < 0.05, (draws.std(), expected)
  assert abs(draws.mean()) < 0.05 * expected
  assert abs(np.corrcoef(draws[0, 0], draws[0, 1])[0, 1]) < 0.05  # fresh noise each round
  assert abs(np.corrcoef(draws[0, 0], draws[1, 0])[0, 1]) < 0.05  # and for each seed


def test_noise_is_identical_on_1_and_8_devices_and_when_replayed():
  dp = DPSpec(0.3, 1.1, K, None)
  one = noise_after(dp, 1, 2, width=64)
  eight = noise_after(dp, 8, 2, width=64)
  np.testing.assert_array_equal(one, eight)
  assert np.abs(one).max() > 0
  # Replay: round 2 from round 1's state moved to the host and back (as a checkpoint
  # restore) gives the state of the uninterrupted run, bit for bit.
  fn, state, mesh = toy_round(dp, devices=1)
  states = [state]
  for r in range(2):
    state, _ = fn({}, state, {}, jax.random.key(4), toy_inputs(mesh, seed=r))
    states.append(state)
  restored = jax.tree_util.tree_map(jnp.asarray, as_numpy(states[1]))
  replayed, _ = fn({}, restored, {}, jax.random.key(4), toy_inputs(mesh, seed=1))
  for a, b in zip(jax.tree_util.tree_leaves(states[2]), jax.tree_util.tree_leaves(replayed)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
def test_noise_is_identical_in_two_processes(tmp_path):
  """2 processes x 4 CPU devices (jax.distributed) draw the noise of 1 process x 8 devices."""
  import socket  # pylint: disable=import-outside-toplevel
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  worker = os.path.join(REPO, "tests", "dp_noise_worker.py")
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=4")
  procs = [subprocess.Popen([sys.executable, worker, str(tmp_path / "two.npy"),
                             f"127.0.0.1:{port}", "2", str(i)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  for p in procs:
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
  two = np.load(tmp_path / "two.npy")
  np.testing.assert_array_equal(two, noise_after(DPSpec(0.3, 1.1, K, None), 8, 2, width=64)[0])


def test_statistics_are_clipped_and_noised_with_their_own_bound():
  # z = 0: the server sees the sum of each client's [sum of labels, count] clipped to 2.
  fn, state, mesh = toy_round(DPSpec(0.1, 0.0, K, 2.0), with_stats=True)
  inputs = toy_inputs(mesh)
  new, _ = fn({}, state, {}, jax.random.key(0), inputs)
  labels, mask = np.asarray(inputs.batches.labels), np.asarray(inputs.batches.mask)
  raw = np.stack([(labels * mask).sum((1, 2)), mask.sum((1, 2))], 1).astype(np.float64)
  clipped = raw * np.minimum(1.0, 2.0 / np.linalg.norm(raw, axis=1))[:, None]
  np.testing.assert_allclose(new.extra["s"], clipped.sum(0), rtol=1e-5)
  # z > 0: noise of std z * stats_clip on the sums (not divided by K).
  sums = []
  for key in range(300):
    fn, state, mesh = (fn, state, mesh) if key else toy_round(DPSpec(0.1, 1.5, K, 2.0),
                                                              with_stats=True)
    s, _ = fn({}, state, {}, jax.random.key(key), inputs)
    sums.append(np.asarray(s.extra["s"]) - clipped.sum(0))
  assert abs(np.std(sums) / (1.5 * 2.0) - 1) < 0.1
  # A method with statistics and no stats_clip is refused when the round is traced.
  fn, state, mesh = toy_round(DPSpec(0.1, 1.0, K, None), with_stats=True)
  with pytest.raises(ValueError, match="sends client statistics that DP would not cover"):
    fn({}, state, {}, jax.random.key(0), inputs)


def analytic_gaussian_epsilon(mu, delta):
  """Exact epsilon of a Gaussian mechanism with sensitivity / std = mu (Balle and Wang, 2018)."""
  f = lambda e: (stats.norm.cdf(-e / mu + mu / 2) - math.exp(e) * stats.norm.cdf(-e / mu - mu / 2)
                 - delta)
  return optimize.brentq(f, 0.0, 500.0)


def test_accountant_against_independent_references():
  # Abadi et al. (2016), section 3.1: q = 0.01, sigma = 4, delta = 1e-5, 10,000 steps: the
  # moments accountant gives epsilon ~ 1.26 (Poisson sampling, add/remove; orders 2..32 and
  # the classic conversion). Our RDP with that conversion reproduces it; the conversion the
  # runs report is tighter.
  abadi = accountant_lib.Accountant(
      dp_accounting.PoissonSampledDpEvent(0.01, dp_accounting.GaussianDpEvent(4.0)), 1e-5,
      dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE, orders=list(range(2, 33)))
  assert abs(accountant_lib.classic_epsilon(abadi, 10_000) - 1.26) < 0.01
  assert abadi.epsilon(10_000) < accountant_lib.classic_epsilon(abadi, 10_000)
  # All N clients every round (q = 1): R rounds of noise z * clip on a sum that replacing one
  # client moves by 2 * clip is one Gaussian of mu = 2 sqrt(R) / z, whose exact epsilon is
  # known; RDP is an upper bound within 15% of it (with z, not z / 2, it would fall below).
  for z, rounds in ((4.0, 10), (8.0, 50), (2.0, 1)):
    exact = analytic_gaussian_epsilon(2 * math.sqrt(rounds) / z, 1e-5)
    ours = accountant_lib.for_run(100, 100, z, 1e-5).epsilon(rounds)
    assert exact <= ours <= 1.15 * exact, (z, rounds, exact, ours)


def test_accountant_rounds_budget_and_statistics():
  acc = accountant_lib.for_run(1000, 10, 1.0, accountant_lib.default_delta(1000))
  assert acc.delta == pytest.approx(1000 ** -1.1)
  eps = [acc.epsilon(r) for r in range(0, 60, 5)]
  assert eps[0] == 0.0 and all(a < b for a, b in zip(eps, eps[1:]))
  target = acc.epsilon(37) + 1e-9
  assert acc.rounds_within(target, 100) == 37 and acc.rounds_within(target, 20) == 20
  assert acc.rounds_within(acc.epsilon(1) / 2, 100) == 0
  # Two releases per round with z each = one release with z / sqrt(2).
  two = accountant_lib.for_run(1000, 10, 2.0, 1e-6, releases=2)
  one = accountant_lib.for_run(1000, 10, 2.0 / math.sqrt(2), 1e-6)
  assert two.epsilon(30) == pytest.approx(one.epsilon(30), rel=1e-9)
  assert accountant_lib.for_run(1000, 10, 0.0, 1e-6).epsilon(1) == math.inf
  # Calibration (all clients each round: the cheap case of the same event).
  z = accountant_lib.noise_for_epsilon(10, 10, 25, 3.0, 1e-5)
  assert accountant_lib.for_run(10, 10, z, 1e-5).epsilon(25) <= 3.0
  assert accountant_lib.for_run(10, 10, z - 2e-3, 1e-5).epsilon(25) > 3.0


def test_dp_presets_fit_their_budget():
  import importlib  # pylint: disable=import-outside-toplevel
  from fedprompt_jax.privacy import settings  # pylint: disable=import-outside-toplevel
  sys.path.insert(0, REPO)
  for name in ("promptfl", "fedvpt", "pep"):
    c = importlib.import_module(f"configs.{name}").get_config("dp")
    config_lib.validate(c)
    acc = settings.accountant(c)
    assert acc.epsilon(c.fed.rounds) <= c.dp.target_epsilon < acc.epsilon(2 * c.fed.rounds), name
    assert settings.releases(c) == (2 if name == "pep" else 1)


def dp_config(**values):
  c = config_lib.default_config()
  c.dp.enabled = True
  c.fed.weighting = "uniform"
  for key, value in values.items():
    section, name = key.split("__")
    c[section][name] = value
  return c


@pytest.mark.parametrize("values,message", [
    (dict(dp__clip=-1.0), "dp.clip=-1.0 is invalid; must be a number > 0"),
    (dict(dp__noise_multiplier=-0.5), "dp.noise_multiplier=-0.5 is invalid; must be a finite "
                                      "number >= 0"),
    (dict(method__name="pep"), "method.name='pep' is invalid; with dp.enabled=True it would "
                               "release its per-class feature sums and counts"),
    (dict(fed__weighting="examples"), "fed.weighting='examples' is invalid; with "
                                      "dp.enabled=True it must be 'uniform'"),
    (dict(dp__target_epsilon=0.5), "dp.target_epsilon=0.5 is already exceeded by round 1"),
    (dict(dp__clip=math.inf), "dp.clip=inf is invalid; gives infinite noise"),
    (dict(dp__delta=1.5), "dp.delta=1.5 is invalid; must be in (0, 1)"),
    (dict(dp__stats_clip=0.0), "dp.stats_clip=0.0 is invalid; must be a number > 0"),
])
def test_bad_dp_values_give_one_line_and_write_nothing(tmp_path, values, message):
  from fedprompt_jax import train  # pylint: disable=import-outside-toplevel
  workdir = tmp_path / "w"
  with pytest.raises(config_lib.ConfigError) as err:
    train.train_and_evaluate(dp_config(**values), str(workdir))
  assert message in str(err.value) and "\n" not in str(err.value), str(err.value)
  assert not workdir.exists()


def test_exactly_the_methods_that_send_statistics_declare_them():
  from fedprompt_jax.methods import REGISTRY, make_method  # pylint: disable=import-outside-toplevel
  from fedprompt_jax.models import hf_loader  # pylint: disable=import-outside-toplevel
  model, _, _ = hf_loader.load_clip("embedded")  # the model the configs are written for
  sys.path.insert(0, REPO)
  import importlib  # pylint: disable=import-outside-toplevel
  for name in sorted(REGISTRY):
    try:
      method_config = importlib.import_module(f"configs.{name}").get_config().method
    except ModuleNotFoundError:
      method_config = config_lib.default_config().method
    method = make_method(name, model, method_config)
    sends = method.client_stats is not base.PromptMethod.client_stats
    assert sends == (name in base.RELEASED_STATS), name
  assert set(base.RELEASED_STATS) == {"pep"}
  config_lib.validate(dp_config(method__name="pep", dp__stats_clip=1.0))
  for name in ("promptfl", "fedvpt", "fedapt", "fedmvp"):
    config_lib.validate(dp_config(method__name=name))


def tiny_run_config(rounds, target=None):
  """configs/fedvpt.py shrunk to seconds, with DP (z = 2) on 40 clients, 4 a round."""
  sys.path.insert(0, REPO)
  from configs import fedvpt  # pylint: disable=import-outside-toplevel
  from clip_fixtures import fixture_dir  # pylint: disable=import-outside-toplevel
  c = fedvpt.get_config()
  c.clip.checkpoint = fixture_dir("clip_tiny_a")
  c.eval.check_zero_shot, c.eval.every, c.eval.personalized = False, 1, False
  c.data.train_per_class_domain, c.data.test_per_class_domain = 2, 1
  c.fed.num_clients, c.fed.clients_per_round, c.fed.partition = 40, 4, "iid"
  c.fed.rounds, c.fed.local_steps, c.fed.batch_size = rounds, 1, 4
  c.eval.batch_size = 64
  c.method.depth, c.method.num_tokens, c.optim.schedule = 2, 8, "constant"
  c.adv.eval, c.adv.sanity_attack = (), ""
  c.fed.weighting, c.dp.enabled, c.dp.clip, c.dp.noise_multiplier = "uniform", True, 0.05, 2.0
  c.dp.target_epsilon = target
  return c


def comparable(records):
  return [{k: v for k, v in r.items() if k != "seconds_per_round"} for r in records]


def test_budget_stops_the_run_and_a_resume_with_more_equals_the_uninterrupted_run(tmp_path,
                                                                                  capsys):
  from fedprompt_jax import train  # pylint: disable=import-outside-toplevel
  full = train.train_and_evaluate(tiny_run_config(3), str(tmp_path / "full"))
  assert [r["round"] for r in full] == [0, 1, 2, 3]
  eps = [r["dp_epsilon"] for r in full]
  assert eps[0] == 0.0 and eps[1] < eps[2] < eps[3] < math.inf
  assert "dp_epsilon" in capsys.readouterr().out  # in the summary table
  # A budget between round 2's epsilon and round 3's: evaluated and checkpointed at round 2.
  target = (eps[2] + eps[3]) / 2
  stopped = train.train_and_evaluate(tiny_run_config(3, target), str(tmp_path / "budget"))
  lines = [l for l in capsys.readouterr().out.splitlines() if "dp.target_epsilon" in l]
  assert len(lines) == 1 and "stopped after round 2 of fed.rounds=3" in lines[0], lines
  assert "the checkpoint of round 2 is kept" in lines[0]
  assert comparable(stopped) == comparable(full[:3])
  assert max(int(n) for n in os.listdir(tmp_path / "budget" / "ckpt") if n.isdigit()) == 2
  # The same workdir without the budget resumes at round 2, noise and all, as if never stopped.
  resumed = train.train_and_evaluate(tiny_run_config(3), str(tmp_path / "budget"))
  assert "resumed from" in capsys.readouterr().out
  assert comparable(resumed) == comparable(full)
