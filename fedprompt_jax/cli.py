"""Command-line checks of launch/run.py: one line for each bad --config flag, before any work.

`check_argv` runs before absl parses the flags: --config missing, given twice
or naming no file. `last_overrides_win` makes a `--config.KEY` given more than
once mean its last value, for every key: absl keeps the last value of a flag,
but ml_collections appended repeated values of a tuple key (`--config.adv.eval`)
to one another. `explain_flag_error` runs when absl's parser failed, and says
which key or preset of the config was unknown, with the nearest valid ones,
instead of a bare KeyError or a traceback flattened into one line.
"""

from __future__ import annotations

import importlib.util
import os

import ml_collections

from fedprompt_jax import config as config_lib


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


def _flag_values(argv: list[str], name: str) -> tuple[list[str], list[str]]:
  """(values of --NAME, keys of --NAME.KEY) in argv, in both `--f=v` and `--f v` forms."""
  values, keys = [], []
  for i, arg in enumerate(argv):
    flag, eq, value = arg.partition("=")
    if flag == f"--{name}":
      values.append(value if eq else (argv[i + 1] if i + 1 < len(argv) else ""))
    elif flag.startswith(f"--{name}."):
      keys.append(flag[len(name) + 3:])
  return values, keys


def check_argv(argv: list[str], name: str = "config") -> str | None:
  """The first problem with the config flags of `argv` (one line), or None."""
  if any(a in ("-h", "--help", "--helpshort", "--helpfull") for a in argv[1:]):
    return None
  values, keys = _flag_values(argv[1:], name)
  if not values:
    return f"--{name} is required, e.g. --{name}=configs/pep.py"
  if len(values) > 1:
    return f"--{name} is given {len(values)} times; give it once"
  path = values[0].split(":", 1)[0]
  if not os.path.isfile(path):
    folder = os.path.dirname(path) or "."
    files = sorted(os.path.join(os.path.dirname(path), f) for f in os.listdir(folder)
                   if f.endswith(".py")) if os.path.isdir(folder) else []
    near = config_lib.nearest(path, files) if files else []
    hint = f"; nearest: {', '.join(near)}" if near else ""
    return f"--{name}={values[0]}: config file {path!r} does not exist{hint}"
  return None


def last_overrides_win(argv: list[str], name: str = "config") -> list[str]:
  """argv without the earlier occurrences of each repeated `--NAME.KEY` (both flag forms)."""
  last, spans = {}, []
  i = 0
  while i < len(argv):
    flag, eq, _ = argv[i].partition("=")
    width = 1 if eq or not flag.startswith(f"--{name}.") else 2
    if i > 0 and flag.startswith(f"--{name}."):
      last[flag] = len(spans)
    spans.append((flag, argv[i:i + width]))
    i += width
  return [arg for k, (flag, args) in enumerate(spans)
          if not flag.startswith(f"--{name}.") or last.get(flag) == k for arg in args]


def _has_key(c, key: str) -> bool:
  target = c
  for part in key.split("."):
    if not isinstance(target, ml_collections.ConfigDict) or part not in target:
      return False
    target = target[part]
  return True


def explain_flag_error(argv: list[str], name: str = "config") -> str | None:
  """Why absl failed on the config flags of `argv`, in one line; None if it is not ours."""
  values, keys = _flag_values(argv[1:], name)
  if len(values) != 1:
    return None
  path, _, arg = values[0].partition(":")
  try:
    c = load_config_module(path).get_config(*([arg] if arg else []))
  except config_lib.ConfigError as e:
    return f"--{name}={values[0]}: {e}"
  except Exception:  # pylint: disable=broad-except  (absl's own message is then shown)
    return None
  for key in keys:
    if not _has_key(c, key):
      return f"--{name}.{key}: {config_lib.unknown_key_error(c, key)}"
  return None


def one_line(message: str) -> str:
  """absl's error text in one line; a traceback inside it is reduced to its last line."""
  if "Traceback (most recent call last)" in message:
    head = message.split("Traceback (most recent call last)", 1)[0].rstrip(" :\n")
    last = [line for line in message.splitlines() if line.strip()][-1].strip()
    message = f"{head}: {last}"
  return " ".join(message.split())
