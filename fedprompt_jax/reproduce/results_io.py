"""One table of results and its files: results/<name>/{table.md, table.csv, figure.png, meta.json}.

A `Table` holds cells that are strings or floats. Floats are formatted for the markdown in one
place, `format_cell`, by the column's format name (`Table.formats`, FORMATS); the CSV keeps them
at full precision. Cells that summarise several seeds are strings made by `mean_std`, with the
same formats, so every figure of a table is formatted here and nowhere else.

table.md is what the README embeds (readme_sync.py): the markdown table, the notes and the line
"Regenerate: `<command>`"; it holds no date, so regenerating identical numbers leaves it (and
the README) byte-identical. meta.json holds the command, the git commit, the date and the
producer's own facts (seeds, config and partition hashes). Every file is written through
fedprompt_jax/atomic.py: a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import json
import math
import os
import subprocess
from typing import Any, Callable, Sequence

from fedprompt_jax import atomic

Cell = str | float
FILES = ("table.md", "table.csv", "meta.json")  # figure.png too, when a figure is drawn
FIGURE = "figure.png"


def _pct(x: float) -> str:
  return f"{100 * x:.1f}"


def _sci(x: float) -> str:
  """1.2e-7 (one decimal, no padded exponent); 0 as 0."""
  if x == 0:
    return "0"
  mantissa, exponent = f"{x:.1e}".split("e")
  return f"{mantissa}e{int(exponent)}"


# format name -> float -> markdown text. "pct": a fraction in [0, 1] shown in % with one decimal.
FORMATS: dict[str, Callable[[float], str]] = {
    "pct": _pct,
    "sci": _sci,
    "ratio": lambda x: f"{x:.2f}x",
    "fixed1": lambda x: f"{x:.1f}",
    "fixed3": lambda x: f"{x:.3f}",
    "int": lambda x: f"{int(round(x)):,}",
    "g": lambda x: f"{x:.4g}",
}
MISSING = "-"


def format_cell(value: Cell | None, fmt: str = "g") -> str:
  """The markdown text of one cell: strings as they are, floats by FORMATS[fmt], None as "-"."""
  if value is None:
    return MISSING
  if isinstance(value, str):
    return value
  if isinstance(value, float) and math.isnan(value):
    return MISSING
  return FORMATS[fmt](float(value))


def mean_and_std(values: Sequence[float | None]) -> tuple[float, float] | None:
  """(mean, std) of the values that are not None, std with ddof=0 (as launch/compare.py's
  table); None for no values."""
  values = [float(v) for v in values if v is not None]
  if not values:
    return None
  mean = sum(values) / len(values)
  return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def mean_std(values: Sequence[float | None], fmt: str = "pct") -> str:
  """"mean +- std" over seeds (mean_and_std), each by FORMATS[fmt]; "-" for no values."""
  stats = mean_and_std(values)
  if stats is None:
    return MISSING
  return f"{FORMATS[fmt](stats[0])} +- {FORMATS[fmt](stats[1])}"


@dataclasses.dataclass(frozen=True)
class Table:
  """One README table.

  Attributes:
    name: the results folder and README block name (results/<name>/).
    title: one line, bold above the table.
    columns: the header, C strings.
    rows: R rows of C cells each (str or float; None shows as "-").
    notes: markdown shown under the table (what was run, units, caveats).
    command: the exact command line that regenerates the table.
    formats: per column, a FORMATS name for its float cells (default "g" for all).
  """
  name: str
  title: str
  columns: tuple[str, ...]
  rows: tuple[tuple[Cell | None, ...], ...]
  notes: str = ""
  command: str = ""
  formats: tuple[str, ...] = ()

  def __post_init__(self):
    if not self.name or os.sep in self.name or self.name.startswith("."):
      raise ValueError(f"table name {self.name!r} must be a plain folder name")
    for i, row in enumerate(self.rows):
      if len(row) != len(self.columns):
        raise ValueError(f"table {self.name}: row {i} has {len(row)} cells, the header "
                         f"{len(self.columns)}")
    unknown = [f for f in self.formats if f not in FORMATS]
    if unknown or (self.formats and len(self.formats) != len(self.columns)):
      raise ValueError(f"table {self.name}: formats {self.formats} must name one of "
                       f"{', '.join(FORMATS)} per column ({len(self.columns)})")

  def column_format(self, j: int) -> str:
    return self.formats[j] if self.formats else "g"

  def cells(self) -> list[list[str]]:
    """The formatted markdown cells, R x C."""
    return [[format_cell(v, self.column_format(j)) for j, v in enumerate(row)]
            for row in self.rows]


def _escape(text: str) -> str:
  return text.replace("|", "\\|").replace("\n", " ")


def markdown(table: Table) -> str:
  """table.md: the bold title, the table, the notes, the Regenerate line; ends with a newline."""
  lines = [f"**{table.title}**", "",
           "| " + " | ".join(_escape(c) for c in table.columns) + " |",
           "|" + "---|" * len(table.columns)]
  lines += ["| " + " | ".join(_escape(c) for c in row) + " |" for row in table.cells()]
  if table.notes.strip():
    lines += ["", table.notes.strip()]
  if table.command:
    lines += ["", f"Regenerate: `{table.command}`"]
  return "\n".join(lines) + "\n"


def _csv_value(value: Cell | None) -> str:
  if value is None:
    return ""
  return value if isinstance(value, str) else repr(float(value))


def csv_text(table: Table) -> str:
  """table.csv: one header row, then the rows; floats at full precision, None empty."""
  out = io.StringIO()
  writer = csv.writer(out, lineterminator="\n")
  writer.writerow(table.columns)
  for row in table.rows:
    writer.writerow([_csv_value(v) for v in row])
  return out.getvalue()


def read_csv(path: str) -> tuple[list[str], list[list[str]]]:
  """(header, rows) of a table.csv."""
  with open(path, newline="", encoding="utf-8") as f:
    rows = list(csv.reader(f))
  return rows[0], rows[1:]


def git_commit(repo: str) -> str | None:
  """HEAD's commit of `repo` (with "-dirty" when tracked files changed); None without git."""
  try:
    head = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True,
                          text=True, timeout=10, check=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=10, check=True).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None
  return head + ("-dirty" if dirty else "") if head else None


def write_table(table: Table, results_dir: str,
                figure_fn: Callable[[str], None] | None = None,
                meta: dict[str, Any] | None = None, repo: str | None = None) -> str:
  """Writes results_dir/<name>/{table.md, table.csv, meta.json[, figure.png]}; returns the folder.

  Args:
    table: the table.
    results_dir: the results root (results/ of the repo).
    figure_fn: draws the figure: called with a temporary path in the folder, which is then
      renamed to figure.png (so a failing figure leaves the old one).
    meta: the producer's facts (seeds, hashes, ...), stored under "meta" in meta.json.
    repo: the checkout whose git commit is recorded (default: this package's).
  """
  folder = os.path.join(results_dir, table.name)
  os.makedirs(folder, exist_ok=True)
  if figure_fn is not None:
    tmp = os.path.join(folder, f".{FIGURE}.tmp-{os.getpid()}.png")
    try:
      figure_fn(tmp)
      os.replace(tmp, os.path.join(folder, FIGURE))
    finally:
      if os.path.exists(tmp):
        os.remove(tmp)
    atomic.fsync_dir(folder)
  repo = repo or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  info = {
      "table": table.name,
      "command": table.command,
      "git_commit": git_commit(repo),
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "meta": meta or {},
  }
  atomic.write_text(os.path.join(folder, "table.csv"), csv_text(table))
  atomic.write_text(os.path.join(folder, "meta.json"),
                    json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
  atomic.write_text(os.path.join(folder, "table.md"), markdown(table))  # last: what README reads
  return folder
