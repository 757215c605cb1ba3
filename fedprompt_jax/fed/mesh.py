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
