"""One process of tests/test_dp.py's two-process check: the DP noise of two toy rounds.

  python tests/dp_noise_worker.py OUT.npy [COORDINATOR NUM_PROCESSES PROCESS_ID]

Runs the toy method of test_dp.py at zero learning rate (the shared params move by the
noise / K alone) on a mesh over every device of every process, and process 0 saves the
[rounds, width] noise to OUT.npy.
"""

import os
import sys

import jax

if len(sys.argv) > 2:
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=sys.argv[2], num_processes=int(sys.argv[3]),
                             process_id=int(sys.argv[4]))

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from fedprompt_jax.fed import mesh as mesh_lib  # noqa: E402
from fedprompt_jax.privacy.settings import DPSpec  # noqa: E402
import test_dp  # noqa: E402  (the toy method and inputs)


def main(out):
  fn, state, mesh = test_dp.toy_round(DPSpec(0.3, 1.1, test_dp.K, None),
                                      devices=len(jax.devices()), lr=0.0, width=64)
  state = mesh_lib.replicate(mesh, state)
  key = mesh_lib.replicate(mesh, jax.random.key_data(jax.random.key(0)))
  inputs = test_dp.toy_inputs(mesh)
  noise = []
  for _ in range(2):
    before = np.asarray(mesh_lib.local_copy(state.shared)["w"])
    state, _ = fn({}, state, {}, key, inputs)
    noise.append(np.asarray(mesh_lib.local_copy(state.shared)["w"]) - before)
  if jax.process_index() == 0:
    np.save(out, np.stack(noise))


if __name__ == "__main__":
  main(sys.argv[1])
