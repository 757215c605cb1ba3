"""The tables of the benchmarks: `throughput` (benchmarks/round_throughput.py's `run`),
`attacks` (benchmarks/attack_reference.py's checks against torch and IBM ART, and
benchmarks/attack_cost.py's PGD-k cost) and `vs_pytorch` (benchmarks/vs_pytorch.py, in a
process of its own so that `--threads` pins it before JAX starts). The benchmarks compute; this
module only tabulates. --set keys are the benchmarks' own options (underscores for dashes)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from fedprompt_jax.reproduce import results_io
from fedprompt_jax.reproduce.tables import REPO, Options, Produced, ProducerError, settings

fmt = results_io.format_cell
# benchmarks/round_throughput.py's parse_args defaults; only keys given with --set are passed.
THROUGHPUT_DEFAULTS = {"quick": False, "sections": "1,2,3,4,5", "steps": 2, "batch": 32,
                       "repeats": 5, "budget": 30.0, "k": 64, "flops_k": 8, "chunk": "default",
                       "max_mem_gb": 0.0}
# benchmarks/attack_cost.py's attack section (cost=False skips it) and the reference checks.
ATTACKS_DEFAULTS = {"cost": True, "batch": 32, "steps": "1,5,10", "repeats": 9, "budget": 10.0,
                    "art": True}
# benchmarks/vs_pytorch.py's options; threads=0: each library's default threads. One pinned
# core each (threads=1) is the fair comparison on a machine that other jobs load (README).
VS_PYTORCH_DEFAULTS = {"k": 64, "steps": 2, "batch": 32, "repeats": 5, "threads": 1,
                       "quick": False}


def _benchmark(name: str):
  path = os.path.join(REPO, "benchmarks")
  if path not in sys.path:
    sys.path.insert(0, path)
  return __import__(name)


def throughput(options: Options) -> Produced:
  s = settings("throughput", options.overrides, THROUGHPUT_DEFAULTS)
  argv = []
  for item in options.overrides:
    key = item.partition("=")[0].strip()
    if key == "quick":
      argv += ["--quick"] if s["quick"] else []
    else:
      argv.append(f"--{key.replace('_', '-')}={s[key]}")
  import jax  # pylint: disable=import-outside-toplevel
  rt = _benchmark("round_throughput")
  args = rt.parse_args(argv)
  res = rt.run(args)
  rows = []
  for r in res.get("round_vs_loop", []):
    if r["mesh"] == 1 and "ratio" in r:
      rows.append((f"round (chunk {r['chunk']}) / client loop, K = {r['k']}",
                   fmt(r["ratio"], "ratio"), "-", "-"))
  if "federation_cost" in res:
    f = res["federation_cost"]
    rows.append((f"round / centralised images/s, K = {f['k']}",
                 f"{fmt(f['round_images_s'], 'int')} / {fmt(f['central_images_s'], 'int')}",
                 "-", "-"))
  for t in res.get("targets", []):
    rows.append((t["target"], fmt(t["value"], "fixed3"), t["bound"],
                 "PASS" if t["passed"] else "MISS"))
  if not rows:
    raise ProducerError(f"--set sections={s['sections']!r} measured no figure")
  table = results_io.Table(
      name="throughput", title="Round throughput",
      columns=("figure", "measured", "target", "verdict"), rows=tuple(rows),
      notes=(f"`python benchmarks/round_throughput.py{''.join(' ' + a for a in argv)}` on "
             f"{jax.default_backend()} ({len(jax.devices())} device(s)"
             f"{', QUICK sizes' if args.quick else ''}): random-weight CLIPs, FedVPT-deep, "
             f"S = {args.steps} local steps, B = {args.batch}; each time the median of up to "
             f"{args.repeats} runs, compile excluded; ratios above 1 favour the round."))
  meta = dict(args={k: v for k, v in vars(args).items()}, results=res,
              backend=jax.default_backend(), devices=len(jax.devices()))
  return Produced(table, None, meta)


def attacks(options: Options) -> Produced:
  s = settings("attacks", options.overrides, ATTACKS_DEFAULTS)
  ref = _benchmark("attack_reference")
  if not ref.HAS_TORCH:
    raise ProducerError('table attacks needs torch and transformers: pip install -e ".[torch]"')
  if s["art"] and not ref.HAS_ART:
    raise ProducerError("table attacks needs IBM's adversarial-robustness-toolbox: pip install "
                        '-e ".[torch,test]" (or --set=art=False for the torch loop only)')
  import jax  # pylint: disable=import-outside-toplevel
  with jax.default_matmul_precision("highest"):  # float32 matmuls, as the tests run them
    checks = ref.run(use_art=s["art"])
  steps = checks["pgd"]["steps"]
  k = f"steps 1..{len(steps)}"
  rows = [(f"PGD-Linf ({k}, no random start): max abs diff to a torch autograd loop",
           fmt(max(r["max_diff"] for r in steps), "sci"), "<= 1e-5"),
          ("input gradient: max abs diff torch / JAX at the loop's iterates",
           fmt(checks["pgd"]["grad_diff"], "sci"), "< " + fmt(ref.TIE / 4, "sci"))]
  if s["art"]:
    a = checks["apgd"]
    budget = (f"eps {ref.APGD_EPS * 255:g}/255, {ref.APGD_STEPS} iterations, {ref.N_APGD} "
              "images")
    rows += [(f"PGD-Linf ({k}): max abs diff to IBM ART's PGD",
              fmt(max(r["art_diff"] for r in steps), "sci"), "<= 1e-5"),
             (f"APGD-CE robust accuracy ({budget}): ours / ART",
              f"{fmt(a['ours_acc'], 'pct')}% / {fmt(a['art_acc'], 'pct')}%", "within 1 point")]
  cost = None
  if s["cost"]:
    cost = _benchmark("attack_cost").attack_section(argparse.Namespace(
        batch=s["batch"], steps=s["steps"], repeats=s["repeats"], budget=s["budget"]))
    for r in cost["rows"]:
      name = f"{r['attack'].upper()}-{r['k']}"
      rows += [(f"{name} / ({r['k']} x one jitted fwd+bwd)", fmt(r["ratio"], "ratio"),
                f"<= {cost['target']}" if r["attack"] == "pgd" else "(info)"),
               (f"{name} / one jitted loop of {r['k']} fwd+bwd", fmt(r["ratio_loop"], "ratio"),
                "-")]
  table = results_io.Table(
      name="attacks", title="Attacks against references",
      columns=("check", "measured", "bound"), rows=tuple(rows),
      notes=("benchmarks/attack_reference.py (asserted by tests/test_attacks_reference.py) on "
             "the parity fixture clip_tiny_a with a fixed 6-way head; cost rows: "
             f"benchmarks/attack_cost.py (batch {s['batch']}, tiny CLIP vision tower, random "
             f"weights, {jax.default_backend()}, medians of up to {s['repeats']} runs)."
             if s["cost"] else "benchmarks/attack_reference.py (asserted by "
             "tests/test_attacks_reference.py) on the parity fixture clip_tiny_a."))
  return Produced(table, None, dict(settings=s, checks=checks, cost=cost,
                                    backend=jax.default_backend()))


def vs_pytorch(options: Options) -> Produced:
  s = settings("vs_pytorch", options.overrides, VS_PYTORCH_DEFAULTS)
  if not _benchmark("attack_reference").HAS_TORCH:
    raise ProducerError('table vs_pytorch needs torch and transformers: pip install -e ".[torch]"')
  argv = (["--quick"] if s["quick"] else  # the benchmark's smoke sizes replace the others
          [f"--k={s['k']}", f"--steps={s['steps']}", f"--batch={s['batch']}",
           f"--repeats={s['repeats']}"])
  argv += [f"--threads={s['threads']}"] if s["threads"] else []
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "figures.json")
    run = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "vs_pytorch.py"),
                          *argv, f"--json={out}"], capture_output=True, text=True, check=False)
    if run.returncode != 0:
      tail = run.stderr.strip().splitlines()[-1:] or ["(no output)"]
      raise RuntimeError(f"benchmarks/vs_pytorch.py exited {run.returncode}: {tail[0]}")
    with open(out, encoding="utf-8") as f:
      fig = json.load(f)
  header = run.stdout.strip().splitlines()[0]  # sizes, cores, versions, threads, chunk
  t, r, targets = fig["seconds"], fig["ratios"], fig["targets"]
  median = statistics.median

  def ratio(name):
    x = r[name]
    return f"{fmt(x['median'], 'ratio')} [{x['min']:.2f}, {x['max']:.2f}]"

  def verdict(name):
    if name not in targets:
      return "-"
    return f">= {targets[name]:g}: {'PASS' if r[name]['median'] >= targets[name] else 'MISS'}"

  rows = (("FedVPT", median(t["fedvpt/torch"]), median(t["fedvpt/ours"]), ratio("fedvpt"),
           verdict("fedvpt")),
          ("PromptFL, frozen tower at every step", median(t["promptfl/torch"]),
           median(t["promptfl/ours"]), ratio("promptfl"), verdict("promptfl")),
          ("PromptFL with the frozen-feature cache", median(t["promptfl/torch"]),
           median(t["promptfl+cache/ours"]), ratio("promptfl+cache"),
           verdict("promptfl+cache")),
          ("ours: PromptFL without / with the cache", median(t["promptfl/ours"]),
           median(t["promptfl+cache/ours"]), ratio("cache_speedup"), "-"))
  drift = fig["first_round_max_abs_diff"]
  table = results_io.Table(
      name="vs_pytorch", title="Our jitted rounds against the same rounds in PyTorch",
      columns=("round", "PyTorch (s)", "ours (s)", "PyTorch / ours", "target"), rows=rows,
      formats=("g", "fixed3", "fixed3", "g", "g"),
      notes=(f"`python benchmarks/vs_pytorch.py {' '.join(argv)}`: {header}. Seconds: the "
             "median round; ratios per interleaved repeat (PyTorch's time over ours in the same "
             "repeat), median [min, max]; last row: ours against ours. The embedded tiny CLIP "
             "on both sides (transformers' PyTorch CLIPModel loads the same directory), random "
             "images, the official repositories' client loop on the PyTorch side "
             "(benchmarks/torch_reference.py). Both compute the same round: after the same "
             "warm-up round the new global prompts differ by at most "
             + ", ".join(f"{fmt(d, 'sci')} ({n})" for n, d in drift.items())
             + f". Encoding the round's images for the cache took {fig['cache_fill_seconds']:.1f}"
             " s once, outside the timed rounds (per split, not per round)."))
  return Produced(table, None, dict(settings=s, figures=fig, header=header))
