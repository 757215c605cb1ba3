"""The `zeroshot` table: zero-shot top-1 of a checkpoint per shapes domain and on digits, one
column per data seed (the seed renders the test images), as `python launch/zeroshot.py
--data=shapes|digits --seed=S` computes it (its source_kwargs, zeroshot_eval)."""

from __future__ import annotations

import os
import sys

from fedprompt_jax.reproduce import results_io
from fedprompt_jax.reproduce.tables import REPO, Options, Produced, settings

# Shapes in all nine domains (world v1's five and v2's four tinted ones).
DEFAULTS = {"checkpoint": "embedded", "data": "shapes,digits", "domains": "all",
            "test_per_class_domain": 20, "batch_size": 256}


def produce(options: Options) -> Produced:
  s = settings("zeroshot", options.overrides, DEFAULTS)
  sys.path.insert(0, os.path.join(REPO, "launch"))
  import zeroshot as zeroshot_command  # pylint: disable=import-outside-toplevel
  from fedprompt_jax import zeroshot_eval  # pylint: disable=import-outside-toplevel
  from fedprompt_jax.assets import world  # pylint: disable=import-outside-toplevel
  from fedprompt_jax.data.source import load_source  # pylint: disable=import-outside-toplevel
  from fedprompt_jax.models.hf_loader import load_clip  # pylint: disable=import-outside-toplevel
  from fedprompt_jax.models.tokenizer import load_tokenizer  # pylint: disable=import-outside-toplevel
  model, params, ckpt_dir = load_clip(s["checkpoint"])
  tok = load_tokenizer(ckpt_dir, model.config.text.max_position_embeddings)
  templates = list(world.ZEROSHOT_TEMPLATES)
  acc, sizes = {}, {}  # (data, domain) -> {seed: accuracy}
  for data in [d.strip() for d in s["data"].split(",") if d.strip()]:
    for seed in options.seeds:
      domains = tuple(d for d in s["domains"].split(",") if d) if data == "shapes" else ()
      kwargs = zeroshot_command.source_kwargs(data, s["test_per_class_domain"], int(seed),
                                              domains=domains)
      src = load_source(data, image_size=model.config.vision.image_size, **kwargs)
      sizes[data] = (len(src.test), src.num_classes)
      by_domain = zeroshot_eval.accuracy_by_domain(model, params, tok, src, templates,
                                                   batch_size=s["batch_size"])
      for domain, value in by_domain.items():
        acc.setdefault((data, domain), {})[seed] = value
  rows = tuple((data if domain == "all" else f"{data} `{domain}`",)
               + tuple(by_seed[seed] for seed in options.seeds)
               + (results_io.mean_std(list(by_seed.values())),)
               for (data, domain), by_seed in acc.items())
  described = "; ".join(f"{d}: {n:,} test images, {c} classes (chance {100 / c:.1f}%)"
                        for d, (n, c) in sizes.items())
  table = results_io.Table(
      name="zeroshot", title=f"Zero-shot top-1 of the {s['checkpoint']} CLIP, in %",
      columns=("data",) + tuple(f"seed {x}" for x in options.seeds) + ("mean +- std",),
      rows=rows, formats=("g",) + ("pct",) * len(options.seeds) + ("g",),
      notes=(f"`python launch/zeroshot.py --checkpoint={s['checkpoint']} --data=DATA --seed=S` "
             f"(shapes with `--domains={s['domains']}`) "
             f"(seed = the rendered test data; templates: the world's "
             f"{len(templates)} generic ones); {described}."))
  meta = dict(seeds=list(options.seeds), settings=s, templates=templates,
              accuracy={f"{d}/{dom}": v for (d, dom), v in acc.items()})
  return Produced(table, None, meta)
