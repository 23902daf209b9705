"""Building blocks of the 3D UNet: noise embedding, FiLM ResNet, voxel attention, down/mid/up levels.

Tensors are (B, C, X, Y, Z). Residual-branch output layers are zero-initialised so every block
starts as the identity, which keeps deep 3D UNets stable early in training. The level blocks
carry diffusers' `gradient_checkpointing` flag; `ModelMixin.enable_gradient_checkpointing` sets
it and the checkpoint function on them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError

__all__ = [
    "MAX_ATTENTION_TOKENS",
    "FourierNoiseEmbedding",
    "ResnetBlock3D",
    "AttentionBlock3D",
    "Downsample3D",
    "Upsample3D",
    "DownBlock3D",
    "MidBlock3D",
    "UpBlock3D",
]

# Design rule: full attention only at coarse levels (<= 16^3 voxels); beyond that its memory
# grows quadratically and the model should not silently try.
MAX_ATTENTION_TOKENS = 16**3


def _zero_(module: nn.Module) -> nn.Module:
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module


class FourierNoiseEmbedding(nn.Module):
    """Random Fourier features of a float noise level (EDM c_noise = ln(sigma) / 4), as in EDM2.

    The frequencies are drawn from a fixed seed (same model for the same config) and stored as a
    buffer so checkpoints carry them.
    """

    def __init__(self, num_channels: int, bandwidth: float = 1.0) -> None:
        super().__init__()
        if num_channels % 2:
            raise InputError(f"FourierNoiseEmbedding needs an even num_channels, got {num_channels}")
        generator = torch.Generator().manual_seed(0)
        self.register_buffer("frequencies", torch.randn(num_channels // 2, generator=generator) * bandwidth)

    def forward(self, noise_level: torch.Tensor) -> torch.Tensor:
        angles = 2 * math.pi * noise_level.float()[:, None] * self.frequencies.float()[None, :]
        return torch.cat([angles.cos(), angles.sin()], dim=1) * math.sqrt(2)


class ResnetBlock3D(nn.Module):
    """GroupNorm-SiLU-Conv x2 with scale-shift (FiLM) conditioning on the embedding after the second norm."""

    def __init__(
        self, in_channels: int, out_channels: int, embedding_channels: int, groups: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels)
        self.conv1 = nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1)
        self.emb_proj = nn.Linear(embedding_channels, 2 * out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero_(nn.Conv3d(out_channels, out_channels, kernel_size=3, padding=1))
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv3d(in_channels, out_channels, 1)

    def forward(self, hidden: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(hidden)))
        scale, shift = self.emb_proj(F.silu(emb))[:, :, None, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(hidden) + h


class AttentionBlock3D(nn.Module):
    """Multi-head self-attention over all voxels of a coarse level (scaled_dot_product_attention)."""

    def __init__(self, channels: int, head_dim: int, groups: int) -> None:
        super().__init__()
        if channels % head_dim:
            raise InputError(f"attention channels ({channels}) must be a multiple of attention_head_dim ({head_dim})")
        self.heads = channels // head_dim
        self.norm = nn.GroupNorm(groups, channels)
        self.to_qkv = nn.Linear(channels, 3 * channels)
        self.to_out = _zero_(nn.Linear(channels, channels))

    def forward(self, hidden: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        batch, channels, *spatial = hidden.shape
        tokens = math.prod(spatial)
        if tokens > MAX_ATTENTION_TOKENS:
            raise InputError(
                f"attention asked over {tokens} voxels at resolution {tuple(spatial)} "
                f"(> {MAX_ATTENTION_TOKENS} = 16^3); "
                "attention belongs at coarse levels only: move it to a deeper level or use a smaller input"
            )
        x = self.norm(hidden).flatten(2).transpose(1, 2)  # (B, N, C)
        q, k, v = self.to_qkv(x).view(batch, tokens, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, tokens, channels)
        return hidden + self.to_out(out).transpose(1, 2).reshape(hidden.shape)


class Downsample3D(nn.Module):
    """Halve every spatial dim with a stride-2 3x3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, kernel_size=3, stride=2, padding=1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.conv(hidden)


class Upsample3D(nn.Module):
    """Double every spatial dim: nearest neighbour then a 3x3x3 conv (no checkerboard artefacts)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, kernel_size=3, padding=1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(hidden, scale_factor=2.0, mode="nearest"))


class _CheckpointedBlock(nn.Module):
    """Runs its sub-blocks through the checkpoint function when diffusers turned checkpointing on."""

    def __init__(self) -> None:
        super().__init__()
        self.gradient_checkpointing = False

    def _run(self, block: nn.Module, hidden: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and self.gradient_checkpointing:
            return self._gradient_checkpointing_func(block, hidden, emb)
        return block(hidden, emb)


class DownBlock3D(_CheckpointedBlock):
    """One encoder level: `num_layers` ResNets (each followed by attention if enabled), then optional downsampling.

    Returns the output and the skip tensors (one per ResNet, plus the downsampled one).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        embedding_channels: int,
        num_layers: int,
        groups: int,
        dropout: float,
        attention: bool,
        head_dim: int,
        add_downsample: bool,
    ) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock3D(in_channels if i == 0 else out_channels, out_channels, embedding_channels, groups, dropout)
            for i in range(num_layers)
        )
        self.attentions = nn.ModuleList(
            AttentionBlock3D(out_channels, head_dim, groups) for _ in range(num_layers if attention else 0)
        )
        self.downsampler = Downsample3D(out_channels) if add_downsample else None

    def forward(self, hidden: torch.Tensor, emb: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        skips = []
        for i, resnet in enumerate(self.resnets):
            hidden = self._run(resnet, hidden, emb)
            if self.attentions:
                hidden = self._run(self.attentions[i], hidden, emb)
            skips.append(hidden)
        if self.downsampler is not None:
            hidden = self.downsampler(hidden)
            skips.append(hidden)
        return hidden, tuple(skips)


class MidBlock3D(_CheckpointedBlock):
    """Bottleneck: ResNet, optional attention, ResNet."""

    def __init__(
        self, channels: int, embedding_channels: int, groups: int, dropout: float, attention: bool, head_dim: int
    ) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock3D(channels, channels, embedding_channels, groups, dropout) for _ in range(2)
        )
        self.attention = AttentionBlock3D(channels, head_dim, groups) if attention else None

    def forward(self, hidden: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        hidden = self._run(self.resnets[0], hidden, emb)
        if self.attention is not None:
            hidden = self._run(self.attention, hidden, emb)
        return self._run(self.resnets[1], hidden, emb)


class UpBlock3D(_CheckpointedBlock):
    """One decoder level: `num_layers` ResNets, each fed the hidden state concatenated with a skip; then upsampling."""

    def __init__(
        self,
        in_channels: int,
        prev_channels: int,
        out_channels: int,
        embedding_channels: int,
        num_layers: int,
        groups: int,
        dropout: float,
        attention: bool,
        head_dim: int,
        add_upsample: bool,
    ) -> None:
        super().__init__()
        resnets = []
        for i in range(num_layers):
            skip_channels = in_channels if i == num_layers - 1 else out_channels
            resnet_in = prev_channels if i == 0 else out_channels
            resnets.append(ResnetBlock3D(resnet_in + skip_channels, out_channels, embedding_channels, groups, dropout))
        self.resnets = nn.ModuleList(resnets)
        self.attentions = nn.ModuleList(
            AttentionBlock3D(out_channels, head_dim, groups) for _ in range(num_layers if attention else 0)
        )
        self.upsampler = Upsample3D(out_channels) if add_upsample else None

    def forward(self, hidden: torch.Tensor, skips: tuple[torch.Tensor, ...], emb: torch.Tensor) -> torch.Tensor:
        for i, resnet in enumerate(self.resnets):
            hidden = self._run(resnet, torch.cat([hidden, skips[-1 - i]], dim=1), emb)
            if self.attentions:
                hidden = self._run(self.attentions[i], hidden, emb)
        if self.upsampler is not None:
            hidden = self.upsampler(hidden)
        return hidden
