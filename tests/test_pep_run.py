"""PEP-FedPT end to end through train_and_evaluate: the training loop, the prototypes and the
personalised evaluation, checked against independent recomputations from the checkpoints."""

import os
import sys

import jax
import numpy as np

from fedprompt_jax import checkpoint, train
from fedprompt_jax.data.federated import round_batches
from fedprompt_jax.fed import mesh as mesh_lib
from fedprompt_jax.fed import sampling

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_small_pep_run_prototypes_and_personalised_accuracy(tmp_path):
  sys.path.insert(0, REPO)
  from configs import pep  # pylint: disable=import-outside-toplevel
  c = pep.get_config("fed.rounds=2,eval.every=1,data.train_per_class_domain=2,"
                     "data.test_per_class_domain=1,fed.num_clients=8,fed.new_clients=2,"
                     "fed.clients_per_round=3,fed.local_steps=2,fed.batch_size=8,"
                     "eval.check_zero_shot=False,eval.batch_size=48")
  assert c.clip.checkpoint == "embedded"  # pretrained on the shapes world: accuracy above 0
  c.data.domains = ("photo",)  # 96 training examples
  c.adv.eval = ()  # PEP's attack gradient is checked in test_pep.py
  assert c.method.prototype_features == "received"
  workdir = str(tmp_path / "run")
  records = train.train_and_evaluate(c, workdir)
  assert [r["round"] for r in records] == [0, 1, 2]
  last = records[-1]

  run = train.Run(c, workdir)
  ckpt = checkpoint.Checkpointer(workdir)
  like = dict(zip(("server", "personal"), run.initial_state()))
  before = mesh_lib.local_copy(ckpt.restore(1, like)["server"])  # replicated -> process-local
  after = mesh_lib.local_copy(ckpt.restore(2, like)["server"])
  ckpt.close()
  model, frozen, method = run.model, run.frozen, run.method

  # Prototypes: the last round's clients' CLS features with the shared prompt they received
  # (the global one after round 1), averaged per class by hand; other classes keep theirs.
  ids = sampling.sample_clients(c.fed.num_clients, c.fed.clients_per_round, c.seed, 1)
  b = round_batches(run.source.train, [run.partition.train_of(int(k)) for k in ids], ids,
                    steps=c.fed.local_steps, batch=c.fed.batch_size, seed=c.seed, round_index=1)
  x = b["pixels"][b["mask"]].astype(np.float32) / 255.0
  labels = b["labels"][b["mask"]]
  z = np.asarray(model.encode_image(frozen, x, shallow=before.shared["shared"]).pooled)
  num_classes = run.source.num_classes
  expected = np.array(before.extra["prototypes"])
  for k in np.unique(labels):
    expected[k] = z[labels == k].mean(0)
  assert 0 < len(np.unique(labels)) < num_classes  # some classes keep their old prototype
  np.testing.assert_allclose(after.extra["prototypes"], expected, atol=1e-5)
  np.testing.assert_array_equal(after.extra["has_proto"],
                                np.asarray(before.extra["has_proto"]) |
                                np.isin(np.arange(num_classes), labels))

  # Personalised accuracy: each client's own test examples, its prior (smoothed label
  # histogram) written by hand, one forward pass per client (padded to one shape).
  forward = jax.jit(lambda x, log_prior: method.logits(
      frozen, after.shared, run.aux, after.extra, {"log_prior": log_prior}, x, None))
  num_all = c.fed.num_clients + c.fed.new_clients
  pad = max(len(run.partition.test_of(k)) for k in range(num_all))
  acc = []
  for k in range(num_all):
    hist = np.bincount(run.source.train.labels[run.partition.train_of(k)], minlength=num_classes)
    prior = (hist + c.method.prior_smoothing) / (hist + c.method.prior_smoothing).sum()
    test = run.partition.test_of(k)
    x = np.zeros((pad,) + run.source.test.images.shape[1:], np.float32)
    x[:len(test)] = run.source.test.images[test] / 255.0
    logits = np.asarray(forward(x, np.log(prior).astype(np.float32)))[:len(test)]
    acc.append(float(np.mean(np.argmax(logits, -1) == run.source.test.labels[test])))
  assert max(acc) > 0  # the check below can tell a wrong prior or client apart
  trained, new = np.array(acc[:c.fed.num_clients]), np.array(acc[c.fed.num_clients:])
  assert last["pers_acc_mean"] == np.float64(trained.mean()).item()
  assert abs(last["pers_acc_worst10"] - np.sort(trained)[0]) < 1e-12  # ceil(0.8) = 1 client
  assert abs(last["new_client_acc_mean"] - new.mean()) < 1e-12
  assert abs(last["new_client_acc_worst10"] - new.min()) < 1e-12
