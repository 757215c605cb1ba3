"""Every module of fedprompt_jax/data/ imports on its own, and none imports the registry.

source.py (the registry) reaches the loaders, and the loaders used to import their types
from source.py: an import circle that only worked because the registry defers its imports.
The types now live in dataset.py; this test keeps it that way.
"""

import ast
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "fedprompt_jax", "data")
MODULES = sorted(name[:-3] for name in os.listdir(DATA)
                 if name.endswith(".py") and name != "__init__.py")


def _imported_modules(path):
  """Dotted names of the fedprompt_jax.data modules that `path` imports, anywhere in the file."""
  with open(path) as f:
    tree = ast.parse(f.read())
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module:
      if node.module == "fedprompt_jax.data":
        out.update(f"fedprompt_jax.data.{alias.name}" for alias in node.names)
      elif node.module.startswith("fedprompt_jax.data."):
        out.add(node.module)
    elif isinstance(node, ast.Import):
      out.update(a.name for a in node.names if a.name.startswith("fedprompt_jax.data."))
  return out


def test_the_modules_are_found():
  assert {"dataset", "source", "shapes", "digits", "partition"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_no_data_module_imports_the_registry(name):
  if name == "source":
    return
  imported = _imported_modules(os.path.join(DATA, f"{name}.py"))
  assert "fedprompt_jax.data.source" not in imported, (
      f"{name}.py imports source.py (the registry); import the types from dataset.py")


def test_dataset_imports_only_leaf_data_modules():
  """dataset.py may import data modules that import no data module themselves (stored_images.py,
  the read-on-demand image array), so no circle can pass through it."""
  imported = _imported_modules(os.path.join(DATA, "dataset.py"))
  assert imported <= {"fedprompt_jax.data.stored_images"}
  for module in imported:
    leaf = os.path.join(DATA, module.rsplit(".", 1)[1] + ".py")
    assert _imported_modules(leaf) == set(), module


@pytest.mark.parametrize("name", MODULES)
def test_each_module_imports_alone_in_a_fresh_process(name):
  code = f"import fedprompt_jax.data.{name}"
  if name == "source":  # and the registry reaches every loader without a circle
    code += ("\nfrom fedprompt_jax.data import source\n"
             "src = source.load_source('shapes', image_size=16, domains=('photo',),"
             " num_train_per_class_domain=1, num_test_per_class_domain=1)\n"
             "assert isinstance(src, source.DataSource)")
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
