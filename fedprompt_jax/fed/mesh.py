"""The device mesh with one axis, 'clients', and the padding that fits K clients onto it."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "clients"


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh over all (or the given) devices; Auto axis type (works with shard_map)."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (AXIS,))


def padded_size(num_clients: int, mesh: Mesh, chunk: int = 1) -> int:
  """Smallest K' >= K divisible by (devices x chunk), so every device runs whole chunks."""
  unit = mesh.devices.size * max(chunk, 1)
  return -(-num_clients // unit) * unit


def client_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def local_rows(mesh: Mesh, num_rows: int) -> np.ndarray:
  """Rows of a [num_rows, ...] client-sharded array that live on this process's devices."""
  index_map = client_sharding(mesh).addressable_devices_indices_map((num_rows,))
  rows = set()
  for (row_slice,) in index_map.values():
    rows.update(range(*row_slice.indices(num_rows)))
  return np.array(sorted(rows), np.int64)


def shard_clients(mesh: Mesh, tree):
  """Host numpy [K, ...] leaves -> global arrays sharded over 'clients'.

  Only the rows of this process's devices are read, so in a multi-process run each
  process needs valid data in its own rows only.
  """
  return _put(tree, client_sharding(mesh))


def replicate(mesh: Mesh, tree):
  """Host or single-device values -> global arrays replicated on every device of the mesh."""
  return _put(tree, replicated(mesh))


def _put(tree, sharding):
  """Builds global arrays with `sharding` from host copies of the leaves of `tree`."""

  def put(x):
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])

  return jax.tree_util.tree_map(put, tree)


def local_copy(tree):
  """Global replicated arrays -> this process's first-device copy (for host-driven evaluation)."""
  return jax.tree_util.tree_map(
      lambda x: x.addressable_data(0) if isinstance(x, jax.Array) else x, tree)


def to_host(x) -> np.ndarray:
  """A global array (possibly spread over processes) -> the full numpy array on every process."""
  if not isinstance(x, jax.Array) or x.is_fully_addressable:
    return np.asarray(x)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))
