"""The memory plan of a `train.Run`: its resident trees, and each phase lowered at its real batch.

Every phase is lowered with the arguments the run itself will pass first (the
round's inputs for its first round, the first evaluation and attack batches,
padded as evaluate.py pads them), so the executable compiled here is the one the
run later takes from JAX's cache. Phases:

  train round           round_fn over [K, S, B] inputs          fed.batch_size
  zero-shot evaluation  the zero-shot head, one batch           eval.batch_size
  evaluation            the global model, one batch             eval.batch_size
  personalised eval.    clients x their test examples           eval.batch_size
  robust evaluation     every adv.eval attack, one batch        adv.eval_batch_size
  sanity attack         adv.sanity_attack, one batch            adv.eval_batch_size

Shapes: K clients per round, S local steps, B batch, T test examples per client.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np

from fedprompt_jax import config as config_lib
from fedprompt_jax import evaluate
from fedprompt_jax import memory_plan as plan_lib
from fedprompt_jax.fed import mesh as mesh_lib
from fedprompt_jax.fed import prefetch

Tree = Any


def _images(split, count: int, batch_size: int, inputs: np.ndarray | None = None) -> np.ndarray:
  """The first evaluation batch of `split`: its first min(count, batch) images (or rows of
  `inputs`, e.g. cached features [N, F]), padded."""
  valid = min(count, batch_size, len(split))
  chunk = (split.images if inputs is None else inputs)[:valid]
  pad = evaluate.padded_size(valid, batch_size) - valid
  return np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)]) if pad else chunk


def _attack_args(split, count: int, batch_size: int):
  """(pixels, labels, indices) of the first attack batch over `count` examples."""
  valid = min(count, batch_size)
  idx = np.arange(valid)
  idx = np.concatenate([idx, np.full(evaluate.padded_size(valid, batch_size) - valid, 0)])
  return split.images[idx], split.labels[idx], idx


def _phase(name, key, value, batch, shape, fn, args, resident, copies=1,
           extra=0) -> plan_lib.Phase:
  """`extra`: bytes per device held beside the phase's own working memory."""
  size = plan_lib.compiled_bytes(fn, args, resident)
  return plan_lib.Phase(name, key, value, batch, shape,
                        None if size is None else (size + extra) * copies)


def phases(run, state, personal_all: Tree, start: int) -> list[plan_lib.Phase]:
  """Each phase of `run` from round `start`, with its compiled working memory."""
  c = run.c
  on_cpu = jax.default_backend() == "cpu"
  devices = run.mesh.devices.size
  out = []
  frozen = plan_lib.tree_bytes(run.frozen)
  if run.method.trains and start < run.last_round():
    ids, inputs = run.round_inputs(start, personal_all)
    key = mesh_lib.replicate(run.mesh, jax.random.key_data(jax.random.key(c.seed)))  # as train
    k, s, b = inputs.batches.pixels.shape[:3]
    resident = frozen + plan_lib.tree_bytes((state, run.aux_global))
    ahead = prefetch.inputs_held_ahead(c.fed.prefetch,
                                       bool(jax.tree_util.tree_leaves(personal_all)))
    held = f" (+ {ahead} rounds of inputs held ahead, fed.prefetch)" if ahead else ""
    out.append(_phase("train round", "fed.batch_size", c.fed.batch_size, b,
                      f"{len(ids)} of {k} client slots x {s} steps x {b} images{held}",
                      run.round_fn, (run.frozen_global, state, run.aux_global, key, inputs),
                      resident, copies=devices if on_cpu else 1,
                      extra=ahead * plan_lib.tree_bytes(inputs)))
    del inputs
  local = mesh_lib.local_copy(state)
  params = run.global_params(local, personal_all)
  test, bs = run.source.test, c.eval.batch_size
  if len(test):
    pixels = _images(test, len(test), bs)
    args = (run.frozen, {}, run.zeroshot_aux, {}, {}, pixels)
    out.append(_phase("zero-shot evaluation", "eval.batch_size", bs, len(pixels),
                      f"{len(pixels)} images",
                      run.predict_zeroshot, args, plan_lib.tree_bytes(args[:5])))
    if not c.fed.local_only:  # clean evaluation: on cached features where the run has them
      inputs = _images(test, len(test), bs, run.inputs_of(test, "test"))
      args = (run.frozen, params, run.aux, local.extra, run.global_client, inputs)
      out.append(_phase("evaluation", "eval.batch_size", bs, len(pixels), f"{len(pixels)} images",
                        run.clean_predict, args, plan_lib.tree_bytes(args[:5])))
  if c.eval.personalized:
    out.append(_personalised(run, local, personal_all))
  n = min(c.adv.eval_examples, len(test))
  if c.adv.eval and not c.fed.local_only and n:
    abs_ = c.adv.eval_batch_size
    key = jax.random.key(c.seed + 1)
    head = (run.frozen, params, run.aux, local.extra, run.global_client)
    resident = plan_lib.tree_bytes(head)
    batch = _attack_args(test, n, abs_)
    out.append(_phase("robust evaluation", "adv.eval_batch_size", abs_, len(batch[0]),
                      f"{len(batch[0])} images x {len(c.adv.eval)} attack(s)",
                      run.robust.fn, (*head, *batch, key), resident))
    subset = min(c.adv.sanity_examples, n)
    if run.sanity_robust is not None and subset:
      batch = _attack_args(test, subset, min(abs_, subset))
      out.append(_phase("sanity attack", "adv.eval_batch_size", abs_, len(batch[0]),
                        f"{len(batch[0])} images",
                        run.sanity_robust.fn, (*head, *batch, key), resident))
  return out


def _personalised(run, local, personal_all: Tree) -> plan_lib.Phase:
  """Personalised evaluation's one call: `per_call` clients x T test examples (as evaluate)."""
  c, part = run.c, run.partition
  t = max(1, int(part.test_sizes().max()))
  per_call = min(max(1, c.eval.batch_size // t), part.num_clients)
  rows = np.arange(per_call)
  take = lambda tree: jax.tree_util.tree_map(lambda x: x[rows], tree)
  cached = run.inputs_of(run.source.test, "test")  # [N, F] features, or None: images
  example = run.source.test.images if cached is None else cached
  pixels = np.zeros((per_call, t) + example.shape[1:], example.dtype)
  args = (run.frozen, local.shared, take(personal_all), run.aux, local.extra, take(run.clients),
          pixels)
  resident = plan_lib.tree_bytes((run.frozen, local.shared, run.aux, local.extra))
  return _phase("personalised evaluation", "eval.batch_size", c.eval.batch_size, per_call * t,
                f"{per_call} clients x {t} images", run.predict_clients, args, resident)


def resident(run, state, personal_all: Tree, baseline: int | None) -> tuple[list, list]:
  """(counted, host_only): (name, bytes[, note]) of what stays in memory; `baseline` is the
  process's resident size before loading (the interpreter and libraries), or None."""
  on_cpu = jax.default_backend() == "cpu"
  d = run.mesh.devices.size if on_cpu else 1
  per_device = f"x {d} devices" if d > 1 else ""
  aux = plan_lib.tree_bytes(run.aux) * (d + 1) + plan_lib.tree_bytes(run.zeroshot_aux)
  counted = [
      ("frozen CLIP weights", plan_lib.tree_bytes(run.frozen) * d, per_device),
      ("prompt params + server state", plan_lib.tree_bytes(state) * d, per_device),
      ("method constants (aux)", aux, ""),
  ]
  # Stored images (data.storage='array_record') have no nbytes: only their labels count.
  data = sum(plan_lib.tree_bytes((s.images, s.labels, s.domains))
             for s in (run.source.train, run.source.test))
  what = ("labels; images read per batch" if run.c.data.storage != "memory"
          else "uint8 images, labels")
  host = [("per-client state", plan_lib.tree_bytes((personal_all, run.clients))),
          (f"data ({what})", data)]
  if baseline is not None:
    host.append(("interpreter, libraries (measured)", baseline))
  if on_cpu:
    return counted + [(name, size, "host") for name, size in host], []
  return counted, host


def make_plan(run, budget_gb: float | None, baseline: int | None = None) -> plan_lib.Plan:
  """The plan of `run` before its first round (state shapes from `run.initial_state()`).

  Args:
    run: a train.Run.
    budget_gb: memory_budget_gb, or None for the device's (on CPU the host's) memory.
    baseline: the process's resident bytes before the run loaded anything, or None.
  """
  state, personal_all = run.initial_state()
  counted, host_only = resident(run, state, personal_all, baseline)
  phase_list = phases(run, state, personal_all, start=0)
  budget, source = plan_lib.default_budget()
  if budget_gb is not None:
    budget, source = int(budget_gb * plan_lib.GB), "configured"
  return plan_lib.Plan(jax.default_backend(), run.mesh.devices.size, tuple(counted),
                       tuple(phase_list), budget, source, tuple(host_only),
                       plan_lib.resident_set_bytes())


def check(run, baseline: int | None = None) -> plan_lib.Plan:
  """Makes the plan of `run`; prints it (process 0) if it fits, else raises ConfigError.

  The refusal is one line (the planned total, the budget, and each batch key to lower
  with the phase it drives); nothing is printed to stdout then.
  """
  start = time.perf_counter()
  plan = make_plan(run, run.c.memory_budget_gb, baseline)
  problem = plan.problem()
  if problem is not None:
    raise config_lib.ConfigError(problem)
  if jax.process_index() == 0:
    print(f"{plan.table()}\n  planned in {time.perf_counter() - start:.1f} s (the phases' "
          "compiles, which the run then reuses)", flush=True)
  return plan
