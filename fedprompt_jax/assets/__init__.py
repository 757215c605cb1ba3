"""Files that ship inside the package: the embedded tiny CLIP (transformers format)."""

import os

# `load_clip("embedded")` resolves to this directory.
EMBEDDED = "embedded"
TINY_CLIP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny_clip")
