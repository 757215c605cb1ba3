"""Writes a data set as a tensorflow-datasets set in ArrayRecord files (no TensorFlow needed).

  python scripts/write_array_record.py --source=shapes --name=shapes_ar \\
      --data_dir=/tmp/tfds --image_size=32 [--encoding=raw|png]
  python scripts/write_array_record.py --source=noise --name=noise_big \\
      --data_dir=/tmp/tfds --image_size=160 --train_examples=100000 --test_examples=1000

Sources: "shapes" and "digits" (the project's generated and bundled sets, made in
memory at --image_size, then written), or "noise": --train_examples/--test_examples
examples of --classes noisy colours, made one at a time while writing, so a set of
any size can be written with little memory (fedprompt_jax/data/tfds_writer.py).

Train on it with --config.data.source=tfds --config.data.tfds_name=NAME
--config.data.data_dir=DIR, and --config.data.storage=array_record to read the
images per batch instead of holding them in memory.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

SOURCES = ("shapes", "digits", "noise")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--source", required=True, choices=SOURCES)
  parser.add_argument("--name", required=True, help="the tfds name to write (snake_case)")
  parser.add_argument("--data_dir", required=True, help="the tfds data directory")
  parser.add_argument("--image_size", type=int, required=True, help="stored side S (S x S x 3)")
  parser.add_argument("--encoding", default="raw", choices=("raw", "png"))
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--train_per_class_domain", type=int, default=40, help="shapes")
  parser.add_argument("--test_per_class_domain", type=int, default=10, help="shapes")
  parser.add_argument("--train_examples", type=int, default=10_000, help="noise")
  parser.add_argument("--test_examples", type=int, default=1_000, help="noise")
  parser.add_argument("--classes", type=int, default=10, help="noise")
  args = parser.parse_args(argv)
  from fedprompt_jax.data import source, tfds_writer  # pylint: disable=import-outside-toplevel
  start = time.time()
  if args.source == "noise":
    splits = {"train": tfds_writer.noise_split(args.train_examples, args.image_size,
                                               args.classes, args.seed),
              "test": tfds_writer.noise_split(args.test_examples, args.image_size,
                                              args.classes, args.seed + 1)}
    names = tuple(f"colour {c}" for c in range(args.classes))
    path = tfds_writer.write(args.data_dir, args.name, names, splits, args.image_size,
                             encoding=args.encoding)
  else:
    kwargs = (dict(num_train_per_class_domain=args.train_per_class_domain,
                   num_test_per_class_domain=args.test_per_class_domain, seed=args.seed)
              if args.source == "shapes" else dict(seed=args.seed))
    src = source.load_source(args.source, image_size=args.image_size, **kwargs)
    path = tfds_writer.write_source(src, args.data_dir, args.name, encoding=args.encoding)
  size = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path)
             for f in files)
  print(f"{path}: {size / 1e6:.1f} MB in {time.time() - start:.1f} s")
  return 0


if __name__ == "__main__":
  sys.exit(main())
