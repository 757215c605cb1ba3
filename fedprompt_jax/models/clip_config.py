"""CLIP architecture description, read from and written to transformers' `config.json`.

Only the fields that change the computation are kept; `to_hf_dict` writes a
config that `transformers.CLIPConfig` accepts (it fills every other field with
its defaults).
"""

from __future__ import annotations

import dataclasses
from typing import Any

# OpenAI CLIP's normalisation; a checkpoint's `preprocessor_config.json` overrides it.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

# transformers' ACT2FN names that CLIP checkpoints use.
ACTIVATIONS = ("quick_gelu", "gelu", "gelu_new", "gelu_pytorch_tanh", "relu")


class ConfigError(ValueError):
  """A checkpoint's config.json cannot describe a CLIP we can build."""


@dataclasses.dataclass(frozen=True)
class TowerConfig:
  """One transformer tower (the fields both towers share)."""

  hidden_size: int
  intermediate_size: int
  num_hidden_layers: int
  num_attention_heads: int
  hidden_act: str = "quick_gelu"
  layer_norm_eps: float = 1e-5

  def __post_init__(self):
    if self.hidden_act not in ACTIVATIONS:
      raise ConfigError(
          f"hidden_act={self.hidden_act!r} is not supported; valid: {', '.join(ACTIVATIONS)}")
    if self.hidden_size % self.num_attention_heads:
      raise ConfigError(
          f"hidden_size={self.hidden_size} is not divisible by "
          f"num_attention_heads={self.num_attention_heads}")

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_attention_heads


@dataclasses.dataclass(frozen=True)
class VisionConfig(TowerConfig):
  image_size: int = 224
  patch_size: int = 32
  num_channels: int = 3

  def __post_init__(self):
    super().__post_init__()
    if self.image_size % self.patch_size:
      raise ConfigError(
          f"image_size={self.image_size} is not divisible by patch_size={self.patch_size}")

  @property
  def num_patches(self) -> int:
    return (self.image_size // self.patch_size) ** 2


@dataclasses.dataclass(frozen=True)
class TextConfig(TowerConfig):
  vocab_size: int = 49408
  max_position_embeddings: int = 77
  eos_token_id: int = 49407
  bos_token_id: int = 49406
  pad_token_id: int = 1


@dataclasses.dataclass(frozen=True)
class ClipConfig:
  """A whole CLIP: two towers, the joint projection and the pixel normalisation."""

  vision: VisionConfig
  text: TextConfig
  projection_dim: int = 512
  logit_scale_init_value: float = 2.6592
  image_mean: tuple[float, float, float] = OPENAI_MEAN
  image_std: tuple[float, float, float] = OPENAI_STD

  @classmethod
  def from_hf_dict(cls, raw: dict[str, Any],
                   preprocessor: dict[str, Any] | None = None) -> ClipConfig:
    """Builds from the dict of a transformers CLIP `config.json` (and preprocessor_config.json)."""
    model_type = raw.get("model_type", "clip")
    if model_type != "clip":
      raise ConfigError(f"model_type={model_type!r} in config.json; valid: 'clip'")
    for key in ("text_config", "vision_config"):
      if not isinstance(raw.get(key), dict):
        raise ConfigError(f"config.json has no {key!r} section; is it a CLIPModel config?")
    vision = _tower(VisionConfig, raw["vision_config"], defaults=dict(
        hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12))
    text = _tower(TextConfig, raw["text_config"], defaults=dict(
        hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8))
    kwargs = {}
    if preprocessor:
      if "image_mean" in preprocessor:
        kwargs["image_mean"] = tuple(float(v) for v in preprocessor["image_mean"])
      if "image_std" in preprocessor:
        kwargs["image_std"] = tuple(float(v) for v in preprocessor["image_std"])
    return cls(
        vision=vision,
        text=text,
        projection_dim=int(raw.get("projection_dim", 512)),
        logit_scale_init_value=float(raw.get("logit_scale_init_value", 2.6592)),
        **kwargs)

  def to_hf_dict(self) -> dict[str, Any]:
    """A `config.json` dict that `transformers.CLIPConfig.from_dict` accepts."""
    return {
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": self.projection_dim,
        "logit_scale_init_value": self.logit_scale_init_value,
        "text_config": dict(dataclasses.asdict(self.text), projection_dim=self.projection_dim),
        "vision_config": dict(dataclasses.asdict(self.vision),
                              projection_dim=self.projection_dim),
    }

  def to_preprocessor_dict(self) -> dict[str, Any]:
    """A `preprocessor_config.json` dict for `transformers.CLIPImageProcessor`."""
    size = self.vision.image_size
    return {
        "image_processor_type": "CLIPImageProcessor",
        "do_resize": True,
        "size": {"shortest_edge": size},
        "do_center_crop": True,
        "crop_size": {"height": size, "width": size},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(self.image_mean),
        "image_std": list(self.image_std),
        "do_convert_rgb": True,
    }


def _tower(cls, raw: dict[str, Any], defaults: dict[str, Any]):
  names = {f.name for f in dataclasses.fields(cls)}
  values = dict(defaults)
  values.update({k: v for k, v in raw.items() if k in names and v is not None})
  try:
    return cls(**values)
  except TypeError as e:  # pragma: no cover - all fields have defaults
    raise ConfigError(f"bad {cls.__name__} in config.json: {e}") from None
