"""A finished run's global model on another class set or other domains (cross-data evaluation).

The trained prompt tree is kept; everything a method computes from the class set
(`aux`: FedAPT's Global Label Embedding G and class-prompt ids, PromptFL's class-name
tokens, FedVPT's zero-shot head, FedMVP's attribute-sentence features t_{c,j}) is rebuilt
by `prepare` for the target's classes (with the target's attribute sentences), and
the global model's client constant is built for the target's width (a uniform
histogram: a local-label-space mask of all ones). Methods whose trained parameters or
server state have a class axis (PEP-FedPT's class prompts, head and prototypes; FedAPT
with `gle_trainable`) cannot move to another class set; `class_tied_leaves` names them.

Shapes: C classes (C_run trained, C_target evaluated), N examples.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import traverse_util

from fedprompt_jax.data import dataset, shapes
from fedprompt_jax.data.dataset import DataSource, Split
from fedprompt_jax.methods import base

Tree = Any
TARGETS = ("shapes", "digits", "tfds")


def target_config(c: ml_collections.ConfigDict, data: str, domains: tuple[str, ...] = (),
                  tfds_name: str = "", data_dir: str = "",
                  attributes_file: str = "") -> ml_collections.ConfigDict:
  """The run's config with its data section pointed at the target (test split only).

  Shapes keeps the run's per-class-and-domain test size and seed; with no `domains` it
  evaluates the shapes domains of the run's world that it did not train on: the tinted
  ones (world v2) if it trained on any tinted domain, else the five base ones (all five
  if it trained elsewhere).
  Attribute sentences (FedMVP) are the target's: `attributes_file` if given, else the run's
  file when the target is the run's own data set (other domains of its classes), else the
  target's shipped file (assets/attributes/<name>.json), if any.
  """
  if data not in TARGETS:
    raise ValueError(f"--data={data!r} is invalid; valid: {', '.join(TARGETS)}")
  if domains and data != "shapes":
    raise ValueError(f"--domains={','.join(domains)} is invalid with --data={data}; only "
                     "shapes has domains")
  unknown = [d for d in domains if d not in shapes.DOMAINS]
  if unknown:
    raise ValueError(f"--domains has unknown {unknown}; valid: {', '.join(shapes.DOMAINS)}")
  t = ml_collections.ConfigDict(c.to_dict())
  t.data.source = data
  t.data.base_novel = False
  if data == "shapes":
    trained = tuple(c.data.domains or shapes.BASE_DOMAINS) if c.data.source == "shapes" else ()
    world_domains = (shapes.TINTED_DOMAINS if set(trained) & set(shapes.TINTED_DOMAINS)
                     else shapes.BASE_DOMAINS)
    t.data.domains = tuple(domains) or tuple(d for d in world_domains if d not in trained)
    if not t.data.domains:
      raise ValueError("the run trained on every shapes domain; give --domains=<names> "
                       f"(valid: {', '.join(shapes.DOMAINS)})")
    t.data.train_per_class_domain = 0  # only the test split is used
  elif data == "tfds":
    t.data.tfds_name = tfds_name or (c.data.tfds_name if c.data.source == "tfds" else "")
    t.data.data_dir = data_dir or (c.data.data_dir if c.data.source == "tfds" else "")
    t.data.tfds_domain_configs = ()
    if not (t.data.tfds_name and t.data.data_dir):
      raise ValueError("--data=tfds needs --tfds_name and --data_dir")
  same_set = data == c.data.source and (data != "tfds" or t.data.tfds_name == c.data.tfds_name)
  t.data.attributes_file = attributes_file or (c.data.attributes_file if same_set else "")
  return t


def _shapes(tree: Tree) -> dict:
  flat = traverse_util.flatten_dict(tree) if isinstance(tree, dict) and tree else {}
  return {"/".join(map(str, k)): tuple(v.shape) for k, v in flat.items()}


def class_tied_leaves(method: base.PromptMethod, run_aux: Tree, probe_aux: Tree) -> list[str]:
  """Params and server-state leaves whose shape follows the class set ("name [shape]").

  `probe_aux` is `prepare` of a class set with another number of classes than `run_aux`'s;
  only shapes are computed (jax.eval_shape), nothing is initialised.
  """
  def shapes_of(aux):
    params = jax.eval_shape(lambda a: method.init(jax.random.key(0), a), aux)
    extra = jax.eval_shape(method.init_extra, aux)
    return {**{f"params/{k}": v for k, v in _shapes(params).items()},
            **{f"extra/{k}": v for k, v in _shapes(extra).items()}}

  run, probe = shapes_of(run_aux), shapes_of(probe_aux)
  return [f"{k} {list(v)}" for k, v in run.items() if probe.get(k) != v]


def check_transferable(method: base.PromptMethod, ctx: base.Context, run_aux: Tree,
                       run_classes: tuple[str, ...], target_aux: Tree) -> None:
  """Raises ValueError (one line) if the trained tree cannot serve the target's class set."""
  target_classes = tuple(ctx.class_names)
  if target_classes == tuple(run_classes):
    return
  probe_aux = target_aux
  if len(target_classes) == len(run_classes):  # same width: probe with one class fewer
    probe_aux = method.prepare(base.Context(ctx.model, ctx.frozen, ctx.tokenizer,
                                            target_classes[:-1], ctx.attributes))
  tied = class_tied_leaves(method, run_aux, probe_aux)
  if tied:
    raise ValueError(f"method {method.name!r} cannot transfer to another class set: its "
                     f"trained {', '.join(tied)} {'is' if len(tied) == 1 else 'are'} tied to "
                     f"the run's {len(run_classes)} classes (the target has "
                     f"{len(target_classes)}); evaluate it on other domains of the same "
                     "classes instead")


def uniform_client(method: base.PromptMethod, num_classes: int) -> Tree:
  """The global model's client constant for a C-class set (a local label mask of all ones)."""
  return method.init_client(jnp.ones((num_classes,), jnp.float32))


def subset(split: Split, rows: np.ndarray) -> Split:
  return dataset.subset(split, rows)  # stored images stay stored


def domain_rows(source: DataSource, examples: int) -> dict[str, np.ndarray]:
  """{"" or domain name: the first `examples` (0 = all) test rows of it} in split order."""
  test = source.test
  if source.domain_names is None or test.domains is None:
    rows = {"": np.arange(len(test))}
  else:
    rows = {name: np.flatnonzero(test.domains == d) for d, name in enumerate(source.domain_names)}
  return {k: (v[:examples] if examples else v) for k, v in rows.items()}


def robust_by_domain(robust, frozen, params, aux, extra, client, source: DataSource,
                     examples: int, batch_size: int, key) -> dict:
  """Clean and robust accuracy on each domain's first `examples` test rows (one key per row).

  Keys: robust_acc/<attack> without domains, robust_acc/<domain>/<attack> with them; the
  free gradient-masking checks likewise as robust_sanity/[<domain>/]<check>.
  """
  from fedprompt_jax import evaluate  # pylint: disable=import-outside-toplevel
  out = {}
  for name, rows in domain_rows(source, examples).items():
    part = subset(source.test, rows)
    report = evaluate.robust_report(robust, frozen, params, aux, extra, client, part, len(part),
                                    min(batch_size, len(part)), key)
    for key_name, value in report.items():  # robust_acc/... and robust_sanity/... keys
      group, rest = key_name.split("/", 1)
      out[f"{group}/{name}/{rest}" if name else key_name] = value
    out[f"examples/{name}" if name else "examples"] = len(part)
  return out

