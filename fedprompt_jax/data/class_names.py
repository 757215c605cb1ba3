"""Readable class names for tensorflow-datasets image classification sets.

tfds stores label names inside each prepared data set, but for some sets they
are missing, bare numbers ("0".."99", e.g. under `tfds.testing.mock_data` or for
MNIST/SVHN) or written for machines ("aquarium_fish", "SeaLake"). The lists
here are the human-readable names used to build CLIP text prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
import re

_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

CIFAR10: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)

CIFAR100: tuple[str, ...] = (
    "apple", "aquarium fish", "baby", "bear", "beaver", "bed", "bee", "beetle",
    "bicycle", "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel",
    "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee", "clock",
    "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster",
    "house", "kangaroo", "keyboard", "lamp", "lawn mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple tree", "motorcycle", "mountain", "mouse",
    "mushroom", "oak tree", "orange", "orchid", "otter", "palm tree", "pear",
    "pickup truck", "pine tree", "plain", "plate", "poppy", "porcupine",
    "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea",
    "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet pepper", "table",
    "tank", "telephone", "television", "tiger", "tractor", "train", "trout",
    "tulip", "turtle", "wardrobe", "whale", "willow tree", "wolf", "woman",
    "worm",
)

CIFAR100_COARSE: tuple[str, ...] = (
    "aquatic mammals", "fish", "flowers", "food containers",
    "fruit and vegetables", "household electrical devices",
    "household furniture", "insects", "large carnivores",
    "large man-made outdoor things", "large natural outdoor scenes",
    "large omnivores and herbivores", "medium-sized mammals",
    "non-insect invertebrates", "people", "reptiles", "small mammals", "trees",
    "vehicles 1", "vehicles 2",
)

# The EuroSAT names used by CoOp-style prompt tuning.
EUROSAT: tuple[str, ...] = (
    "annual crop land", "forest", "herbaceous vegetation land",
    "highway or road", "industrial buildings", "pasture land",
    "permanent crop land", "residential buildings", "river", "sea or lake",
)

# Tiny-ImageNet's 200 classes in the order of their sorted WordNet ids
# (data/tiny_imagenet.py WNIDS), named as in OpenAI's CLIP ImageNet prompt list
# (notebooks/Prompt_Engineering_for_ImageNet.ipynb), which CLIP zero-shot uses.
TINY_IMAGENET: tuple[str, ...] = (
    "goldfish", "fire salamander", "American bullfrog", "tailed frog", "American alligator",
    "boa constrictor", "trilobite", "scorpion", "southern black widow", "tarantula", "centipede",
    "goose", "koala", "jellyfish", "brain coral", "snail", "slug", "sea slug", "American lobster",
    "spiny lobster", "black stork", "king penguin", "albatross", "dugong", "Chihuahua",
    "Yorkshire Terrier", "Golden Retriever", "Labrador Retriever", "German Shepherd Dog",
    "Standard Poodle", "tabby cat", "Persian cat", "Egyptian Mau", "cougar", "lion", "brown bear",
    "ladybug", "fly", "bee", "grasshopper", "stick insect", "cockroach", "praying mantis",
    "dragonfly", "monarch butterfly", "sulphur butterfly", "sea cucumber", "guinea pig", "pig",
    "ox", "bison", "bighorn sheep", "gazelle", "arabian camel", "orangutan", "chimpanzee",
    "baboon", "African bush elephant", "red panda", "abacus", "academic gown", "altar", "apron",
    "backpack", "baluster / handrail", "barbershop", "barn", "barrel", "basketball", "bathtub",
    "station wagon", "lighthouse", "beaker", "beer bottle", "bikini", "binoculars", "birdhouse",
    "bow tie", "brass memorial plaque", "broom", "bucket", "high-speed train", "butcher shop",
    "candle", "cannon", "cardigan", "automated teller machine", "CD player", "chain",
    "storage chest", "Christmas stocking", "cliff dwelling", "computer keyboard", "candy store",
    "convertible", "construction crane", "dam", "desk", "dining table", "drumstick", "dumbbell",
    "flagpole", "fountain", "freight car", "frying pan", "fur coat", "gas mask or respirator",
    "go-kart", "gondola", "hourglass", "iPod", "rickshaw", "kimono", "lampshade", "lawn mower",
    "lifeboat", "limousine", "magnetic compass", "maypole", "military uniform", "miniskirt",
    "moving van", "metal nail", "neck brace", "obelisk", "oboe", "pipe organ", "parking meter",
    "payphone", "picket fence", "pill bottle", "plunger", "pole", "police van", "poncho",
    "soda bottle", "potter's wheel", "missile", "punching bag", "fishing casting reel",
    "refrigerator", "remote control", "rocking chair", "rugby ball", "sandal", "school bus",
    "scoreboard", "sewing machine", "snorkel", "sock", "sombrero", "space heater", "spider web",
    "sports car", "through arch bridge", "stopwatch", "sunglasses", "suspension bridge",
    "swim trunks / shorts", "syringe", "teapot", "teddy bear", "thatched roof", "torch", "tractor",
    "triumphal arch", "trolleybus", "turnstile", "umbrella", "vestment", "viaduct", "volleyball",
    "water jug", "water tower", "wok", "wooden spoon", "comic book", "plate", "guacamole",
    "ice cream", "popsicle", "pretzel", "mashed potatoes", "cauliflower", "bell pepper",
    "mushroom", "orange", "lemon", "banana", "pomegranate", "meatloaf", "pizza", "pot pie",
    "espresso", "mountain", "cliff", "coral reef", "lakeshore", "beach", "acorn",
)

# (tfds data set name without config or version, label feature) -> names.
SHIPPED: dict[tuple[str, str], tuple[str, ...]] = {
    ("cifar10", "label"): CIFAR10,
    ("cifar10_1", "label"): CIFAR10,
    ("cifar10_corrupted", "label"): CIFAR10,
    ("cifar100", "label"): CIFAR100,
    ("cifar100", "coarse_label"): CIFAR100_COARSE,
    ("eurosat", "label"): EUROSAT,
    ("mnist", "label"): _DIGITS,
    ("svhn_cropped", "label"): _DIGITS,
    ("tiny_imagenet", "label"): TINY_IMAGENET,
}

_MACHINE_NAME = re.compile(r"^(n\d{8}|[\W\d_]*)$")  # WordNet ids, bare numbers


def is_readable(names: Sequence[str]) -> bool:
  """Whether tfds label names can serve as prompt words.

  False when there are none, or any is a bare number, punctuation or a WordNet
  id such as "n01440764".
  """
  return bool(names) and not any(_MACHINE_NAME.match(n.strip()) for n in names)


def tidy(name: str) -> str:
  """Turns a tfds label name into prompt words: "maple_tree" -> "maple tree"."""
  return " ".join(name.replace("_", " ").split())


def resolve(
    dataset: str, label_key: str, tfds_names: Sequence[str] | None, num_classes: int,
) -> tuple[str, ...]:
  """Returns readable class names for a tfds label feature.

  A shipped list for the data set wins; else the tfds names are used when
  readable (underscores become spaces).

  Args:
    dataset: tfds name, optionally with config and version ("cifar100:3.0.2",
      "domainnet/real").
    label_key: the label feature, e.g. "label" or "coarse_label".
    tfds_names: the feature's names from the data set info, if any.
    num_classes: the number of classes of the feature.

  Returns:
    num_classes unique names.

  Raises:
    ValueError: if neither source gives num_classes unique readable names.
  """
  base = re.split(r"[/:]", dataset, maxsplit=1)[0]
  shipped = SHIPPED.get((base, label_key))
  if shipped is not None and len(shipped) == num_classes:
    return shipped
  if tfds_names is not None and len(tfds_names) == num_classes and is_readable(tfds_names):
    names = tuple(tidy(n) for n in tfds_names)
    if len(set(names)) == len(names):
      return names
  sample = list(tfds_names or [])[:5]
  raise ValueError(
      f"no readable class names for tfds data set {dataset!r} feature {label_key!r} "
      f"({num_classes} classes; tfds names start {sample}); pass class_names=")
