"""Utility against privacy: final accuracy at epsilon in {1, 3, 8, inf} after a fixed number of rounds.

  python scripts/dp_sweep.py                       # PromptFL's dp preset, seeds 0 1 2, 20 rounds
  python scripts/dp_sweep.py --method=fedvpt --seeds=0 --set=fed.num_clients=2000
  python launch/reproduce.py --table=dp            # the README's table: these configs, every method

Every run is `configs/<method>.py:dp` (config.many_clients_dp: 1,000 clients of a few images, 50 a
round) with the seed, `--rounds` rounds and the noise multiplier that makes those rounds spend
exactly the target epsilon at delta = 1/N^1.1 (`privacy.accountant.noise_for_epsilon`);
dp.target_epsilon is set to the target as a guard. "inf" keeps DP's clipping and uniform
weights with no noise (z = 0), so that row isolates what the noise costs; "off" (optional) is the
same federation without DP. Robust evaluation is off and only rounds 0 and R are evaluated, to
spend the time on training. Each run has its own workdir under --root, so a rerun resumes or
reuses finished runs; the table (markdown), sweep.json and sweep.png are written to --root.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fedprompt_jax import config as config_lib  # noqa: E402
from fedprompt_jax.privacy import accountant as accountant_lib  # noqa: E402
from fedprompt_jax.privacy import settings as dp_settings  # noqa: E402


def run_config(method: str, seed: int, rounds: int, epsilon: str, noise: float, overrides):
  c = importlib.import_module(f"configs.{method}").get_config("dp")
  c.seed, c.fed.rounds, c.eval.every, c.adv.eval, c.adv.sanity_attack = seed, rounds, rounds, (), ""
  if overrides:
    config_lib.apply_arg(c, ",".join(overrides), {})
  if epsilon == "off":
    c.dp.enabled = False
  else:
    c.dp.noise_multiplier = noise
    c.dp.target_epsilon = None if epsilon == "inf" else float(epsilon)
  return c


def noise_for(c, epsilon: str) -> float:
  if epsilon in ("inf", "off"):
    return 0.0
  return accountant_lib.noise_for_epsilon(
      c.fed.num_clients, c.fed.clients_per_round, c.fed.rounds, float(epsilon),
      dp_settings.delta(c), dp_settings.releases(c))


def plot(rows, epsilons, path, title):
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  finite = [e for e in epsilons if e not in ("inf", "off")]
  xs = {e: (float(e) if e in finite else max(map(float, finite)) * 2.5 * (1.6 if e == "off" else 1))
        for e in epsilons}
  fig, ax = plt.subplots(figsize=(5, 3.4))
  for e in epsilons:
    accs = [100 * r["global_acc"] for r in rows if r["epsilon"] == e]
    if accs:
      ax.scatter([xs[e]] * len(accs), accs, color="tab:blue", s=14, alpha=0.6)
      ax.scatter([xs[e]], [statistics.mean(accs)], color="tab:red", marker="_", s=300)
  zs = [100 * r["zeroshot_acc"] for r in rows][:1]
  if zs:
    ax.axhline(zs[0], color="grey", ls="--", lw=1, label="zero-shot")
  ax.set_xscale("log")
  ax.set_xticks([xs[e] for e in epsilons])
  ax.set_xticklabels([("\u221e (z=0)" if e == "inf" else "no DP") if e in ("inf", "off") else e
                      for e in epsilons])
  ax.set_xlabel("epsilon (delta = 1/N^1.1)")
  ax.set_ylabel("global top-1 (%)")
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--method", default="promptfl", help="configs/<method>.py with a dp preset")
  p.add_argument("--seeds", default="0,1,2")
  p.add_argument("--epsilons", default="1,3,8,inf", help="comma-separated; 'inf', 'off' allowed")
  p.add_argument("--rounds", type=int, default=20)
  p.add_argument("--root", default="workdirs/dp_sweep")
  p.add_argument("--set", action="append", default=[], help="key=value config override")
  a = p.parse_args(argv)
  from fedprompt_jax import train  # pylint: disable=import-outside-toplevel
  seeds = [int(s) for s in a.seeds.split(",")]
  epsilons = a.epsilons.split(",")
  root = os.path.join(a.root, a.method)
  os.makedirs(root, exist_ok=True)
  rows = []
  for seed in seeds:
    for epsilon in epsilons:
      c = run_config(a.method, seed, a.rounds, epsilon, 0.0, a.set)
      noise = noise_for(c, epsilon)
      c = run_config(a.method, seed, a.rounds, epsilon, noise, a.set)
      workdir = os.path.join(root, f"eps_{epsilon}_seed_{seed}")
      start = time.time()
      records = train.train_and_evaluate(c, workdir)
      final = records[-1]
      rows.append(dict(method=a.method, seed=seed, epsilon=epsilon, noise_multiplier=noise,
                       clip=c.dp.clip, rounds=final["round"],
                       dp_epsilon=final.get("dp_epsilon"), dp_delta=final.get("dp_delta"),
                       global_acc=final["global_acc"], zeroshot_acc=final["zeroshot_acc"],
                       train_loss=final.get("train_loss"), seconds=time.time() - start,
                       num_clients=c.fed.num_clients, clients_per_round=c.fed.clients_per_round))
      print(f"[sweep] {json.dumps(rows[-1])}", flush=True)
      with open(os.path.join(root, "sweep.json"), "w") as f:
        json.dump(rows, f, indent=1)
  c = run_config(a.method, seeds[0], a.rounds, epsilons[0], 0.0, a.set)
  lines = [f"| epsilon (delta = {dp_settings.delta(c):.2g}) | z | "
           + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
           "|---|---|" + "---|" * (len(seeds) + 1)]
  for epsilon in epsilons:
    mine = [r for r in rows if r["epsilon"] == epsilon]
    accs = [100 * r["global_acc"] for r in mine]
    name = {"inf": "inf (clip, z = 0)", "off": "no DP"}.get(epsilon, epsilon)
    spent = "" if epsilon in ("inf", "off") else f" ({mine[0]['dp_epsilon']:.2f} spent)"
    lines.append(f"| {name}{spent} | {mine[0]['noise_multiplier']:.3g} | "
                 + " | ".join(f"{x:.1f}" for x in accs) + f" | {statistics.mean(accs):.1f} |")
  table = "\n".join(lines)
  print(table)
  with open(os.path.join(root, "sweep.md"), "w") as f:
    f.write(table + "\n")
  plot(rows, epsilons, os.path.join(root, "sweep.png"),
       f"{a.method}:dp, N={c.fed.num_clients}, K={c.fed.clients_per_round}, {a.rounds} rounds, "
       f"clip {c.dp.clip:g}")
  return rows


if __name__ == "__main__":
  main()
