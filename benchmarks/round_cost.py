"""One federated round of FedAPT+PGD-2 against clean FedAPT and FedVPT+PGD-2 (attack_cost.py).

All three rounds use configs/fedapt.py's settings (method sections of the default and of the
`fedvpt` preset, local label spaces, Adam clients, FedAvg server, the training attack
PGD 2 steps at 1/255) on the embedded tiny CLIP (its trained weights: timing does not depend
on them), K clients x S local steps x B images, C classes (the first C shapes class names),
one device, the backend's default client chunk. Each round is AOT-compiled (compile
excluded) and run with its state chained; the three are timed in turn, round-robin, and the
median of each is reported (`jax.block_until_ready`, `time.perf_counter`).

Shapes: K clients, S steps, B batch, C classes.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from fedprompt_jax import train  # noqa: E402
from fedprompt_jax.attacks import make_attack  # noqa: E402
from fedprompt_jax.data import shapes  # noqa: E402
from fedprompt_jax.fed import mesh as mesh_lib  # noqa: E402
from fedprompt_jax.fed import server  # noqa: E402
from fedprompt_jax.fed.client import ClientBatches  # noqa: E402
from fedprompt_jax.fed.round import RoundInputs, init_server_state, make_round_fn  # noqa: E402
from fedprompt_jax.methods import base, make_method  # noqa: E402
from fedprompt_jax.methods.adversarial import adversarial  # noqa: E402
from fedprompt_jax.methods.label_space import local_label_space  # noqa: E402
from fedprompt_jax.models.hf_loader import load_clip  # noqa: E402
from fedprompt_jax.models.tokenizer import load_tokenizer  # noqa: E402

TARGET_CLEAN = 3.3  # FedAPT+PGD-2 / clean FedAPT


def fedapt_config(preset: str | None):
  from configs import fedapt  # pylint: disable=import-outside-toplevel
  return fedapt.get_config(preset)


class CompiledRound:
  """An AOT-compiled round of `method` on one device; each call runs one (state chained)."""

  def __init__(self, c, method, frozen, aux, inputs_of, mesh, chunk):
    self.frozen, self.aux = frozen, aux
    server_tx = server.make_server_optimizer(c.fed.server_optimizer)
    fn = make_round_fn(method, train.client_optimizer(c), server_tx, mesh, chunk=chunk)
    shared, _ = base.split_params(method, method.init(jax.random.key(0), aux))
    self.state = init_server_state(method, server_tx, shared, aux)
    self.inputs = inputs_of(method)
    self.key = jax.random.key(1)
    self.compiled = fn.lower(frozen, self.state, aux, self.key, self.inputs).compile()

  def __call__(self) -> float:
    start = time.perf_counter()
    self.state, out = self.compiled(self.frozen, self.state, self.aux, self.key, self.inputs)
    jax.block_until_ready((self.state, out))
    return time.perf_counter() - start


def embedded_setup(classes: int):
  """(model, frozen, mesh, chunk, ctx): the embedded tiny CLIP on one device, the backend's
  default client chunk and a method context over the first `classes` shapes classes."""
  model, frozen, ckpt = load_clip("embedded")
  tokenizer = load_tokenizer(ckpt, model.config.text.max_position_embeddings)
  mesh = mesh_lib.make_mesh(jax.devices()[:1])
  frozen = jax.device_put(frozen, jax.devices()[0])
  chunk = train.default_chunk(jax.default_backend())
  ctx = base.Context(model, frozen, tokenizer, shapes.CLASS_NAMES[:classes])
  return model, frozen, mesh, chunk, ctx


def section(k: int, steps: int, batch: int, classes: int, repeats: int, budget: float) -> dict:
  """Prints the table and returns its figures."""
  model, frozen, mesh, chunk, ctx = embedded_setup(classes)
  size = model.config.vision.image_size
  rng = np.random.default_rng(0)
  labels = rng.integers(0, classes, (k, steps, batch)).astype(np.int32)
  hist = np.stack([np.bincount(labels[i].ravel(), minlength=classes) for i in range(k)])
  batches = ClientBatches(rng.integers(0, 256, (k, steps, batch, size, size, 3), np.uint8),
                          labels, np.ones((k, steps, batch), bool))

  def inputs_of(method):
    clients = jax.vmap(method.init_client)(jnp.asarray(hist, jnp.float32))
    return mesh_lib.shard_clients(mesh, RoundInputs(
        batches, np.ones((k,), np.float32), np.arange(k, dtype=np.int32), {}, clients))

  rounds = {}
  for name, preset, at in (("fedapt", None, False), ("fedapt+pgd2", None, True),
                           ("fedvpt+pgd2", "fedvpt", True)):
    c = fedapt_config(preset)
    method = local_label_space(make_method(c.method.name, model, c.method))
    if at:
      method = adversarial(method, make_attack(c.adv.train_attack), "pgd")
    aux = method.prepare(ctx)
    rounds[name] = CompiledRound(c, method, frozen, aux, inputs_of, mesh, chunk)
  for r in rounds.values():  # one warm-up each
    r()
  times = {name: [] for name in rounds}
  while len(times["fedapt"]) < repeats and sum(map(sum, times.values())) < 3 * budget:
    for name, r in rounds.items():
      times[name].append(r())
  med = {name: statistics.median(t) for name, t in times.items()}
  attack = fedapt_config(None).adv.train_attack
  print(f"\n[round] K={k} clients x S={steps} steps x B={batch}, C={classes} classes, embedded "
        f"tiny CLIP, local label spaces, chunk {chunk or 'vmap'}, training attack {attack}; "
        f"median of {len(times['fedapt'])} interleaved runs")
  print(f"{'round':>12} {'seconds':>9} {'img-steps/s':>12}")
  for name, t in med.items():
    print(f"{name:>12} {t:9.3f} {k * steps * batch / t:12.1f}")
  vs_clean, vs_fedvpt = med["fedapt+pgd2"] / med["fedapt"], med["fedapt+pgd2"] / med["fedvpt+pgd2"]
  verdict = "PASS" if vs_clean <= TARGET_CLEAN else "MISS"
  print(f"  FedAPT+PGD-2 / FedAPT clean  = {vs_clean:.2f}  (target <= {TARGET_CLEAN}) {verdict}")
  print(f"  FedAPT+PGD-2 / FedVPT+PGD-2  = {vs_fedvpt:.2f}  (information)")
  return dict(k=k, steps=steps, batch=batch, classes=classes, chunk=chunk,
              runs=len(times["fedapt"]), seconds=med, ratio_vs_clean=vs_clean,
              ratio_vs_fedvpt_at=vs_fedvpt, target=TARGET_CLEAN, verdict=verdict)
