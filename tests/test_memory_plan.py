"""The memory plan: XLA's compiled figures, the run's phases at their real batches, the budget."""

import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clip_fixtures import fixture_dir
from fedprompt_jax import cli
from fedprompt_jax import config as config_lib
from fedprompt_jax import evaluate
from fedprompt_jax import memory_plan as plan_lib
from fedprompt_jax import run_plan
from fedprompt_jax import train
from fedprompt_jax.fed import mesh as mesh_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GB = plan_lib.GB
TINY = dict(checkpoint=fixture_dir("clip_tiny_a"), train_per_class_domain=2,
            test_per_class_domain=1, num_clients=4, clients_per_round=3, local_steps=2,
            batch_size=4, eval_examples=20, eval_batch_size=16, sanity_examples=12)


def tiny_config():
  c = cli.config_defaults(os.path.join(REPO, "configs", "fedvpt.py"))
  c.clip.checkpoint = TINY["checkpoint"]
  c.method.depth, c.method.num_tokens = 2, 8  # the fixture has 2 vision layers
  c.eval.check_zero_shot = False
  c.data.domains = ("photo", "sketch")
  c.data.train_per_class_domain = TINY["train_per_class_domain"]
  c.data.test_per_class_domain = TINY["test_per_class_domain"]
  c.fed.num_clients, c.fed.clients_per_round = TINY["num_clients"], TINY["clients_per_round"]
  c.fed.local_steps, c.fed.batch_size, c.fed.rounds = TINY["local_steps"], TINY["batch_size"], 1
  c.adv.eval_examples, c.adv.eval_batch_size = TINY["eval_examples"], TINY["eval_batch_size"]
  c.adv.sanity_examples = TINY["sanity_examples"]
  c.adv.sanity_attack = "pgd:linf:eps=16/255:steps=2"
  c.adv.eval = ("pgd:linf:eps=1/255:steps=2",)
  return c


def test_compiled_bytes_are_xla_figures_less_the_resident_arguments():
  x = jnp.ones((256, 128), jnp.float32)
  fn = jax.jit(lambda x: jnp.tanh(x @ x.T) @ x)
  stats = fn.lower(x).compile().memory_analysis()
  assert stats is not None and stats.temp_size_in_bytes >= 256 * 256 * 4  # tanh(x x^T)
  assert stats.argument_size_in_bytes == x.nbytes and stats.output_size_in_bytes == x.nbytes
  assert plan_lib.compiled_bytes(fn, (x,), resident=0) == (
      stats.temp_size_in_bytes + 2 * x.nbytes)
  assert plan_lib.compiled_bytes(fn, (x,), resident=x.nbytes) == (
      stats.temp_size_in_bytes + x.nbytes)
  assert plan_lib.tree_bytes({"a": x, "b": np.zeros(3, np.int8), "c": None}) == x.nbytes + 3


def _plan(phases, budget_gb, resident_gb=1.0):
  return plan_lib.Plan("cpu", 1, (("frozen", int(resident_gb * GB), ""),), tuple(phases),
                       int(budget_gb * GB), "configured")


def test_refusal_names_each_batch_key_that_drives_a_phase_over_the_budget():
  phases = [plan_lib.Phase("train round", "fed.batch_size", 32, 32, "", int(0.5 * GB)),
            plan_lib.Phase("evaluation", "eval.batch_size", 256, 256, "", int(1.5 * GB)),
            plan_lib.Phase("robust evaluation", "adv.eval_batch_size", 64, 64, "", int(3 * GB)),
            plan_lib.Phase("sanity attack", "adv.eval_batch_size", 64, 32, "", int(2 * GB))]
  plan = _plan(phases, budget_gb=2.0)
  assert plan.largest.name == "robust evaluation" and plan.peak == int(4 * GB)
  problem = plan.problem()
  # 1 GB of room: 3 GB x 16/64 = 0.75 GB fits, 32/64 does not; 1.5 GB x 128/256 fits.
  assert problem == (
      "memory plan 4.00 GB exceeds memory_budget_gb=2 (configured); lower adv.eval_batch_size "
      "(now 64; robust evaluation at 64 takes 3.00 GB, about 16 fits); lower eval.batch_size "
      "(now 256; evaluation at 256 takes 1.50 GB, about 128 fits)")
  wide = plan_lib.Phase("robust evaluation", "adv.eval_batch_size", 64, 2, "", int(3 * GB))
  assert "even 1 may not fit: try clip.remat=True" in _plan([wide], 2.0).problem()
  assert _plan(phases, budget_gb=4.0).problem() is None
  assert "the resident trees alone take 1.00 GB" in _plan(phases, 0.5).problem()
  table = plan.table()
  assert "robust evaluation" in table and "planned peak: 4.00 GB" in table
  blind = _plan([plan_lib.Phase("evaluation", "eval.batch_size", 8, 8, "", None)], 2.0)
  assert "not available on this backend" in blind.table() and blind.peak == int(1 * GB)


def test_budget_key_is_checked_and_may_change_on_resume():
  from fedprompt_jax import workdir as workdir_lib  # pylint: disable=import-outside-toplevel
  c = config_lib.default_config()
  assert c.memory_budget_gb is None
  for bad in (0.0, -1.0, float("inf")):
    c.memory_budget_gb = bad
    with pytest.raises(config_lib.ConfigError, match="memory_budget_gb="):
      config_lib.validate(c)
  assert {"memory_budget_gb", "adv.eval_batch_size"} <= set(workdir_lib.RESUMABLE_KEYS)
  budget, source = plan_lib.default_budget()
  assert source == "host memory" and budget == plan_lib.host_memory_bytes() > 0


@pytest.fixture(scope="module")
def tiny_run():
  return train.Run(tiny_config(), "/nonexistent")


def test_plan_of_a_tiny_run_lowers_each_phase_once_at_its_real_batch(tiny_run, caplog):
  run = tiny_run
  plan = run_plan.make_plan(run, budget_gb=100.0)
  names = [p.name for p in plan.phases]
  assert names == ["train round", "zero-shot evaluation", "evaluation",
                   "personalised evaluation", "robust evaluation", "sanity attack"]
  shapes = {p.name: p.shape for p in plan.phases}
  n_test = len(run.source.test)  # 96: 48 classes x 2 domains x 1
  assert shapes["evaluation"] == f"{evaluate.padded_size(n_test, 256)} images"
  assert shapes["robust evaluation"] == "16 images x 1 attack(s)"  # 20 examples, batch 16
  assert shapes["sanity attack"] == "12 images"  # its batch: min(16, 12 examples)
  assert shapes["train round"].startswith("3 of 8 client slots x 2 steps x 4 images")
  assert all(p.bytes > 0 for p in plan.phases)
  # A sharded round on 8 CPU devices counts every device's share of host memory.
  assert plan.resident[0] == ("frozen CLIP weights", plan_lib.tree_bytes(run.frozen) * 8,
                              "x 8 devices")
  assert plan.problem() is None and plan.peak < 1 * GB
  # The executables compiled for the plan are those the run then calls: no second compile.
  state, personal_all = run.initial_state()
  key = mesh_lib.replicate(run.mesh, jax.random.key_data(jax.random.key(0)))
  with jax.log_compiles(True), caplog.at_level(logging.WARNING):
    state, _ = run.round_fn(run.frozen_global, state, run.aux_global, key,
                            run.round_inputs(0, personal_all)[1])
    local = mesh_lib.local_copy(state)  # as Run.evaluate
    params = run.global_params(local, personal_all)
    evaluate.robust_report(run.robust, run.frozen, params, run.aux, local.extra,
                           run.global_client, run.source.test, 20, 16, jax.random.key(1),
                           run.sanity_robust, 12)
    evaluate.predict_split(run.predict_zeroshot, run.frozen, {}, run.zeroshot_aux, {}, {},
                           run.source.test, 256)
  compiled = {m.split("Compiling ", 1)[1].split(" ")[0] for m in caplog.messages
              if m.startswith("Compiling ")}
  # Only the last, partial attack batch (4 of 20 examples, padded to 8) is new.
  assert compiled - {"jit(convert_element_type)", "jit(_threefry_fold_in)"} == {"jit(robust)"}
  assert sum(m.startswith("Compiling jit(robust)") for m in caplog.messages) == 1


def test_a_plan_over_budget_is_one_line_naming_the_batch_key_to_lower(tiny_run, capsys):
  plan = run_plan.make_plan(tiny_run, budget_gb=100.0)
  largest = plan.largest
  budget = (plan.resident_bytes + largest.bytes // 2) / GB
  tiny_run.c.memory_budget_gb = budget
  try:
    with pytest.raises(config_lib.ConfigError) as err:
      run_plan.check(tiny_run)
  finally:
    tiny_run.c.memory_budget_gb = None
  message = str(err.value)
  assert "\n" not in message and message.startswith(f"memory plan {plan.peak / GB:.2f} GB "
                                                     f"exceeds memory_budget_gb={budget:.3g}")
  assert f"; lower {largest.batch_key} (now " in message, message
  assert capsys.readouterr().out == ""  # the table is printed only for a plan that fits
  run_plan.check(tiny_run)
  assert "planned peak: " in capsys.readouterr().out


def test_phase_times_sum_until_reported(capsys):
  from fedprompt_jax import phase_times  # pylint: disable=import-outside-toplevel
  times = phase_times.PhaseTimes()
  for _ in range(3):
    with times("round"):
      pass
  with times("evaluation"):
    pass
  assert times.line("round 3").startswith("seconds (round 3): round 0.0 (3x), evaluation 0.0")
  times.report("round 3")
  assert capsys.readouterr().out.startswith("seconds (round 3): round ")
  times.report("round 4")  # nothing ran since: nothing printed
  assert capsys.readouterr().out == ""


def test_the_train_round_counts_the_round_inputs_held_ahead(tiny_run):
  run = tiny_run
  state, personal_all = run.initial_state()
  inputs = plan_lib.tree_bytes(run.round_inputs(0, personal_all)[1])  # one device's share
  train_round = {}
  try:
    for depth in (0, 1, 2):
      run.c.fed.prefetch = depth
      train_round[depth] = run_plan.phases(run, state, personal_all, 0)[0]
  finally:
    run.c.fed.prefetch = 1
  assert train_round[0].shape == "3 of 8 client slots x 2 steps x 4 images"
  assert train_round[2].shape.endswith(" (+ 3 rounds of inputs held ahead, fed.prefetch)")
  # 1 (2) built ahead and 1 dispatched ahead, on each of the 8 CPU devices' shares.
  for depth, held in ((1, 2), (2, 3)):
    assert train_round[depth].bytes - train_round[0].bytes == held * inputs * 8 > 0
