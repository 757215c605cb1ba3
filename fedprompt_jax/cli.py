"""Command-line helpers of launch/run.py: the config file's own defaults."""

from __future__ import annotations

import importlib.util
import os

import ml_collections


def load_config_module(path: str):
  """Imports a config file (`configs/x.py`) as a fresh module."""
  name = "fedprompt_config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def config_defaults(path: str) -> ml_collections.ConfigDict:
  """`get_config()` of a config file: its values with no preset and no overrides."""
  return load_config_module(path).get_config()
