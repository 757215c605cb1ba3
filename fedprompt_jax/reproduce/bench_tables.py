"""The tables of the benchmarks: `throughput` (benchmarks/round_throughput.py's `run`) and
`attacks` (benchmarks/attack_reference.py's checks against torch and IBM ART, and
benchmarks/attack_cost.py's PGD-k cost). The benchmarks compute; this module only tabulates.
--set keys are the benchmarks' own options (underscores for dashes)."""

from __future__ import annotations

import argparse
import os
import sys

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
