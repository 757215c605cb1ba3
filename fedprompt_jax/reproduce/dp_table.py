"""Producer of the `dp` table: utility against privacy, as scripts/dp_sweep.py runs it.

Every run is `configs/<method>.py:dp` (config.many_clients_dp: 1,000 clients of a few images,
50 a round, uniform weights) with the seed, `rounds` rounds and the noise multiplier that makes
those rounds spend exactly the target epsilon at delta = 1/N^1.1 (dp_sweep.run_config and
noise_for, so the script and this table run the same configs). "inf" keeps DP's clipping and
uniform weights with z = 0; "off" is the same federation without DP. Runs go under
WORKDIR/dp/<method>/eps_<epsilon>_seed_<s> (dp_sweep's layout: the script's runs are reused).
"""

from __future__ import annotations

import os
import sys

from fedprompt_jax.reproduce import results_io
from fedprompt_jax.reproduce.tables import REPO, Options, Produced, ProducerError, settings

DEFAULTS = {"methods": "promptfl,fedvpt", "epsilons": "1,3,8,inf,off", "rounds": 20}
EPSILON_NAMES = {"inf": "inf (clip, z = 0)", "off": "no DP"}


def _sweep_module():
  scripts = os.path.join(REPO, "scripts")
  if scripts not in sys.path:
    sys.path.insert(0, scripts)
  import dp_sweep  # pylint: disable=import-outside-toplevel
  return dp_sweep


def _split(text: str) -> list[str]:
  return [t.strip() for t in text.split(",") if t.strip()]


def _check(methods, epsilons) -> None:
  import importlib  # pylint: disable=import-outside-toplevel
  for m in methods:
    if not os.path.exists(os.path.join(REPO, "configs", f"{m}.py")) or "dp" not in getattr(
        importlib.import_module(f"configs.{m}"), "PRESETS", {}):
      raise ProducerError(f"--set=methods has {m!r}, which has no configs/{m}.py:dp; valid: "
                          "promptfl, fedvpt, pep")
  for e in epsilons:
    if e not in EPSILON_NAMES:
      try:
        if float(e) <= 0:
          raise ValueError(e)
      except ValueError:
        raise ProducerError(f"--set=epsilons has {e!r}; valid: positive numbers, inf, "
                            "off") from None


def produce(options: Options) -> Produced:
  s = settings("dp", options.overrides, DEFAULTS)
  methods, epsilons = _split(s["methods"]), _split(s["epsilons"])
  _check(methods, epsilons)
  if s["rounds"] < 1:
    raise ProducerError(f"--set=rounds={s['rounds']}: give at least 1")
  sweep = _sweep_module()
  from fedprompt_jax import train  # pylint: disable=import-outside-toplevel
  from fedprompt_jax import workdir as workdir_lib  # pylint: disable=import-outside-toplevel
  from fedprompt_jax.privacy import settings as dp_settings  # pylint: disable=import-outside-toplevel
  finals, facts, hashes = {}, {}, {}
  for m in methods:
    for e in epsilons:
      # z depends on the federation, rounds and budget, not on the seed: calibrated once.
      noise = sweep.noise_for(sweep.run_config(m, 0, s["rounds"], e, 0.0, []), e)
      for seed in options.seeds:
        c = sweep.run_config(m, int(seed), s["rounds"], e, noise, [])
        run_dir = os.path.join(options.workdir, m, f"eps_{e}_seed_{seed}")
        finals[(m, e, seed)] = train.train_and_evaluate(c, run_dir)[-1]
        hashes[f"{m}/eps_{e}/seed_{seed}"] = workdir_lib.config_hash(c)
        facts[(m, e)] = dict(noise=noise, clip=c.dp.clip, n=c.fed.num_clients,
                             k=c.fed.clients_per_round, delta=dp_settings.delta(c))
  # Every method's runs see the same test images: one zero-shot row.
  zeroshot = [finals[(methods[0], epsilons[0], seed)]["zeroshot_acc"] for seed in options.seeds]
  rows = [("zero-shot", "-", None, None) + tuple(zeroshot) + (results_io.mean_std(zeroshot),)]
  for m in methods:
    for e in epsilons:
      accs = [finals[(m, e, seed)]["global_acc"] for seed in options.seeds]
      spent = [finals[(m, e, seed)].get("dp_epsilon") for seed in options.seeds]
      rows.append((m, EPSILON_NAMES.get(e, e), facts[(m, e)]["noise"] if e != "off" else None,
                   max(spent) if e not in EPSILON_NAMES else None) + tuple(accs)
                  + (results_io.mean_std(accs),))
  first = facts[(methods[0], epsilons[0])]
  clips = ", ".join(f"{m} {facts[(m, epsilons[0])]['clip']:g}" for m in methods)
  table = results_io.Table(
      name="dp",
      title="Utility against privacy: global top-1 after client-level DP-FedAvg, in %",
      columns=("method", "epsilon", "z", "epsilon spent")
      + tuple(f"seed {x}" for x in options.seeds) + ("mean +- std",),
      rows=tuple(rows),
      formats=("g", "g", "fixed3", "fixed3") + ("pct",) * len(options.seeds) + ("g",),
      notes=(f"`configs/<method>.py:dp` (N = {first['n']:,} clients, K = {first['k']} a round, "
             f"uniform weights; clip: {clips}), {s['rounds']} rounds; z calibrated so that the "
             f"rounds spend the target epsilon at delta = 1/N^1.1 = {first['delta']:.2g} "
             "(`scripts/dp_sweep.py`'s configs); \"inf\": clipping and uniform weights, z = 0; "
             "\"no DP\": the same federation without DP. Global top-1 on the three federated "
             "tinted domains' test images, final round."))
  meta = dict(seeds=list(options.seeds), settings=s, config_hash=hashes,
              final_records={f"{m}/eps_{e}/seed_{seed}": r for (m, e, seed), r in finals.items()},
              noise={f"{m}/eps_{e}": f["noise"] for (m, e), f in facts.items()})
  return Produced(table, lambda path: _figure(finals, methods, epsilons, options.seeds, path),
                  meta)


def _figure(finals, methods, epsilons, seeds, path: str) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  finite = [e for e in epsilons if e not in EPSILON_NAMES]
  top = max(map(float, finite)) if finite else 1.0
  xs = {e: float(e) if e in finite else top * (3.0 if e == "inf" else 9.0) for e in epsilons}
  fig, ax = plt.subplots(figsize=(5.2, 3.4))
  for i, m in enumerate(methods):
    colour = f"C{i}"
    means = []
    for e in epsilons:
      accs = [100 * finals[(m, e, s)]["global_acc"] for s in seeds]
      ax.scatter([xs[e]] * len(accs), accs, color=colour, s=12, alpha=0.5)
      means.append(sum(accs) / len(accs))
    ax.plot([xs[e] for e in epsilons], means, color=colour, marker="_", label=m)
    zs = [100 * finals[(m, epsilons[0], s)]["zeroshot_acc"] for s in seeds]
    if i == 0:
      ax.axhline(sum(zs) / len(zs), color="grey", ls="--", lw=1, label="zero-shot")
  ax.set_xscale("log")
  ax.set_xticks([xs[e] for e in epsilons])
  ax.set_xticklabels([{"inf": "inf (z=0)", "off": "no DP"}.get(e, e) for e in epsilons])
  ax.minorticks_off()
  ax.set_xlabel("epsilon (delta = 1/N^1.1)")
  ax.set_ylabel("global top-1 (%)")
  ax.set_title("client-level DP-FedAvg, mean over seeds (points: seeds)", fontsize=9)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
