"""Prints the zero-shot top-1 accuracy of a CLIP checkpoint on a data source, per domain.

  python launch/zeroshot.py                                     # embedded tiny CLIP on shapes
  python launch/zeroshot.py --data=digits
  python launch/zeroshot.py --domains=all                       # shapes' nine domains (world v2)
  python launch/zeroshot.py --checkpoint=openai/clip-vit-base-patch16 --data=tfds \
      --tfds_name=cifar100 --data_dir=~/tensorflow_datasets
"""

import os
import sys
from collections.abc import Sequence

from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fedprompt_jax import zeroshot_eval  # noqa: E402
from fedprompt_jax.assets import world  # noqa: E402
from fedprompt_jax.data import shapes  # noqa: E402
from fedprompt_jax.data.source import load_source  # noqa: E402
from fedprompt_jax.models.hf_loader import CheckpointError, load_clip  # noqa: E402
from fedprompt_jax.models.tokenizer import TokenizerError, load_tokenizer  # noqa: E402

FLAGS = flags.FLAGS


def source_kwargs(data: str, test_per_class_domain: int = 20, seed: int = 0,
                  tfds_name: str | None = None, data_dir: str | None = None,
                  domains: Sequence[str] = ()) -> dict:
  """load_source's keywords for the test split of `data` (shapes, digits or tfds).

  `domains` (shapes only): names, or ("all",) for every domain; () for the five base ones.
  """
  if domains and data != "shapes":
    raise ValueError(f"--domains={','.join(domains)} is invalid with --data={data}; only "
                     "shapes has domains")
  if data == "shapes":
    kwargs = dict(num_train_per_class_domain=0, num_test_per_class_domain=test_per_class_domain,
                  seed=seed)
    if tuple(domains) == ("all",):
      kwargs["domains"] = shapes.DOMAINS
    elif domains:
      kwargs["domains"] = tuple(domains)
    return kwargs
  if data == "digits":
    return dict(seed=seed)
  if data == "tfds":
    if not tfds_name or not data_dir:
      raise ValueError("--data=tfds needs --tfds_name and --data_dir")
    return dict(name=tfds_name, data_dir=os.path.expanduser(data_dir))
  return {}


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # keep jax's backend probing off stderr
  try:
    model, params, ckpt_dir = load_clip(FLAGS.checkpoint)
    tok = load_tokenizer(ckpt_dir, model.config.text.max_position_embeddings)
    src = load_source(FLAGS.data, image_size=model.config.vision.image_size,
                      **source_kwargs(FLAGS.data, FLAGS.test_per_class_domain, FLAGS.seed,
                                      FLAGS.tfds_name, FLAGS.data_dir, FLAGS.domains))
    acc = zeroshot_eval.accuracy_by_domain(model, params, tok, src, FLAGS.templates,
                                           batch_size=FLAGS.batch_size)
  except (CheckpointError, TokenizerError, ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"zero-shot top-1, {FLAGS.checkpoint} on {src.name} ({len(src.test):,} test images, "
        f"{src.num_classes} classes, chance {1 / src.num_classes:.1%})")
  width = max(len(k) for k in acc)
  for name, value in acc.items():
    print(f"  {name:<{width}}  {value:6.1%}")
  return 0


def _define_flags():
  """The command's flags, defined only when it runs as a command (importing it leaves absl's
  global flags alone)."""
  flags.DEFINE_string("checkpoint", "embedded", "'embedded', a transformers-format dir or hub name")
  flags.DEFINE_string("data", "shapes", "data source: shapes, digits or tfds")
  flags.DEFINE_string("tfds_name", None, "tfds data set name (with --data=tfds)")
  flags.DEFINE_string("data_dir", None, "tfds data_dir (with --data=tfds)")
  flags.DEFINE_integer("test_per_class_domain", 20, "shapes test images per class and domain")
  flags.DEFINE_integer("seed", 0, "data seed")
  flags.DEFINE_list("domains", [], "shapes domains, or 'all'; default the five base ones")
  flags.DEFINE_list("templates", list(world.ZEROSHOT_TEMPLATES), "templates with '{}'")
  flags.DEFINE_integer("batch_size", 256, "images per forward pass")


if __name__ == "__main__":
  _define_flags()
  app.run(lambda argv: sys.exit(main(argv)))
