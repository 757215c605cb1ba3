"""Tests of metrics.jsonl / TensorBoard writing, resume truncation, summary and plots."""

from __future__ import annotations

import glob
import json
import os
import struct

import numpy as np
import pytest

from fedprompt_jax import metrics as metrics_lib
from fedprompt_jax import plots

_RECORDS = [
    {"test_acc": 0.5, "train_loss": 1.25, "n": 7},
    {"test_acc": 0.875, "train_loss": 0.75, "n": 7},
    {"test_acc": 0.8125, "train_loss": 0.5, "n": 7},
]


def _write_three(workdir, **kwargs):
  writer = metrics_lib.MetricsWriter(str(workdir), total_rounds=5, **kwargs)
  for r, m in enumerate(_RECORDS, start=1):
    writer.write(r, m)
    writer.round_done(r, loss=m["train_loss"])
  return writer


def _read_events(workdir):
  """Parses all TFRecord event files in workdir without TensorFlow."""
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  events = []
  for path in sorted(glob.glob(os.path.join(str(workdir), "events.out.tfevents.*"))):
    with open(path, "rb") as f:
      data = f.read()
    pos = 0
    while pos + 12 <= len(data):
      (length,) = struct.unpack("<Q", data[pos:pos + 8])
      start = pos + 12
      events.append(event_pb2.Event.FromString(data[start:start + length]))
      pos = start + length + 4
  return events


def _scalars(events):
  return {(v.tag, e.step): v.simple_value for e in events for v in e.summary.value}


def test_write_and_read_back(tmp_path):
  writer = _write_three(tmp_path)
  # Durable before close: another reader sees every line right away.
  assert [r["round"] for r in metrics_lib.read_metrics(str(tmp_path))] == [1, 2, 3]
  writer.close()
  writer.close()  # idempotent
  expected = [{"round": r, **m} for r, m in enumerate(_RECORDS, start=1)]
  assert metrics_lib.read_metrics(str(tmp_path)) == expected
  assert metrics_lib.read_metrics(str(tmp_path / "metrics.jsonl")) == expected
  with open(tmp_path / "metrics.jsonl") as f:
    lines = f.read().splitlines()
  assert len(lines) == 3
  for line, exp in zip(lines, expected):
    parsed = json.loads(line)
    assert parsed == exp
    assert list(parsed) == sorted(parsed)  # keys sorted
  assert isinstance(json.loads(lines[0])["n"], int)


def test_numpy_scalars_are_written_as_numbers(tmp_path):
  with metrics_lib.MetricsWriter(str(tmp_path), total_rounds=1, enable_progress=False) as w:
    w.write(1, {"test_acc": np.float32(0.25), "count": np.int64(3)})
    assert w.records() == [{"round": 1, "test_acc": 0.25, "count": 3}]


def test_resume_drops_records_after_checkpoint(tmp_path):
  _write_three(tmp_path).close()
  writer = metrics_lib.MetricsWriter(str(tmp_path), total_rounds=5, start_round=2)
  assert [r["round"] for r in writer.records()] == [1, 2]
  assert writer.records()[1]["test_acc"] == 0.875
  assert not os.path.exists(tmp_path / "metrics.jsonl.tmp")
  writer.write(3, {"test_acc": 0.9})
  writer.write(4, {"test_acc": 0.95})
  writer.close()
  records = metrics_lib.read_metrics(str(tmp_path))
  assert [r["round"] for r in records] == [1, 2, 3, 4]
  assert records[2] == {"round": 3, "test_acc": 0.9}


def test_resume_skips_truncated_last_line(tmp_path):
  _write_three(tmp_path).close()
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"round": 4, "test_a')  # killed mid-write
  assert len(metrics_lib.read_metrics(str(tmp_path))) == 3
  metrics_lib.MetricsWriter(str(tmp_path), total_rounds=5, start_round=5).close()
  assert [r["round"] for r in metrics_lib.read_metrics(str(tmp_path))] == [1, 2, 3]


def test_fresh_start_truncates(tmp_path):
  _write_three(tmp_path).close()
  writer = metrics_lib.MetricsWriter(str(tmp_path), total_rounds=5, start_round=0)
  assert writer.records() == []
  assert os.path.getsize(tmp_path / "metrics.jsonl") == 0
  writer.write(1, {"test_acc": 0.1})
  writer.close()
  assert metrics_lib.read_metrics(str(tmp_path)) == [{"round": 1, "test_acc": 0.1}]


def test_tensorboard_scalars(tmp_path):
  _write_three(tmp_path).close()
  files = glob.glob(str(tmp_path / "events.out.tfevents.*"))
  assert len(files) == 1 and os.path.getsize(files[0]) > 0
  scalars = _scalars(_read_events(tmp_path))
  assert scalars[("test_acc", 2)] == pytest.approx(0.875)
  assert scalars[("train_loss", 3)] == pytest.approx(0.5)
  assert scalars[("n", 1)] == pytest.approx(7.0)
  assert ("round", 1) not in scalars

  # A resumed run marks the rounds after the checkpoint as purged.
  with metrics_lib.MetricsWriter(str(tmp_path), total_rounds=5, start_round=2) as writer:
    writer.write(3, {"x": 1.0})
  starts = [e.step for e in _read_events(tmp_path) if e.HasField("session_log")]
  assert 3 in starts
  assert len(glob.glob(str(tmp_path / "events.out.tfevents.*"))) == 2
  assert _scalars(_read_events(tmp_path))[("test_acc", 2)] == pytest.approx(0.875)


def test_summary_table(tmp_path):
  records = [{"round": r, **m} for r, m in enumerate(_RECORDS, start=1)]
  table = metrics_lib.summary_table(records)
  lines = table.splitlines()
  assert "round 3" in lines[0]
  acc_row = next(l for l in lines if l.startswith("test_acc"))
  assert "81.25%" in acc_row  # final value, not the best one
  assert "87.50% @ round 2" in acc_row  # best, for reference
  assert "not used for selection" in table
  loss_row = next(l for l in lines if l.startswith("train_loss"))
  assert "0.5000" in loss_row and "%" not in loss_row
  assert not any(l.startswith("round") for l in lines)
  only = metrics_lib.summary_table(records, keys=["train_loss"])
  assert "test_acc" not in only and "train_loss" in only
  assert "No evaluation records" in metrics_lib.summary_table([])


def test_save_curves(tmp_path):
  records = [{"round": r, **m} for r, m in enumerate(_RECORDS, start=1)]
  records.append({"round": 4, "other_acc": 0.3})  # missing keys
  path = plots.save_curves(records, str(tmp_path / "plots" / "curves.png"))
  assert path == str(tmp_path / "plots" / "curves.png")
  with open(path, "rb") as f:
    data = f.read()
  assert data[:8] == b"\x89PNG\r\n\x1a\n"
  assert len(data) > 1024
  assert plots.save_curves([], str(tmp_path / "empty.png")) is None
  assert not os.path.exists(tmp_path / "empty.png")


def test_non_chief_writes_nothing(tmp_path):
  workdir = tmp_path / "run"
  writer = _write_three(workdir, is_chief=False)
  writer.close()
  assert not os.path.exists(workdir)
  os.makedirs(workdir)
  _write_three(workdir, is_chief=False, start_round=2).close()
  assert os.listdir(workdir) == []


def test_progress_disabled_and_round_done(tmp_path, capsys):
  writer = metrics_lib.MetricsWriter(str(tmp_path), total_rounds=4, start_round=1,
                                     enable_progress=False)
  writer.round_done(2, loss=np.float32(0.3))
  writer.round_done(3)
  writer.round_done(2)  # never goes backwards
  assert writer.rounds_done == 3
  writer.close()
  assert capsys.readouterr().err == ""
