"""The README's generated tables equal results/ (launch/reproduce.py --check_readme), and every
table folder under results/ is complete."""

import os
import re

from fedprompt_jax.reproduce import readme_sync, results_io, tables

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "results")


def test_readme_blocks_equal_results():
  with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
    text = f.read()
  assert readme_sync.mismatches(text, RESULTS) == []


def test_every_table_folder_is_complete():
  for name in tables.NAMES:
    folder = os.path.join(RESULTS, name)
    if os.path.isdir(folder):
      missing = [f for f in results_io.FILES if not os.path.exists(os.path.join(folder, f))]
      assert not missing, f"results/{name}/ lacks {missing}"


def test_every_table_has_one_readme_block_in_registry_order():
  """`--table=list` reads as the README does, and no table is left out of it."""
  with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
    text = f.read()
  blocks = re.findall(r"^<!-- results:([a-z0-9_]+) -->$", text, re.M)
  assert blocks == list(tables.NAMES)
