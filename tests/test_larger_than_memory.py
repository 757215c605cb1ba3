"""A tfds set several times larger than a memory limit trains under that limit (issue 16.4).

The limit is on the memory a run holds because of its data: at most a quarter of the
set's in-memory size (its uint8 images at the model's resolution). What a run holds
besides its data (JAX, XLA's compiled code and its compilers' caches: about 500 MiB
here, more than the set itself) does not depend on the data and is the same for both
storages, so the test measures it with the same run under data.storage='memory':

  peak RSS growth (VmHWM minus RSS after the imports) of the stored run
    <= that of the in-memory run - the set's size + the limit.

The in-memory run's own growth must exceed the set's size, so the measure sees the data;
both runs must give the same metrics. RLIMIT_AS is not used: JAX and XLA reserve far
more virtual address space than they touch. The CLIP is the tiny fixture with a
160-pixel, 32-pixel-patch image tower (random embeddings), so that each image is 75 KiB
and a few thousand of them make a set of hundreds of MiB in seconds.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tensorflow_datasets")
pytest.importorskip("array_record")

from clip_fixtures import fixture_dir  # noqa: E402
from fedprompt_jax.data import tfds_writer  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SIDE, PATCH = 160, 32
TRAIN, TEST = 6144, 256
LIMIT_FRACTION = 0.25


def clip_160(out_dir: str) -> str:
  """The tiny CLIP fixture with a SIDE-pixel image tower of PATCH-pixel patches."""
  from safetensors.numpy import load_file, save_file  # pylint: disable=import-outside-toplevel
  src = fixture_dir("clip_tiny_a")
  shutil.copytree(src, out_dir)
  with open(os.path.join(src, "config.json")) as f:
    config = json.load(f)
  config["vision_config"].update(image_size=SIDE, patch_size=PATCH)
  with open(os.path.join(out_dir, "config.json"), "w") as f:
    json.dump(config, f)
  tensors = load_file(os.path.join(src, "model.safetensors"))
  width = tensors["vision_model.embeddings.class_embedding"].shape[0]
  rng = np.random.default_rng(0)
  tensors["vision_model.embeddings.patch_embedding.weight"] = (
      rng.normal(0, 0.02, (width, 3, PATCH, PATCH)).astype(np.float32))
  tensors["vision_model.embeddings.position_embedding.weight"] = (
      rng.normal(0, 0.02, ((SIDE // PATCH) ** 2 + 1, width)).astype(np.float32))
  save_file(tensors, os.path.join(out_dir, "model.safetensors"))
  return out_dir


def run(values: dict, workdir: str) -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  done = subprocess.run([sys.executable, os.path.join(HERE, "memory_run_driver.py"),
                         json.dumps(values), workdir], capture_output=True, text=True, env=env,
                        timeout=600, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_stored_set_trains_within_a_limit_it_exceeds_several_times(tmp_path):
  data_dir = str(tmp_path / "tfds")
  tfds_writer.write(data_dir, "noise_big", tuple(f"colour {c}" for c in range(10)),
                    {"train": tfds_writer.noise_split(TRAIN, SIDE, 10, 0),
                     "test": tfds_writer.noise_split(TEST, SIDE, 10, 1)}, SIDE)
  data_bytes = (TRAIN + TEST) * SIDE * SIDE * 3
  limit = int(LIMIT_FRACTION * data_bytes)
  values = {"clip.checkpoint": clip_160(str(tmp_path / "clip")), "eval.check_zero_shot": False,
            "data.source": "tfds", "data.tfds_name": "noise_big", "data.data_dir": data_dir,
            "method.name": "fedvpt", "fed.partition": "iid", "fed.num_clients": 16,
            "fed.clients_per_round": 4, "fed.rounds": 2, "fed.local_steps": 2,
            "fed.batch_size": 16, "eval.every": 2, "eval.batch_size": 64, "adv.eval": [],
            "eval.personalized": False}
  stored = run(dict(values, **{"data.storage": "array_record"}), str(tmp_path / "stored"))
  memory = run(dict(values, **{"data.storage": "memory"}), str(tmp_path / "memory"))
  grown = {name: r["peak"] - r["baseline"] for name, r in (("stored", stored), ("memory", memory))}
  held = grown["stored"] - (grown["memory"] - data_bytes)  # the stored run's data memory
  report = {k: f"{v / 2**20:.0f} MiB" for k, v in dict(grown, data=data_bytes, limit=limit,
                                                         stored_data=held).items()}
  assert grown["memory"] > data_bytes, report  # the measure sees the data
  print(report)
  assert held < limit, report
  drop = lambda recs: [{k: v for k, v in r.items() if k != "seconds_per_round"} for r in recs]
  assert [r["round"] for r in stored["records"]] == [0, 2]
  assert drop(stored["records"]) == drop(memory["records"])
