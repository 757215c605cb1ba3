"""FedVPT and PromptFL rounds in PyTorch, written as the official repositories write them.

transformers' PyTorch `CLIPModel` (the same checkpoint directory our loader reads), frozen
(`requires_grad_(False)`); the trainable prompt is a small module of its own:
  PromptFL (CoOp's PromptLearner, as PromptFL ships it): M context vectors [M, Dt] between
    the BOS embedding (`token_prefix`) and the class-name embeddings (`token_suffix`), both
    registered buffers computed once; the text tower runs on these embeddings (position
    embedding, causal encoder, final LayerNorm, EOS pooling, projection) for all C classes
    at every step; the frozen image tower runs on every batch (no graph is recorded: nothing
    in it requires a gradient).
  FedVPT (VPT-shallow): P tokens [1, P, Dv] inserted after the CLS embedding, before the
    pre-LayerNorm, through the frozen vision tower, against a fixed zero-shot head.
A round: clients one after another; each loads a deep copy of the global prompt's state
dict, runs S steps of SGD (momentum) on cross-entropy, and hands back a deep copy of its
state dict; the server averages the state dicts (FedAvg, weights by examples).

Shapes: K clients, S local steps, B batch, C classes, T text length, M / P prompt tokens,
Dt / Dv text / vision width, E embedding dim.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import transformers
from torch import nn
from torch.nn import functional as F
from transformers import masking_utils


def load_clip(ckpt_dir: str) -> transformers.CLIPModel:
  """transformers' CLIPModel from a checkpoint directory, float32, frozen."""
  clip = transformers.CLIPModel.from_pretrained(ckpt_dir, torch_dtype=torch.float32)
  clip.requires_grad_(False)
  return clip


def pixel_values(pixels: np.ndarray, mean, std) -> torch.Tensor:
  """uint8 [..., H, W, 3] -> normalised float32 [..., 3, H, W] (what a CLIP data loader gives)."""
  x = torch.from_numpy(pixels).float() / 255.0
  x = (x - torch.tensor(mean)) / torch.tensor(std)
  return x.movedim(-1, -3).contiguous()


class PromptLearner(nn.Module):
  """CoOp's PromptLearner: learnable context [M, Dt] shared by all classes."""

  def __init__(self, clip: transformers.CLIPModel, ids: np.ndarray, num_ctx: int,
               ctx: np.ndarray):
    super().__init__()
    ids_t = torch.from_numpy(np.array(ids)).long()
    with torch.no_grad():
      embedding = clip.text_model.embeddings.token_embedding(ids_t)  # [C, T, Dt]
    self.ctx = nn.Parameter(torch.from_numpy(np.array(ctx, np.float32)))
    self.register_buffer("token_prefix", embedding[:, :1].clone())            # BOS
    self.register_buffer("token_suffix", embedding[:, 1 + num_ctx:].clone())  # class, EOS

  def forward(self) -> torch.Tensor:
    ctx = self.ctx.unsqueeze(0).expand(self.token_prefix.shape[0], -1, -1)
    return torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)  # [C, T, Dt]


class CoOpCLIP(nn.Module):
  """PromptFL's model: logits [B, C] of images against the prompted class texts."""

  def __init__(self, clip: transformers.CLIPModel, ids: np.ndarray, num_ctx: int,
               ctx: np.ndarray):
    super().__init__()
    self.clip = clip
    self.prompt = PromptLearner(clip, ids, num_ctx, ctx)
    eos = clip.config.text_config.eos_token_id
    self.register_buffer("eos_pos", torch.from_numpy((np.array(ids) == eos).argmax(-1)).long())

  def encode_text(self) -> torch.Tensor:
    text = self.clip.text_model
    x = self.prompt()
    x = x + text.embeddings.position_embedding.weight[:x.shape[1]]
    mask = masking_utils.create_causal_mask(config=text.config, inputs_embeds=x,
                                            attention_mask=None, cache=None)
    x = text.encoder(inputs_embeds=x, attention_mask=mask, is_causal=True).last_hidden_state
    x = text.final_layer_norm(x)
    return self.clip.text_projection(x[torch.arange(x.shape[0]), self.eos_pos])

  def forward(self, images: torch.Tensor) -> torch.Tensor:
    image = self.clip.visual_projection(self.clip.vision_model(pixel_values=images).pooler_output)
    text = self.encode_text()
    image = image / image.norm(dim=-1, keepdim=True)
    text = text / text.norm(dim=-1, keepdim=True)
    return self.clip.logit_scale.exp() * image @ text.t()


class VisualPrompt(nn.Module):
  """VPT-shallow's prompt tokens [1, P, Dv]."""

  def __init__(self, tokens: np.ndarray):
    super().__init__()
    self.tokens = nn.Parameter(torch.from_numpy(np.array(tokens, np.float32)))


class VPTCLIP(nn.Module):
  """FedVPT's model: shallow prompts in the frozen vision tower, a fixed unit head [C, E]."""

  def __init__(self, clip: transformers.CLIPModel, tokens: np.ndarray, head: np.ndarray):
    super().__init__()
    self.clip = clip
    self.prompt = VisualPrompt(tokens)
    self.register_buffer("head", torch.from_numpy(np.array(head, np.float32)))

  def forward(self, images: torch.Tensor) -> torch.Tensor:
    vision = self.clip.vision_model
    x = vision.embeddings(images)  # [B, 1 + Np, Dv]
    prompts = self.prompt.tokens.expand(x.shape[0], -1, -1)
    x = vision.pre_layrnorm(torch.cat([x[:, :1], prompts, x[:, 1:]], dim=1))
    x = vision.encoder(inputs_embeds=x).last_hidden_state
    image = self.clip.visual_projection(vision.post_layernorm(x[:, 0]))
    image = image / image.norm(dim=-1, keepdim=True)
    return self.clip.logit_scale.exp() * image @ self.head.t()


def average_weights(states: list[dict], sizes: list[int]) -> dict:
  """FedAvg of state dicts, weighted by the clients' example counts."""
  total = float(sum(sizes))
  return {key: sum(s[key] * (n / total) for s, n in zip(states, sizes)) for key in states[0]}


def federated_round(model: nn.Module, global_state: dict, images: torch.Tensor,
                    labels: torch.Tensor, lr: float, momentum: float) -> dict:
  """One round over images [K, S, B, 3, H, W] and labels [K, S, B]; returns the new global
  state dict of `model.prompt`."""
  states, sizes = [], []
  for k in range(images.shape[0]):
    model.prompt.load_state_dict(copy.deepcopy(global_state))
    optimizer = torch.optim.SGD(model.prompt.parameters(), lr=lr, momentum=momentum)
    for s in range(images.shape[1]):
      loss = F.cross_entropy(model(images[k, s]), labels[k, s])
      optimizer.zero_grad()
      loss.backward()
      optimizer.step()
    states.append(copy.deepcopy(model.prompt.state_dict()))
    sizes.append(labels.shape[1] * labels.shape[2])
  return average_weights(states, sizes)
