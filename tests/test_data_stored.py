"""tfds sets read per batch (data.storage='array_record'): the writer, the loader, the config
key, and a federated run that equals the in-memory run of the same files."""

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")
pytest.importorskip("array_record")

from clip_fixtures import fixture_dir  # noqa: E402
from fedprompt_jax import config as config_lib  # noqa: E402
from fedprompt_jax import train  # noqa: E402
from fedprompt_jax.data import dataset, source, tfds_source, tfds_writer  # noqa: E402
from fedprompt_jax.data.stored_images import StoredImages  # noqa: E402

SIDE = 32  # the tiny CLIP's image size


@pytest.fixture(scope="module")
def shapes_src():
  return source.load_source("shapes", image_size=SIDE, num_train_per_class_domain=2,
                            num_test_per_class_domain=1, seed=0)


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory, shapes_src):
  data_dir = tmp_path_factory.mktemp("tfds")
  for encoding in tfds_writer.ENCODINGS:
    tfds_writer.write_source(shapes_src, data_dir, f"shapes_{encoding}", encoding=encoding)
  return str(data_dir)


@pytest.mark.parametrize("encoding", tfds_writer.ENCODINGS)
def test_written_set_reads_back_row_for_row_in_both_storages(shapes_dir, shapes_src, encoding):
  for storage in tfds_source.STORAGES:
    ds = tfds_source.load_tfds(f"shapes_{encoding}", data_dir=shapes_dir, image_size=SIDE,
                               domain_key="domain", storage=storage)
    assert ds.class_names == shapes_src.class_names
    assert ds.domain_names == shapes_src.domain_names
    for split, expected in ((ds.train, shapes_src.train), (ds.test, shapes_src.test)):
      assert isinstance(split.images, StoredImages) == (storage == "array_record")
      np.testing.assert_array_equal(split.images[np.arange(len(split))], expected.images)
      np.testing.assert_array_equal(split.labels, expected.labels)
      np.testing.assert_array_equal(split.domains, expected.domains)


def test_stored_images_are_resized_and_cut_as_in_memory(shapes_dir):
  kwargs = dict(data_dir=shapes_dir, image_size=20, max_examples=7)
  memory = tfds_source.load_tfds("shapes_png", **kwargs)
  stored = tfds_source.load_tfds("shapes_png", storage="array_record", **kwargs)
  assert stored.train.images.shape == memory.train.images.shape == (7, 20, 20, 3)
  np.testing.assert_array_equal(stored.train.images[::-1], memory.train.images[::-1])
  np.testing.assert_array_equal(stored.test.labels, memory.test.labels)
  with pytest.raises(ValueError, match="storage='disk' is invalid; valid: memory, array_record"):
    tfds_source.load_tfds("shapes_png", storage="disk", **kwargs)


def test_domain_configs_concatenate_stored_parts(tmp_path, shapes_src):
  """One builder config per domain (as tfds DomainNet): the stored parts are laid end to end."""
  for d, name in enumerate(shapes_src.domain_names[:2]):
    part = source.DataSource("part", shapes_src.class_names,
                             *(dataset.subset(s, s.domains == d) for s in
                               (shapes_src.train, shapes_src.test)), shapes_src.domain_names)
    tfds_writer.write_source(part, tmp_path, "by_domain", config=name)
  kwargs = dict(data_dir=tmp_path, image_size=SIDE, domain_configs=shapes_src.domain_names[:2])
  memory = tfds_source.load_tfds("by_domain", **kwargs)
  stored = tfds_source.load_tfds("by_domain", storage="array_record", **kwargs)
  rows = np.array([len(stored.train) - 1, 0, 5, 5, len(stored.train) // 2])
  assert stored.domain_names == memory.domain_names == ("photo", "sketch")
  np.testing.assert_array_equal(stored.train.images[rows], memory.train.images[rows])
  np.testing.assert_array_equal(stored.train.domains, memory.train.domains)
  np.testing.assert_array_equal(stored.train.labels, memory.train.labels)
  assert set(stored.train.domains) == {0, 1}


def test_writer_rejects_bad_input(tmp_path):
  with pytest.raises(ValueError, match="encoding='jpeg' is invalid"):
    tfds_writer.write(tmp_path, "bad", ("a",), {}, 4, encoding="jpeg")
  with pytest.raises(ValueError, match=r"expected a uint8 \(4, 4, 3\) image"):
    tfds_writer.write(tmp_path, "bad", ("a",), {"train": (1, lambda i: (
        np.zeros((4, 5, 3), np.uint8), 0, None))}, 4)


def test_host_paths_gather_the_same_rows(shapes_dir):
  """The round's batches, split evaluation, personalised gathers and the feature cache's
  encoding see the same pixels from stored images as from memory (numpy stand-ins for the
  jitted functions)."""
  from fedprompt_jax import evaluate, feature_cache  # pylint: disable=import-outside-toplevel
  from fedprompt_jax.data import federated  # pylint: disable=import-outside-toplevel
  kwargs = dict(data_dir=shapes_dir, image_size=SIDE)
  memory = tfds_source.load_tfds("shapes_raw", **kwargs)
  stored = tfds_source.load_tfds("shapes_raw", storage="array_record", **kwargs)
  clients = [np.arange(0, 40, 3), np.arange(1, 4), np.zeros((0,), np.int64)]
  batches = [federated.round_batches(ds.train, clients, np.array([4, 0, 2]), steps=3, batch=8,
                                     seed=1, round_index=2, padded_k=4, epochs=e)
             for ds in (memory, stored) for e in (None, 2)]
  for a, b in zip(batches[:2], batches[2:]):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)
  digest = lambda *args: args[-1].reshape(args[-1].shape[:-3] + (-1,)).astype(np.int64).sum(-1)
  preds = [evaluate.predict_split(digest, None, None, None, None, None, ds.test, 16)
           for ds in (memory, stored)]
  np.testing.assert_array_equal(preds[0], preds[1])
  tests = [np.arange(i, len(memory.test), 7) for i in range(5)]
  acc = [evaluate.personalized_accuracy(lambda *a: digest(*a) % 3, None, None, {}, None, None,
                                        {}, ds.test, tests, 2) for ds in (memory, stored)]
  np.testing.assert_array_equal(acc[0], acc[1])
  feats = [feature_cache.encode_images(lambda f, x: digest(x)[:, None] * 1.0, None, ds.train.images,
                                       32) for ds in (memory, stored)]
  np.testing.assert_array_equal(feats[0], feats[1])


def run_config(data_dir, storage, **values):
  c = config_lib.default_config()
  c.clip.checkpoint = fixture_dir("clip_tiny_a")
  c.eval.check_zero_shot, c.eval.every = False, 1
  c.data.source, c.data.tfds_name, c.data.data_dir = "tfds", "shapes_raw", data_dir
  c.data.storage = storage
  c.fed.num_clients, c.fed.clients_per_round, c.fed.partition = 6, 3, "iid"
  c.fed.rounds, c.fed.local_steps, c.fed.batch_size = 2, 2, 8
  c.method.name = "fedvpt"
  c.adv.eval = ()
  for key, value in values.items():
    section, name = key.split("__")
    c[section][name] = value
  return c


@pytest.mark.slow  # two tiny runs, about 20 s each on a loaded 2-core machine
def test_stored_run_equals_in_memory_run(tmp_path, shapes_dir):
  """Same files, same rows: the two storages give bit-identical metrics (the rounds, the
  zero-shot, clean and personalised evaluations all read the stored splits)."""
  memory = train.train_and_evaluate(run_config(shapes_dir, "memory"), str(tmp_path / "m"))
  stored = train.train_and_evaluate(run_config(shapes_dir, "array_record"), str(tmp_path / "s"))
  drop = lambda recs: [{k: v for k, v in r.items() if k != "seconds_per_round"} for r in recs]
  assert [r["round"] for r in memory] == [0, 1, 2]
  assert {"zeroshot_acc", "global_acc", "pers_acc_mean"} <= set(memory[-1])
  assert drop(stored) == drop(memory)


@pytest.mark.parametrize("values, message", [
    (dict(data__storage="disk"), "data.storage='disk' is invalid; valid: memory, array_record"),
    (dict(data__storage="array_record", data__source="shapes"),
     "data.storage='array_record' is invalid; needs data.source='tfds'"),
])
def test_bad_storage_gives_one_line(tmp_path, values, message):
  with pytest.raises(config_lib.ConfigError, match=message):
    train.train_and_evaluate(run_config(str(tmp_path), "memory", **values), str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_storage_may_change_on_resume():
  """Both storages read the same rows, so a run may resume with the other one; older
  config.json files without the key resume as 'memory'."""
  from fedprompt_jax import workdir as workdir_lib  # pylint: disable=import-outside-toplevel
  c = config_lib.default_config()
  assert c.data.storage == "memory"
  old = workdir_lib.config_values(c)
  c.data.storage = "array_record"
  new = workdir_lib.config_values(c)
  assert workdir_lib.changed_keys(old, new, old) == []
  del old["data.storage"]
  assert workdir_lib.changed_keys(old, workdir_lib.config_values(config_lib.default_config()),
                                  workdir_lib.config_values(config_lib.default_config())) == []
  c.data.tfds_name = "other"
  assert workdir_lib.changed_keys(new, workdir_lib.config_values(c), new) == [
      'data.tfds_name "" -> "other"']
