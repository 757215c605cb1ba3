"""Writes that cannot be half-done: a temporary name in the same directory, then os.replace.

A reader (or a run resumed after a crash) sees either the old file or the new
one, never a truncated mix. The data and the directory entry are fsync'ed, so a
rename that survived a power cut also has its contents.
"""

from __future__ import annotations

import contextlib
import os
from typing import IO, Iterator


def fsync_dir(directory: str) -> None:
  """fsyncs a directory (its entries); best effort where the platform cannot."""
  try:
    fd = os.open(directory or ".", os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


@contextlib.contextmanager
def replacing(path: str | os.PathLike[str], mode: str = "w",
              encoding: str | None = "utf-8") -> Iterator[IO]:
  """Yields a file opened on a temporary sibling of `path`; renames it to `path` on success.

  On an exception the temporary file is removed and `path` is left as it was.
  """
  path = os.fspath(path)
  tmp = f"{path}.tmp-{os.getpid()}"
  kwargs = {} if "b" in mode else {"encoding": encoding}
  try:
    with open(tmp, mode, **kwargs) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise
  fsync_dir(os.path.dirname(path))


def write_text(path: str | os.PathLike[str], text: str) -> None:
  with replacing(path) as f:
    f.write(text)


def save_figure(fig, path: str | os.PathLike[str], dpi: int = 100, **savefig_kwargs) -> None:
  """`fig.savefig` as PNG through a temporary name (extra keywords go to savefig); the
  directory is created if missing and the figure is closed, written or not."""
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  try:
    directory = os.path.dirname(os.fspath(path))
    if directory:
      os.makedirs(directory, exist_ok=True)
    with replacing(path, "wb") as f:
      fig.savefig(f, format="png", dpi=dpi, **savefig_kwargs)
  finally:
    plt.close(fig)
