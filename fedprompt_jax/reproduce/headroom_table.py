"""The `headroom` table: room for prompts, centralised 16-shot deep VPT against zero-shot.

Two parts, per seed (fedprompt_jax/headroom.py, as `python scripts/prompt_headroom.py` runs it):
- world v2: ONE prompt trained on the union of 16 shots per class from each federated tinted
  domain (world.FEDERATED_DOMAINS), tested on each of them and on the held-out
  world.UNSEEN_DOMAIN;
- per target (`targets`): a prompt trained and tested on one domain (world v1's rows).
Rows: zero-shot, prompted and gain per seed, then their means. Figure: the gains per seed.
"""

from __future__ import annotations

import numpy as np

from fedprompt_jax.reproduce import results_io
from fedprompt_jax.reproduce.tables import Options, Produced, settings


def _defaults() -> dict:
  from fedprompt_jax.assets import world  # pylint: disable=import-outside-toplevel
  return {"checkpoint": "embedded", "union": ",".join(world.FEDERATED_DOMAINS),
          "heldout": world.UNSEEN_DOMAIN,
          "targets": "falsecolour,pattern,noisy,photo,sketch,digits",
          "shots": 16, "tokens": 8, "steps": 300, "batch": 64, "lr": 3e-2}


def _split(text: str) -> tuple[str, ...]:
  return tuple(t.strip() for t in text.split(",") if t.strip())


def produce(options: Options) -> Produced:
  from fedprompt_jax import headroom  # pylint: disable=import-outside-toplevel
  from fedprompt_jax.models.hf_loader import load_clip  # pylint: disable=import-outside-toplevel
  from fedprompt_jax.models.tokenizer import load_tokenizer  # pylint: disable=import-outside-toplevel
  s = settings("headroom", options.overrides, _defaults())
  protocol = headroom.Settings(s["shots"], s["tokens"], s["steps"], s["batch"], s["lr"])
  union, heldout, targets = _split(s["union"]), _split(s["heldout"]), _split(s["targets"])
  model, params, ckpt = load_clip(s["checkpoint"])
  tok = load_tokenizer(ckpt, model.config.text.max_position_embeddings)
  measured = {}  # (part, target) -> [Row per seed]
  for seed in (int(x) for x in options.seeds):
    if union:
      for row in headroom.measure_union(model, params, tok, union, heldout, seed, protocol):
        part = "union" if row.target in union else "union, held out"
        measured.setdefault((part, row.target), []).append(row)
    for target in targets:
      row = headroom.measure_target(model, params, tok, target, seed, protocol)
      measured.setdefault(("alone", target), []).append(row)

  def per_seed(rows, fn, fmt):
    return " / ".join(results_io.format_cell(fn(r), fmt) for r in rows)

  table_rows = []
  for (part, target), rows in measured.items():
    trained = {"union": "the union (v2)", "union, held out": "none (held out, v2)",
               "alone": "itself"}[part]
    table_rows.append((
        f"`{target}`", trained,
        per_seed(rows, lambda r: r.zero_shot, "pct"), per_seed(rows, lambda r: r.prompted, "pct"),
        per_seed(rows, lambda r: r.gain_points, "fixed1"),
        float(np.mean([r.zero_shot for r in rows])), float(np.mean([r.prompted for r in rows])),
        float(np.mean([r.gain_points for r in rows]))))
  seeds = ", ".join(options.seeds)
  table = results_io.Table(
      name="headroom",
      title=f"Room for prompts: zero-shot against {protocol.shots}-shot deep VPT, in %",
      columns=("domain", "prompt trained on", f"zero-shot (seeds {seeds})", "deep VPT",
               "gain (points)", "zero-shot, mean", "deep VPT, mean", "gain, mean"),
      rows=tuple(table_rows),
      formats=("g", "g", "g", "g", "g", "pct", "pct", "fixed1"),
      notes=(f"Centralised deep VPT ({protocol.tokens} tokens x every layer, {protocol.steps} "
             f"Adam steps at {protocol.lr:g}, batch {protocol.batch}, cosine; cross-entropy over "
             f"the frozen zero-shot head of the {s['checkpoint']} CLIP), "
             f"{protocol.shots} shots per class and domain; test: "
             f"{headroom.TEST_PER_CLASS_DOMAIN} images per class and domain (digits: its "
             f"test split). \"the union (v2)\": one prompt for {', '.join(union)} together; "
             f"the held-out row is that prompt on {', '.join(heldout) or '-'}, never trained on; "
             f"\"itself\": a prompt per domain (world v1's rows)."))

  def figure(path):
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    tick = {"alone": "alone", "union": "union", "union, held out": "held out"}
    names = [f"{t}\n({tick.get(p, p)})" for p, t in measured]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names)), 3.6))
    x = np.arange(len(names))
    zs = [np.mean([r.zero_shot for r in rows]) * 100 for rows in measured.values()]
    vpt = [np.mean([r.prompted for r in rows]) * 100 for rows in measured.values()]
    ax.bar(x - 0.2, zs, 0.4, label="zero-shot", color="0.6")
    ax.bar(x + 0.2, vpt, 0.4, label=f"{protocol.shots}-shot deep VPT", color="C0")
    for i, rows in enumerate(measured.values()):
      ax.plot([i + 0.2] * len(rows), [r.prompted * 100 for r in rows], "k.", ms=3)
      ax.plot([i - 0.2] * len(rows), [r.zero_shot * 100 for r in rows], "k.", ms=3)
    ax.set_xticks(x, names, fontsize=7)
    ax.set_ylabel("test top-1 (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"Room for prompts (mean over seeds {seeds}; dots: seeds)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

  meta = dict(seeds=list(options.seeds), settings=s,
              rows={f"{p}/{t}": [vars(r) | {"trained_on": list(r.trained_on)} for r in rows]
                    for (p, t), rows in measured.items()})
  return Produced(table, figure, meta)
