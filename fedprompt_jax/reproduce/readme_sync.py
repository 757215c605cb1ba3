"""README blocks generated from results/: `<!-- results:NAME -->` ... `<!-- /results:NAME -->`,
each marker on a line of its own.

The lines between a block's two markers are, byte for byte, results/NAME/table.md. `sync`
rewrites every block from its file; `mismatches` names each block that differs from its file
or whose file is missing (tests/test_readme_results.py asserts there are none). A block whose
NAME is not a table of the registry (tables.NAMES), a block opened twice or never closed is an
error (ReadmeSyncError), since it would silently never be checked.
"""

from __future__ import annotations

import os
import re
from typing import Iterable

from fedprompt_jax.reproduce import tables

# A marker is a line of its own (a mention inside a sentence or code span is not one).
_MARKER = re.compile(r"^<!-- (/?)results:(\S*) -->[ \t]*$", re.M)


class ReadmeSyncError(ValueError):
  """Malformed or unknown README results blocks; the message is one line."""


def _blocks(text: str, known: Iterable[str]) -> list[tuple[str, int, int]]:
  """[(name, body start, body end)] of every block, in order; raises ReadmeSyncError."""
  known = tuple(known)
  out, open_name, open_end = [], None, 0
  for m in _MARKER.finditer(text):
    closing, name = m.group(1) == "/", m.group(2)
    if name not in known:
      raise ReadmeSyncError(f"README block <!-- results:{name} --> names an unknown table "
                            f"{name!r}; valid: {', '.join(known)}")
    if not closing:
      if open_name is not None:
        raise ReadmeSyncError(f"README block results:{open_name} is not closed before "
                              f"results:{name} opens; add <!-- /results:{open_name} -->")
      open_name, open_end = name, m.end()
    else:
      if open_name != name:
        raise ReadmeSyncError(f"README has <!-- /results:{name} --> without its opening "
                              f"marker <!-- results:{name} -->")
      out.append((name, open_end, m.start()))
      open_name = None
  if open_name is not None:
    raise ReadmeSyncError(f"README block results:{open_name} is never closed; add "
                          f"<!-- /results:{open_name} -->")
  names = [b[0] for b in out]
  twice = sorted({n for n in names if names.count(n) > 1})
  if twice:
    raise ReadmeSyncError(f"README has more than one results block for {', '.join(twice)}")
  return out


def block_names(readme_text: str, known: Iterable[str] = tables.NAMES) -> list[str]:
  return [name for name, _, _ in _blocks(readme_text, known)]


def _table_md(results_dir: str, name: str) -> str | None:
  path = os.path.join(results_dir, name, "table.md")
  try:
    with open(path, encoding="utf-8") as f:
      return f.read()
  except FileNotFoundError:
    return None


def _body(table_md: str) -> str:
  return "\n" + table_md.strip("\n") + "\n"


def sync(readme_text: str, results_dir: str, known: Iterable[str] = tables.NAMES) -> str:
  """`readme_text` with each results block's body replaced by results/NAME/table.md.

  Raises ReadmeSyncError for a malformed or unknown block, or one whose table.md is missing.
  """
  blocks = _blocks(readme_text, known)
  missing = [n for n, _, _ in blocks if _table_md(results_dir, n) is None]
  if missing:
    raise ReadmeSyncError(f"no {', '.join(os.path.join(results_dir, n, 'table.md') for n in missing)}"
                          f"; run python launch/reproduce.py --table={missing[0]} first")
  out, last = [], 0
  for name, start, end in blocks:
    out += [readme_text[last:start], _body(_table_md(results_dir, name))]
    last = end
  out.append(readme_text[last:])
  return "".join(out)


def mismatches(readme_text: str, results_dir: str,
               known: Iterable[str] = tables.NAMES) -> list[str]:
  """One line per block whose body is not results/NAME/table.md (or whose file is missing)."""
  problems = []
  for name, start, end in _blocks(readme_text, known):
    table_md = _table_md(results_dir, name)
    if table_md is None:
      problems.append(f"results:{name}: {os.path.join(results_dir, name, 'table.md')} is "
                      "missing")
    elif readme_text[start:end] != _body(table_md):
      problems.append(f"results:{name}: the README block differs from "
                      f"{os.path.join(results_dir, name, 'table.md')} (run python "
                      "launch/reproduce.py --sync_readme)")
  return problems
