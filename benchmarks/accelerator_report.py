"""The output of benchmarks/accelerator.py: the markdown table, the targets, the files."""

from __future__ import annotations

import csv
import json
import os

TARGET_LOOP, TARGET_PEAK = 5.0, 0.40
FIELDS = ("method", "k", "chunk", "dtype", "remat", "status", "round_s", "rounds_s", "loop_s",
          "loop_ratio", "model_tflop", "tflops", "of_peak", "of_matmul", "mem_gb",
          "peak_gb", "peak_rose", "compile_s")
HEADER = ("| method | K | chunk | dtype | remat | status | rounds/s | TFLOP/s | of peak | of mm "
          "| mem GB | peak GB | loop / round | compile s |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def fmt(x, spec: str) -> str:
  return "-" if x is None else format(x, spec)


def format_row(r: dict) -> str:
  peak = r.get("peak_gb")
  peak = "-" if peak is None else (f"{peak:.1f}" if r.get("peak_rose") else f"<={peak:.1f}")
  chunk = r.get("chunk") or "vmap"
  return (f"| {r['method']} | {r['k']} | {chunk} | {r['dtype']} | "
          f"{'on' if r['remat'] else 'off'} | {r['status']} | {fmt(r.get('rounds_s'), '.3f')} | "
          f"{fmt(r.get('tflops'), '.3g')} | {fmt(r.get('of_peak'), '.1%')} | "
          f"{fmt(r.get('of_matmul'), '.1%')} | {fmt(r.get('mem_gb'), '.2f')} | {peak} | "
          f"{fmt(r.get('loop_ratio'), '.2f')} | {fmt(r.get('compile_s'), '.1f')} |")


def targets(rows: list[dict], model: str, peak_measured: bool) -> list[str]:
  """The issue's two expectations against the best row that measured each.

  They are stated for an accelerator: vmapped chunks (chunk > 1) against the loop, and
  ViT-B/16 against the device's bf16 peak. Elsewhere the best figure is shown as information.
  """
  ok = [r for r in rows if r["status"] == "ok"]
  if not ok:
    return ["  (no configuration ran)"]
  verdict = lambda passed, applies, why: (("PASS" if passed else "MISS") if applies
                                          else f"(information: {why})")
  lines = []
  looped = [r for r in ok if r.get("loop_ratio") is not None]
  if looped:
    best = max(looped, key=lambda r: r["loop_ratio"])
    lines.append(f"  round / client loop, best ({best['method']}, K={best['k']}, chunk "
                 f"{best['chunk']}, {best['dtype']}): {best['loop_ratio']:.2f} (target >= "
                 f"{TARGET_LOOP:g}) " + verdict(best["loop_ratio"] >= TARGET_LOOP,
                                               best["chunk"] > 1, "chunk 1 is no vmap"))
  bf16 = [r for r in ok if r["dtype"] == "bfloat16"]
  if bf16:
    best = max(bf16, key=lambda r: r["of_peak"])
    lines.append(f"  bf16 FLOP/s of peak, best ({best['method']}, K={best['k']}, chunk "
                 f"{best['chunk']}, model {model}): {best['of_peak']:.1%} (target >= "
                 f"{TARGET_PEAK:.0%}) " + verdict(
                     best["of_peak"] >= TARGET_PEAK, model == "vitb16" and not peak_measured,
                     "the target is ViT-B/16's, against a device's bf16 peak"))
  return lines or ["  (no row measured a targeted figure)"]


def table(rows: list[dict]) -> str:
  return "\n".join([HEADER] + [format_row(r) for r in rows])


def write(out: str, results: dict, head: str, table_md: str, lines: list[str]) -> None:
  """results.csv (one row per configuration), results.json (everything), table.md."""
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "results.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=FIELDS)
    w.writeheader()
    w.writerows({k: r.get(k) for k in FIELDS} for r in results["rows"])
  with open(os.path.join(out, "results.json"), "w") as f:
    json.dump(results, f, indent=1, default=str)
  with open(os.path.join(out, "table.md"), "w") as f:
    f.write(f"{head}\n\n{table_md}\n\n" + "\n".join(lines) + "\n")
