"""train_and_evaluate(config, workdir): the one readable loop of a federated run.

Order of work: validate the config (nothing is written before), load CLIP and
data, partition, prepare the method, check zero-shot against chance, then R
rounds of [sample K clients -> build their batches on the host -> one jitted
round], evaluating and checkpointing every `eval.every` rounds; with fed.prefetch
the next rounds' batches are built on a thread while a round runs. A workdir with
a checkpoint resumes from it and replays exactly.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from fedprompt_jax import atomic, checkpoint, eval_subset, evaluate
from fedprompt_jax import config as config_lib
from fedprompt_jax import feature_cache
from fedprompt_jax import finite
from fedprompt_jax import memory_plan
from fedprompt_jax import metrics as metrics_lib
from fedprompt_jax import phase_times
from fedprompt_jax import plots
from fedprompt_jax import run_files
from fedprompt_jax import run_plan
from fedprompt_jax import workdir as workdir_lib
from fedprompt_jax.data import attributes as attributes_lib
from fedprompt_jax.data import partition as partition_lib
from fedprompt_jax.data.dataset import split_base_novel, subset
from fedprompt_jax.data.federated import round_batches, round_local_steps
from fedprompt_jax.data.source import load_source
from fedprompt_jax.data.transforms import Preprocess
from fedprompt_jax.fed import mesh as mesh_lib
from fedprompt_jax.fed import prefetch, sampling, server
from fedprompt_jax.fed.client import ClientBatches
from fedprompt_jax.fed.round import RoundInputs, ServerState, init_server_state, make_round_fn
from fedprompt_jax.attacks import make_attack
from fedprompt_jax.methods import base, make_method
from fedprompt_jax.methods.adversarial import adversarial
from fedprompt_jax.methods.label_space import local_label_space
from fedprompt_jax.models.hf_loader import load_clip
from fedprompt_jax.models.tokenizer import load_tokenizer
from fedprompt_jax.privacy import settings as dp_settings

Tree = Any


def default_chunk(backend: str) -> int | None:
  """Clients vmapped at once per device: measured by benchmarks/round_throughput.py.

  On CPU a scan over clients (chunk 1) beats a full vmap; accelerators gain from
  large vmapped chunks (None = all clients of the device at once).
  """
  return 1 if backend == "cpu" else None


def client_optimizer(c: ml_collections.ConfigDict) -> optax.GradientTransformation:
  if c.optim.name == "sgd":
    tx = optax.sgd(c.optim.lr, momentum=c.optim.momentum or None)
  else:
    tx = optax.adam(c.optim.lr)
  if c.optim.weight_decay:
    tx = optax.chain(optax.add_decayed_weights(c.optim.weight_decay), tx)
  return tx


def round_lr_schedule(c: ml_collections.ConfigDict):
  """Round index (0-based) -> factor on the clients' learning rate; None when constant."""
  if c.optim.schedule == "constant":
    return None
  return optax.cosine_decay_schedule(1.0, c.fed.rounds)


def load_data(c: ml_collections.ConfigDict, image_size: int):
  """The run's data source, its images at data.storage_size (None: `image_size`, the model's)."""
  if c.data.storage_size is not None:
    image_size = c.data.storage_size
  if c.data.source == "shapes":
    kwargs = dict(num_train_per_class_domain=c.data.train_per_class_domain,
                  num_test_per_class_domain=c.data.test_per_class_domain, seed=c.seed)
    if c.data.domains:
      kwargs["domains"] = tuple(c.data.domains)
  elif c.data.source == "digits":
    kwargs = dict(seed=c.seed)
  else:
    kwargs = dict(name=c.data.tfds_name, data_dir=os.path.expanduser(c.data.data_dir),
                  max_examples=c.data.max_examples, train_split=c.data.tfds_train_split,
                  test_split=c.data.tfds_test_split,
                  domain_configs=tuple(c.data.tfds_domain_configs) or None,
                  storage=c.data.storage)
  src = load_source(c.data.source, image_size=image_size, **kwargs)
  return attributes_lib.with_attributes(src, c.data.attributes_file)


def make_partition(c: ml_collections.ConfigDict, source):
  total = c.fed.num_clients + c.fed.new_clients
  if total > len(source.train):
    new = f" + fed.new_clients={c.fed.new_clients}" if c.fed.new_clients else ""
    raise config_lib.ConfigError(f"fed.num_clients={c.fed.num_clients}{new} exceeds the "
                                 f"{len(source.train)} training examples")
  return partition_lib.make_partition(
      source, scheme=c.fed.partition, num_clients=total,
      seed=c.seed,
      alpha=c.fed.alpha, classes_per_client=c.fed.classes_per_client,
      shards_per_client=c.fed.shards_per_client, domains_per_client=c.fed.domains_per_client,
      shots=c.fed.shots, min_size=c.fed.min_size, test_fraction=c.fed.test_fraction)


def wrap_method(c: ml_collections.ConfigDict, method: base.PromptMethod) -> base.PromptMethod:
  """The registered method with the run's label space, adversarial training and local-only."""
  if c.fed.label_space == "local":  # before `adversarial`: the attack sees the masked logits
    method = local_label_space(method)
  if c.adv.train != "none":
    method = adversarial(method, make_attack(c.adv.train_attack), c.adv.train,
                         c.adv.trades_beta, c.adv.trades_any_inner_attack)
  return base.local_only(method) if c.fed.local_only else method


def stack_tree(tree: Tree, n: int) -> Tree:
  """[...] leaves -> [n, ...] numpy copies (per-client state kept on the host)."""
  return jax.tree_util.tree_map(lambda x: np.repeat(np.asarray(x)[None], n, axis=0), tree)


def take(tree: Tree, rows: np.ndarray) -> Tree:
  return jax.tree_util.tree_map(lambda x: x[rows], tree)


class RoundData(NamedTuple):
  """A round's inputs but for the personal leaves (they depend on the previous round)."""
  ids: np.ndarray      # [K] sampled client ids
  rows: np.ndarray     # [K'] ids padded to the mesh (padding rows repeat client 0)
  inputs: RoundInputs  # sharded over 'clients'; `personal` is {}


class Run:
  """Everything a run builds before its first round (no device state of its own)."""

  def __init__(self, c: ml_collections.ConfigDict, workdir: str):
    self.c, self.workdir = c, workdir
    dtype = jnp.bfloat16 if c.clip.dtype == "bfloat16" else jnp.float32
    self.model, frozen, ckpt_dir = load_clip(c.clip.checkpoint, dtype=dtype, remat=c.clip.remat)
    self.tokenizer = load_tokenizer(ckpt_dir, self.model.config.text.max_position_embeddings)
    self.source = load_data(c, self.model.config.vision.image_size)
    # Stored images -> the model's input, inside every jitted function that takes images.
    self.preprocess = Preprocess(self.model.config.vision.image_size, c.data.augment,
                                 tuple(c.data.crop_scale))
    self.novel = None
    if c.data.base_novel:
      self.source, self.novel = split_base_novel(self.source)
    self.partition = make_partition(c, self.source)
    method = make_method(c.method.name, self.model, c.method)
    use_cache, line = feature_cache.decide(c, method)
    if line and jax.process_index() == 0:
      print(line, flush=True)
    self.method = wrap_method(c, method)  # on images: robust evaluation, transfer
    # Clean training and evaluation: from frozen features computed once, where the method allows.
    self.train_method = feature_cache.on_features(self.method) if use_cache else self.method
    self.mesh = mesh_lib.make_mesh()
    # `frozen_global`/`aux_global` are replicated over the mesh for the round;
    # `frozen`/`aux` are process-local (host-driven evaluation and preparation), and
    # `frozen` is the first local device's copy of `frozen_global`, not a second one.
    self.frozen_global = mesh_lib.replicate(self.mesh, frozen)
    self.frozen = frozen = mesh_lib.local_copy(self.frozen_global)
    ctx = base.Context(self.model, frozen, self.tokenizer, self.source.class_names,
                       self.source.attributes)
    self.aux = self.method.prepare(ctx)
    self.zeroshot = make_method("zeroshot", self.model, c.method)
    self.zeroshot_aux = self.zeroshot.prepare(ctx)
    self.predict_zeroshot = evaluate.make_predict(self.zeroshot, self.preprocess)
    if self.novel is not None:
      novel_ctx = base.Context(self.model, frozen, self.tokenizer, self.novel.class_names,
                               self.novel.attributes)
      self.novel_aux = self.method.prepare(novel_ctx)
      self.zeroshot_novel_aux = self.zeroshot.prepare(novel_ctx)
    self.aux_global = mesh_lib.replicate(self.mesh, self.aux)
    self.chunk = default_chunk(jax.default_backend()) if c.fed.chunk == -1 else c.fed.chunk
    self.client_tx = client_optimizer(c)
    self.server_tx = server.make_server_optimizer(c.fed.server_optimizer, c.fed.server_lr)
    self.cache = (feature_cache.FeatureCache(method, frozen, c.eval.batch_size,
                                             verbose=jax.process_index() == 0,
                                             preprocess=self.preprocess)
                  if use_cache else None)
    self.round_fn = make_round_fn(self.train_method, self.client_tx, self.server_tx, self.mesh,
                                  chunk=self.chunk, lr_schedule=round_lr_schedule(c),
                                  dp=dp_settings.spec(c), preprocess=self.preprocess)
    self.accountant = dp_settings.accountant(c)
    pre = self.preprocess
    self.predict = evaluate.make_predict(self.method, pre)  # on images (transfer to other data)
    self.clean_predict = evaluate.make_predict(self.train_method, pre)  # with `inputs_of`
    self.predict_clients = evaluate.make_personalized_predict(self.train_method, pre)
    self.robust = self.make_robust([make_attack(a) for a in c.adv.eval])
    self.sanity_robust = (self.make_robust([make_attack(c.adv.sanity_attack)])
                          if c.adv.sanity_attack else None)
    hist = self.partition.label_histograms(self.source.train.labels).astype(np.float32)
    self.clients = jax.tree_util.tree_map(
        np.asarray, jax.vmap(self.method.init_client)(jnp.asarray(hist)))
    uniform = jnp.full((self.source.num_classes,), 1.0, jnp.float32)
    self.global_client = self.method.init_client(uniform)
    self.times = phase_times.PhaseTimes()

  def make_robust(self, attacks) -> evaluate.Robust:
    """The robust evaluation of the run's method under `attacks`, on its stored images."""
    return evaluate.make_robust(self.method, attacks, self.preprocess)

  def inputs_of(self, split, name: str) -> np.ndarray | None:
    """[N, F] cached frozen features of `split` for `train_method`, or None: its images."""
    return None if self.cache is None else self.cache.features(split, name)

  def initial_state(self) -> tuple[ServerState, Tree]:
    params = self.method.init(jax.random.key(self.c.seed), self.aux)
    shared, personal = base.split_params(self.method, params)
    state = init_server_state(self.method, self.server_tx, shared, self.aux)
    state = mesh_lib.replicate(self.mesh, state)  # restores keep this placement
    return state, stack_tree(personal, self.partition.num_clients)

  def round_data(self, round_index: int) -> RoundData:
    """Round `round_index`'s sampled ids and its inputs without the personal leaves, sharded.

    Depends only on (seed, round, partition), not on the training state, so it may be
    built ahead (fed/prefetch.py); each process builds only its own rows.
    """
    c = self.c
    ids = sampling.sample_clients(c.fed.num_clients, c.fed.clients_per_round, c.seed, round_index)
    padded = mesh_lib.padded_size(len(ids), self.mesh, self.chunk or 1)
    mine = set(mesh_lib.local_rows(self.mesh, padded).tolist())
    empty = np.zeros((0,), np.int64)
    steps = c.fed.local_steps
    if c.fed.local_epochs is not None:  # From all sampled clients: equal on every process.
      steps = round_local_steps(self.partition.train_sizes()[ids], c.fed.local_epochs,
                                c.fed.batch_size, c.fed.max_local_steps)
    b = round_batches(self.source.train,
                      [self.partition.train_of(int(k)) if i in mine else empty
                       for i, k in enumerate(ids)], ids,
                      steps=steps, batch=c.fed.batch_size, seed=c.seed,
                      round_index=round_index, padded_k=padded, epochs=c.fed.local_epochs,
                      inputs=self.inputs_of(self.source.train, "train"))
    weights = b["num_examples"].astype(np.float32)
    if c.fed.weighting == "uniform":
      weights = (weights > 0).astype(np.float32)
    rows = np.concatenate([ids, np.zeros(padded - len(ids), ids.dtype)])
    inputs = RoundInputs(ClientBatches(b["pixels"], b["labels"], b["mask"]), weights,
                         b["client_ids"], {}, take(self.clients, rows))
    return RoundData(ids, rows, mesh_lib.shard_clients(self.mesh, inputs))

  def with_personal(self, data: RoundData, personal_all: Tree) -> RoundInputs:
    """`data`'s inputs with its clients' personal leaves from the host copy `personal_all`."""
    return data.inputs._replace(
        personal=mesh_lib.shard_clients(self.mesh, take(personal_all, data.rows)))

  def round_inputs(self, round_index: int, personal_all: Tree):
    """The sampled ids and the round's sharded inputs; each process builds only its own rows."""
    data = self.round_data(round_index)
    return data.ids, self.with_personal(data, personal_all)

  def last_round(self) -> int:
    """fed.rounds, or fewer: the last round within dp.target_epsilon."""
    c = self.c
    if self.accountant is None or c.dp.target_epsilon is None:
      return c.fed.rounds
    return self.accountant.rounds_within(c.dp.target_epsilon, c.fed.rounds)

  def privacy_record(self, rounds: int) -> dict:
    """{"dp_epsilon", "dp_delta"} spent after `rounds` rounds; {} without DP."""
    if self.accountant is None:
      return {}
    return {"dp_epsilon": self.accountant.epsilon(rounds), "dp_delta": self.accountant.delta}

  def budget_line(self, last: int, start: int) -> str | None:
    """The one line saying that dp.target_epsilon stopped the run after round `last`.

    `start` is the round the run resumed from: a budget lowered on resume below what its
    checkpoint already spent stops it there.
    """
    c = self.c
    if last >= c.fed.rounds:
      return None
    if start > last:
      return (f"dp.target_epsilon={c.dp.target_epsilon:g} is below the epsilon "
              f"{self.accountant.epsilon(start):.3f} that the checkpoint of round {start} "
              "already spent; nothing more trained")
    spent, next_ = self.accountant.epsilon(last), self.accountant.epsilon(last + 1)
    return (f"dp.target_epsilon={c.dp.target_epsilon:g} reached: stopped after round {last} of "
            f"fed.rounds={c.fed.rounds} (epsilon {spent:.3f} at delta {self.accountant.delta:.3g};"
            f" round {last + 1} would make it {next_:.3f}); the checkpoint of round {last} is kept")

  def global_params(self, state: ServerState, personal_all: Tree) -> Tree:
    """The global model's parameters: shared leaves (and client 0's personal ones, if any)."""
    return base.merge_params(state.shared, take(personal_all, 0) if
                             jax.tree_util.tree_leaves(personal_all) else {})

  def robust_report(self, robust, params: Tree, extra: Tree, num_examples: int,
                    batch_size: int) -> dict:
    """Robust accuracy of the global model (`robust` from evaluate.make_robust) on
    `num_examples` global test examples (`adv.eval_subset`: the first ones or a stratified
    sample), with the run's evaluation key, and the gradient-masking checks with
    `adv.sanity_attack` on the first `adv.sanity_examples` of those."""
    c = self.c
    rows = eval_subset.robust_rows(self.source.test, num_examples, c.adv.eval_subset,
                                   c.adv.eval_subset_seed)
    # Row i of the subset is its i-th attacked example ("first": row i of the test split), so
    # the per-example attack keys, which fold in i, are those of the first-rows evaluation.
    return evaluate.robust_report(robust, self.frozen, params, self.aux, extra,
                                  self.global_client, subset(self.source.test, rows), len(rows),
                                  batch_size, jax.random.key(self.c.seed + 1),
                                  self.sanity_robust, self.c.adv.sanity_examples)

  def restore_latest(self, ckpt: checkpoint.Checkpointer, set_aside: bool = True):
    """(round, server state, host personal state) of the newest intact checkpoint, or None.

    Each damaged newer checkpoint is reported on stderr in one line (and moved to
    ckpt_damaged/ when `set_aside`); checkpoint.DamagedCheckpointsError if none is intact.
    """
    if ckpt.latest_round() is None:
      return None
    state, personal_all = self.initial_state()
    restored = ckpt.restore_newest_intact({"server": state, "personal": personal_all},
                                          set_aside=set_aside)
    for d in restored.damaged:
      moved = f"; moved to {d.moved_to}" if d.moved_to else ""
      print(f"warning: the checkpoint of round {d.round} in {ckpt.directory} is damaged "
            f"({d.reason}){moved}; using the newest intact one, round {restored.round}",
            file=sys.stderr, flush=True)
    return (restored.round, restored.tree["server"],
            jax.tree_util.tree_map(np.asarray, restored.tree["personal"]))

  def evaluate(self, state: ServerState, personal_all: Tree, final: bool) -> dict:
    """Global (clean, and robust unless adv.eval_rounds='final' and not `final`) and
    personalised metrics of the state."""
    c = self.c
    state = mesh_lib.local_copy(state)
    params = self.global_params(state, personal_all)
    out = {}
    if not c.fed.local_only:
      with self.times("evaluation"):
        preds = evaluate.predict_split(self.clean_predict, self.frozen, params, self.aux,
                                       state.extra, self.global_client, self.source.test,
                                       c.eval.batch_size, self.inputs_of(self.source.test, "test"))
      out.update(evaluate.accuracy_report(preds, self.source.test, self.source.domain_names,
                                          "global_acc"))
      if self.novel is not None:
        preds = evaluate.predict_split(self.clean_predict, self.frozen, params, self.novel_aux,
                                       state.extra, self.global_client, self.novel.test,
                                       c.eval.batch_size,
                                       self.inputs_of(self.novel.test, "novel test"))
        out.update(evaluate.accuracy_report(preds, self.novel.test, self.novel.domain_names,
                                            "novel_acc"))
        b, n = out["global_acc"], out["novel_acc"]
        out["base_novel_hm"] = 2 * b * n / (b + n) if b + n > 0 else 0.0
      if c.adv.eval and (final or c.adv.eval_rounds == "every"):
        with self.times("robust evaluation"):
          out.update(self.robust_report(self.robust, params, state.extra, c.adv.eval_examples,
                                        c.adv.eval_batch_size))
    if c.eval.personalized:
      per_call = max(1, c.eval.batch_size // max(1, int(self.partition.test_sizes().max())))
      with self.times("personalised evaluation"):
        acc = evaluate.personalized_accuracy(
            self.predict_clients, self.frozen, state.shared, personal_all, self.aux, state.extra,
            self.clients, self.source.test,
            [self.partition.test_of(k) for k in range(self.partition.num_clients)],
            min(per_call, self.partition.num_clients), self.inputs_of(self.source.test, "test"))
      trained = c.fed.num_clients  # clients c.fed.num_clients.. never train: "new" clients
      out.update(evaluate.client_summary(acc[:trained]))
      if c.fed.new_clients:
        out.update(evaluate.client_summary(acc[trained:], prefix="new_client_acc"))
    return out

  def zero_shot_accuracy(self) -> dict:
    zs = self.predict_zeroshot
    with self.times("zero-shot evaluation"):
      preds = evaluate.predict_split(zs, self.frozen, {}, self.zeroshot_aux, {}, {},
                                     self.source.test, self.c.eval.batch_size)
    out = evaluate.accuracy_report(preds, self.source.test, self.source.domain_names,
                                   "zeroshot_acc")
    if self.novel is not None:
      preds = evaluate.predict_split(zs, self.frozen, {}, self.zeroshot_novel_aux, {}, {},
                                     self.novel.test, self.c.eval.batch_size)
      out.update(evaluate.accuracy_report(preds, self.novel.test, None, "zeroshot_novel_acc"))
    return out


class _Dispatched(NamedTuple):
  """A round sent to the devices whose outputs the host has not read yet."""
  done: int                  # 1-based index of the round
  ids: np.ndarray            # [K] its clients
  personal: Tree             # [K', ...] their personal leaves after it, on the devices
  check: finite.RoundCheck   # its loss and finiteness flags, on the devices


def train_rounds(run: Run, ckpt: checkpoint.Checkpointer, writer: metrics_lib.MetricsWriter,
                 zs: dict, state: ServerState, personal_all: Tree, start: int) -> None:
  """Rounds start+1..R, evaluated, written and checkpointed every `eval.every` rounds.

  A round with a non-finite loss or update raises finite.DivergenceError, naming the
  first such round, before its record or checkpoint is written. With dp.target_epsilon
  the run ends (evaluated and checkpointed) after the last round whose epsilon is within
  it.

  With fed.prefetch > 0 the host stays ahead of the devices: a thread builds the next
  rounds' inputs (fed/prefetch.py) while a round runs, and round r's loss and
  finiteness flags are read back only after round r+1 is dispatched (an evaluation reads
  its own round at once). Clients with personal leaves need the previous round's on the
  host first, so they get the prefetched batches but no dispatch ahead. Results do not
  depend on fed.prefetch: the same computations run in the same order on the devices.
  """
  c = run.c
  key = mesh_lib.replicate(run.mesh, jax.random.key_data(jax.random.key(c.seed)))
  t0 = time.time()
  last = run.last_round()
  end = last if run.method.trains else start
  has_personal = bool(jax.tree_util.tree_leaves(personal_all))
  ahead = prefetch.dispatch_ahead(c.fed.prefetch, has_personal)  # dispatched, not read back
  if start < end:
    run.inputs_of(run.source.train, "train")  # fills the feature cache here, not on the thread
  pending: list[_Dispatched] = []

  def read_back() -> float:
    """Checks the oldest dispatched round and brings its personal leaves to the host."""
    d = pending.pop(0)
    loss = finite.check_round(d.done, d.check)
    for leaf_all, leaf_new in zip(jax.tree_util.tree_leaves(personal_all),
                                  jax.tree_util.tree_leaves(d.personal)):
      leaf_all[d.ids] = mesh_lib.to_host(leaf_new)[:len(d.ids)]
    writer.round_done(d.done, loss)
    return loss

  with prefetch.Prefetcher(run.round_data, range(start, end), c.fed.prefetch) as rounds:
    for r in range(start, end):
      done = r + 1
      evaluated = done % c.eval.every == 0 or done == last
      with run.times("round"):
        with run.times("round input wait"):
          data = rounds.next()
        inputs = run.with_personal(data, personal_all)
        state, out = run.round_fn(run.frozen_global, state, run.aux_global, key, inputs)
        new_personal = jax.tree_util.tree_map(lambda x, n=len(data.ids): x[:n], out.personal)
        pending.append(_Dispatched(done, data.ids, out.personal, finite.start_check(
            out.loss, {"server": state, "personal": new_personal})))
        while len(pending) > (0 if evaluated else ahead):
          train_loss = read_back()
      if evaluated:
        record = dict(zs, train_loss=train_loss,
                      **run.evaluate(state, personal_all, done == last),
                      **run.privacy_record(done))
        record["seconds_per_round"] = (time.time() - t0) / (done - start)
        writer.write(done, record)
        ckpt.save(done, {"server": state, "personal": personal_all})
        run.times.report(f"round {done}")
  line = run.budget_line(last, start) if run.method.trains else None
  if line and jax.process_index() == 0:
    print(line, flush=True)


def train_and_evaluate(c: ml_collections.ConfigDict, workdir: str,
                       defaults: ml_collections.ConfigDict | None = None) -> list[dict]:
  """Runs (or resumes) the experiment; returns the metrics records.

  Args:
    c: the experiment config.
    workdir: the output directory; one with a checkpoint is resumed.
    defaults: the config file's own defaults (`get_config()`): keys that an older
      config.json in `workdir` lacks count as unchanged when `c` holds these values.
  """
  baseline = memory_plan.resident_set_bytes()  # the interpreter and its libraries
  config_lib.validate(c)
  workdir_lib.check_writable(workdir)
  workdir_lib.check_same_config(c, workdir, defaults)
  checkpoint.check_not_all_damaged(workdir)
  # One process only: hosts that do not share the workdir must all take the same path. A damaged
  # newest checkpoint is repaired by the real path (it resumes from the newest intact one).
  done = workdir_lib.finished_records(c, workdir, defaults) if jax.process_count() == 1 else None
  if done is not None and checkpoint.newest_intact_at(workdir, done[-1]["round"]):
    # Nothing left to run: no model, data or compile for it.
    print(f"{workdir}: finished with this config (summary.txt is that of metrics.jsonl); "
          "nothing to run", flush=True)
    print(metrics_lib.summary_table(done), flush=True)
    return done
  run = Run(c, workdir)
  run_plan.check(run, baseline)
  run_files.write_run_files(c, run.partition, run.source, workdir)

  zs = run.zero_shot_accuracy()
  chance = 1.0 / run.source.num_classes
  if c.eval.check_zero_shot and zs["zeroshot_acc"] <= chance:
    raise config_lib.ConfigError(
        f"zero-shot accuracy {zs['zeroshot_acc']:.3f} is at or below chance {chance:.3f} on "
        f"{run.source.name}: the class names, templates or preprocessing are wrong")

  ckpt = checkpoint.Checkpointer(workdir)
  start = 0
  restored = run.restore_latest(ckpt)
  if restored is None:
    state, personal_all = run.initial_state()
  else:
    start, state, personal_all = restored
    print(f"resumed from {ckpt.directory} at round {start}", flush=True)
  chief = jax.process_index() == 0
  writer = metrics_lib.MetricsWriter(workdir, c.fed.rounds, start_round=start, is_chief=chief)
  try:
    if start == 0:
      final = not run.method.trains or run.last_round() == 0
      writer.write(0, dict(zs, **run.evaluate(state, personal_all, final),
                           **run.privacy_record(0)))
    run.times.report("round 0" if start == 0 else f"resumed at round {start}")
    train_rounds(run, ckpt, writer, zs, state, personal_all, start)
  except finite.DivergenceError as e:
    latest = ckpt.latest_round()
    kept = f" and the newest checkpoint (round {latest})" if latest is not None else ""
    raise finite.DivergenceError(
        f"{e}; stopped before evaluating or saving it: metrics.jsonl{kept} are as they were; "
        f"lower optim.lr={c.optim.lr:g} or check the data") from None
  finally:
    ckpt.close()
    records = writer.records()
    writer.close()
  if chief:
    plots.save_curves(records, os.path.join(workdir, "curves.png"))
    table = metrics_lib.summary_table(records)
    atomic.write_text(os.path.join(workdir, workdir_lib.SUMMARY_FILE), table + "\n")
    print(table, flush=True)
  return records
