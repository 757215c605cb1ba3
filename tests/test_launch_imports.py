"""The launch commands can be imported side by side (as the tests and scripts do) without
absl refusing a flag defined twice; their flags exist only when they run as commands."""

import importlib
import os
import sys

from absl import app, flags, logging  # noqa: F401  (their own flags, defined on import)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMPORTED_BY_OTHERS = ("compare", "robust_eval", "transfer_eval", "zeroshot")


def test_launch_modules_import_together_and_define_no_flags():
  sys.path.insert(0, os.path.join(REPO, "launch"))
  try:
    before = set(flags.FLAGS)
    for name in IMPORTED_BY_OTHERS:
      importlib.import_module(name)
    added = set(flags.FLAGS) - before
    assert not added, f"importing launch modules defined flags {sorted(added)}"
  finally:
    sys.path.remove(os.path.join(REPO, "launch"))
