"""Tiny-ImageNet as a tensorflow-datasets builder that prepares without TensorFlow.

tfds has no Tiny-ImageNet, so the package ships this builder; importing this
module registers it as `tiny_imagenet` (data/tfds_source.py imports it). It
reads the official `tiny-imagenet-200.zip` (http://cs231n.stanford.edu/
tiny-imagenet-200.zip, 248 MB) from the manual directory, without unpacking it:

  train       100,000 images, 500 per class (train/<wnid>/images/*.JPEG)
  validation  10,000 labelled images, 50 per class (val/images +
              val/val_annotations.txt): the labelled held-out set that papers
              report as Tiny-ImageNet "test" accuracy.

The official test split has no labels and is not read. Images are 64x64 JPEGs,
stored as given (grey ones re-encoded as RGB JPEG with PIL); the label is the
index of the class's WordNet id in sorted order (`WNIDS`), named for prompts by
data/class_names.py TINY_IMAGENET. Prepare once (no TensorFlow needed):

  python -c "import tensorflow_datasets as tfds; from fedprompt_jax.data import tiny_imagenet;
    tfds.builder('tiny_imagenet', data_dir='~/tensorflow_datasets').download_and_prepare(
    file_format='array_record',
    download_config=tfds.download.DownloadConfig(manual_dir='DIR_WITH_THE_ZIP'))"
"""

from __future__ import annotations

import io
import zipfile

from etils import epath
from PIL import Image
import tensorflow_datasets as tfds

ZIP_NAME = "tiny-imagenet-200.zip"
_ROOT = "tiny-imagenet-200/"

# The 200 WordNet ids of wnids.txt, sorted: label i is WNIDS[i].
WNIDS: tuple[str, ...] = (
    "n01443537", "n01629819", "n01641577", "n01644900", "n01698640", "n01742172", "n01768244",
    "n01770393", "n01774384", "n01774750", "n01784675", "n01855672", "n01882714", "n01910747",
    "n01917289", "n01944390", "n01945685", "n01950731", "n01983481", "n01984695", "n02002724",
    "n02056570", "n02058221", "n02074367", "n02085620", "n02094433", "n02099601", "n02099712",
    "n02106662", "n02113799", "n02123045", "n02123394", "n02124075", "n02125311", "n02129165",
    "n02132136", "n02165456", "n02190166", "n02206856", "n02226429", "n02231487", "n02233338",
    "n02236044", "n02268443", "n02279972", "n02281406", "n02321529", "n02364673", "n02395406",
    "n02403003", "n02410509", "n02415577", "n02423022", "n02437312", "n02480495", "n02481823",
    "n02486410", "n02504458", "n02509815", "n02666196", "n02669723", "n02699494", "n02730930",
    "n02769748", "n02788148", "n02791270", "n02793495", "n02795169", "n02802426", "n02808440",
    "n02814533", "n02814860", "n02815834", "n02823428", "n02837789", "n02841315", "n02843684",
    "n02883205", "n02892201", "n02906734", "n02909870", "n02917067", "n02927161", "n02948072",
    "n02950826", "n02963159", "n02977058", "n02988304", "n02999410", "n03014705", "n03026506",
    "n03042490", "n03085013", "n03089624", "n03100240", "n03126707", "n03160309", "n03179701",
    "n03201208", "n03250847", "n03255030", "n03355925", "n03388043", "n03393912", "n03400231",
    "n03404251", "n03424325", "n03444034", "n03447447", "n03544143", "n03584254", "n03599486",
    "n03617480", "n03637318", "n03649909", "n03662601", "n03670208", "n03706229", "n03733131",
    "n03763968", "n03770439", "n03796401", "n03804744", "n03814639", "n03837869", "n03838899",
    "n03854065", "n03891332", "n03902125", "n03930313", "n03937543", "n03970156", "n03976657",
    "n03977966", "n03980874", "n03983396", "n03992509", "n04008634", "n04023962", "n04067472",
    "n04070727", "n04074963", "n04099969", "n04118538", "n04133789", "n04146614", "n04149813",
    "n04179913", "n04251144", "n04254777", "n04259630", "n04265275", "n04275548", "n04285008",
    "n04311004", "n04328186", "n04356056", "n04366367", "n04371430", "n04376876", "n04398044",
    "n04399382", "n04417672", "n04456115", "n04465501", "n04486054", "n04487081", "n04501370",
    "n04507155", "n04532106", "n04532670", "n04540053", "n04560804", "n04562935", "n04596742",
    "n04597913", "n06596364", "n07579787", "n07583066", "n07614500", "n07615774", "n07695742",
    "n07711569", "n07715103", "n07720875", "n07734744", "n07747607", "n07749582", "n07753592",
    "n07768694", "n07871810", "n07873807", "n07875152", "n07920052", "n09193705", "n09246464",
    "n09256479", "n09332890", "n09428293", "n12267677",
)


class TinyImagenet(tfds.core.GeneratorBasedBuilder):
  """Tiny-ImageNet (200 classes, 64x64): train and the labelled validation split."""

  VERSION = tfds.core.Version("1.0.0")
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f"Download {ZIP_NAME} from http://cs231n.stanford.edu/{ZIP_NAME} and place it, "
      "in the manual_dir (default ~/tensorflow_datasets/downloads/manual/).")

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):  # pylint: disable=invalid-name
    # tfds's own lookup of a builder's file goes through importlib_resources for a
    # module inside a package, which need not be installed.
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="Tiny-ImageNet: 200 ImageNet classes at 64x64 (CS231n).",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(64, 64, 3), encoding_format="jpeg"),
            "label": tfds.features.ClassLabel(names=list(WNIDS)),
            "file_name": tfds.features.Text(),
        }),
        supervised_keys=("image", "label"),
        homepage="http://cs231n.stanford.edu/",
    )

  def _split_generators(self, dl_manager):
    path = dl_manager.manual_dir / ZIP_NAME
    if not path.exists():
      raise FileNotFoundError(f"{path} not found. {self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    return {
        "train": self._generate_examples(path, "train"),
        "validation": self._generate_examples(path, "validation"),
    }

  def _generate_examples(self, path, split: str):
    with zipfile.ZipFile(path.open("rb")) as archive:
      check_wnids(archive.read(_ROOT + "wnids.txt").decode())
      if split == "train":
        members = [(n, n.split("/")[2]) for n in archive.namelist()
                   if n.startswith(_ROOT + "train/") and n.endswith(".JPEG")]
      else:
        annotations = archive.read(_ROOT + "val/val_annotations.txt").decode()
        members = [(f"{_ROOT}val/images/{line.split()[0]}", line.split()[1])
                   for line in annotations.splitlines() if line.strip()]
      for name, wnid in sorted(members):
        key = name[len(_ROOT):]
        yield key, {"image": rgb_jpeg(archive.read(name)), "label": wnid, "file_name": key}


def check_wnids(text: str) -> None:
  """Raises ValueError unless wnids.txt lists exactly the 200 classes of WNIDS."""
  found = sorted(text.split())
  if found != list(WNIDS):
    raise ValueError(f"wnids.txt lists {len(found)} classes that are not Tiny-ImageNet's 200 "
                     f"(first differences: {sorted(set(found) ^ set(WNIDS))[:5]})")


def rgb_jpeg(data: bytes) -> bytes:
  """The JPEG bytes as given when they hold an RGB image, else re-encoded as RGB JPEG."""
  image = Image.open(io.BytesIO(data))
  if image.mode == "RGB":
    return data
  out = io.BytesIO()
  image.convert("RGB").save(out, format="JPEG", quality=95)
  return out.getvalue()


