"""PETCTUNet3DModel: the true 3D UNet used by both cascade stages (different configs).

Stage 1 denoises a low-resolution CT+PET volume conditioned on the demographic embedding;
stage 2 denoises the high-resolution residual conditioned on extra input channels (upsampled
low-resolution volume + coordinate maps). The network returns its raw output F; EDM
preconditioning (c_in, c_noise, c_skip, c_out) is the scheduler's job, not the model's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from ..errors import InputError
from .unet_3d_blocks import DownBlock3D, FourierNoiseEmbedding, MidBlock3D, UpBlock3D

__all__ = ["PETCTUNet3DModel", "PETCTUNet3DOutput"]


@dataclass
class PETCTUNet3DOutput(BaseOutput):
    """Output of [`PETCTUNet3DModel`].

    Args:
        sample (`torch.Tensor` of shape `(batch_size, out_channels, X, Y, Z)`): raw network output F.
    """

    sample: torch.Tensor


class PETCTUNet3DModel(ModelMixin, ConfigMixin):
    """3D UNet (Conv3d throughout) with FiLM noise/demographic conditioning and attention at coarse levels.

    Args:
        in_channels: channels of the noisy sample (CT, PET).
        out_channels: channels of the output.
        conditioning_channels: extra channels concatenated to the sample (0 = none).
        block_out_channels: channels per level; the input must be divisible by 2**(levels - 1).
        layers_per_block: ResNet blocks per encoder level (decoder levels get one more).
        attention_levels: per level, whether to add self-attention after each ResNet.
        mid_attention: attention in the bottleneck; None = whenever any level has attention.
        attention_head_dim: channels per attention head.
        embedding_dim: size of the demographic embedding (0 = no demographic conditioning).
        time_embedding_dim: size of the combined conditioning vector (default 4 * block_out_channels[0]).
        norm_num_groups: GroupNorm groups; must divide every level's channels.
        dropout: dropout inside ResNet blocks.
    """

    _supports_gradient_checkpointing = True
    _skip_layerwise_casting_patterns = ["norm"]

    @register_to_config
    def __init__(
        self,
        in_channels: int = 2,
        out_channels: int = 2,
        conditioning_channels: int = 0,
        block_out_channels: tuple[int, ...] = (32, 64, 96, 128),
        layers_per_block: int = 2,
        attention_levels: tuple[bool, ...] = (False, False, False, True),
        mid_attention: bool | None = None,
        attention_head_dim: int = 32,
        embedding_dim: int = 0,
        time_embedding_dim: int | None = None,
        norm_num_groups: int = 8,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        channels = tuple(int(c) for c in block_out_channels)
        attention = tuple(bool(a) for a in attention_levels)
        _validate_config(
            in_channels, out_channels, conditioning_channels, channels, layers_per_block, attention,
            attention_head_dim, embedding_dim, norm_num_groups,
        )
        use_mid_attention = any(attention) if mid_attention is None else bool(mid_attention)
        if use_mid_attention and channels[-1] % attention_head_dim:
            raise InputError(
                f"mid attention needs block_out_channels[-1] ({channels[-1]}) to be a multiple of "
                f"attention_head_dim ({attention_head_dim})"
            )
        emb_channels = time_embedding_dim or 4 * channels[0]
        levels = len(channels)

        self.time_proj = FourierNoiseEmbedding(channels[0])
        self.time_embedding = nn.Sequential(
            nn.Linear(channels[0], emb_channels), nn.SiLU(), nn.Linear(emb_channels, emb_channels)
        )
        self.encoder_proj = nn.Linear(embedding_dim, emb_channels) if embedding_dim > 0 else None

        self.conv_in = nn.Conv3d(in_channels + conditioning_channels, channels[0], kernel_size=3, padding=1)
        common = {"embedding_channels": emb_channels, "groups": norm_num_groups, "dropout": float(dropout),
                  "head_dim": attention_head_dim}
        self.down_blocks = nn.ModuleList(
            DownBlock3D(
                in_channels=channels[max(i - 1, 0)], out_channels=channels[i], num_layers=layers_per_block,
                attention=attention[i], add_downsample=i < levels - 1, **common,
            )
            for i in range(levels)
        )
        self.mid_block = MidBlock3D(channels[-1], attention=use_mid_attention, **common)
        reversed_channels = channels[::-1]
        self.up_blocks = nn.ModuleList(
            UpBlock3D(
                in_channels=reversed_channels[min(i + 1, levels - 1)], prev_channels=reversed_channels[max(i - 1, 0)],
                out_channels=reversed_channels[i], num_layers=layers_per_block + 1,
                attention=attention[levels - 1 - i], add_upsample=i < levels - 1, **common,
            )
            for i in range(levels)
        )
        self.norm_out = nn.GroupNorm(norm_num_groups, channels[0])
        self.conv_out = nn.Conv3d(channels[0], out_channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @property
    def spatial_multiple(self) -> int:
        """Every spatial dim of the input must be a multiple of this (one halving per level below the top)."""
        return 2 ** (len(self.config.block_out_channels) - 1)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        encoder_embedding: torch.Tensor | None = None,
        conditioning: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> PETCTUNet3DOutput | tuple[torch.Tensor]:
        """Raw network output F for a noisy (preconditioned) sample.

        Args:
            sample: (B, in_channels, X, Y, Z), already scaled by c_in.
            timestep: EDM c_noise, a float or a tensor with 1 or B elements.
            encoder_embedding: (B, embedding_dim) demographic embedding; required iff embedding_dim > 0.
            conditioning: (B, conditioning_channels, X, Y, Z); required iff conditioning_channels > 0.
            return_dict: return a [`PETCTUNet3DOutput`] instead of a tuple.
        """
        batch = self._check_inputs(sample, encoder_embedding, conditioning)
        emb = self._embedding(timestep, encoder_embedding, batch, sample.device)

        hidden = sample if conditioning is None else torch.cat([sample, conditioning.to(sample.dtype)], dim=1)
        hidden = self.conv_in(hidden)
        skips: list[torch.Tensor] = [hidden]
        for block in self.down_blocks:
            hidden, block_skips = block(hidden, emb)
            skips.extend(block_skips)
        hidden = self.mid_block(hidden, emb)
        for block in self.up_blocks:
            count = len(block.resnets)
            block_skips, skips = tuple(skips[-count:]), skips[:-count]
            hidden = block(hidden, block_skips, emb)
        out = self.conv_out(F.silu(self.norm_out(hidden)))

        if not return_dict:
            return (out,)
        return PETCTUNet3DOutput(sample=out)

    def _embedding(
        self, timestep: torch.Tensor | float, encoder_embedding: torch.Tensor | None, batch: int, device: torch.device
    ) -> torch.Tensor:
        """Noise-level MLP embedding plus the projected demographic embedding: one vector per sample for FiLM."""
        noise = torch.as_tensor(timestep, device=device, dtype=torch.float32)
        if noise.numel() not in (1, batch):
            raise InputError(
                f"timestep must be a scalar or hold one value per sample ({batch}), got shape {tuple(noise.shape)}"
            )
        noise = noise.reshape(-1).expand(batch)
        weight = self.time_embedding[0].weight
        emb = self.time_embedding(self.time_proj(noise).to(weight.dtype))
        if self.encoder_proj is not None:
            emb = emb + self.encoder_proj(encoder_embedding.to(device=device, dtype=weight.dtype))
        return emb

    def _check_inputs(
        self, sample: torch.Tensor, encoder_embedding: torch.Tensor | None, conditioning: torch.Tensor | None
    ) -> int:
        cfg = self.config
        if sample.ndim != 5 or sample.shape[1] != cfg.in_channels:
            raise InputError(
                f"sample must have shape (B, {cfg.in_channels}, X, Y, Z), got {tuple(sample.shape)}"
            )
        batch, _, *spatial = sample.shape
        multiple = self.spatial_multiple
        if any(size % multiple for size in spatial):
            raise InputError(
                f"sample spatial shape {tuple(spatial)} must be divisible by {multiple} "
                f"(2**(len(block_out_channels) - 1)); pad or crop the volume"
            )
        if cfg.embedding_dim > 0:
            if encoder_embedding is None:
                raise InputError(
                    f"encoder_embedding of shape (B, {cfg.embedding_dim}) is required: this model is "
                    "conditioned on demographics (embedding_dim > 0); use the encoder's null embedding "
                    "for unconditional samples"
                )
            if tuple(encoder_embedding.shape) != (batch, cfg.embedding_dim):
                raise InputError(
                    f"encoder_embedding must have shape ({batch}, {cfg.embedding_dim}), "
                    f"got {tuple(encoder_embedding.shape)}"
                )
        elif encoder_embedding is not None:
            raise InputError("encoder_embedding was given but this model has embedding_dim=0 (no demographic input)")
        if cfg.conditioning_channels > 0:
            expected = (batch, cfg.conditioning_channels, *spatial)
            if conditioning is None:
                raise InputError(
                    f"conditioning of shape {expected} is required (conditioning_channels="
                    f"{cfg.conditioning_channels})"
                )
            if tuple(conditioning.shape) != expected:
                raise InputError(f"conditioning must have shape {expected}, got {tuple(conditioning.shape)}")
        elif conditioning is not None:
            raise InputError("conditioning was given but this model has conditioning_channels=0")
        return batch


def _validate_config(
    in_channels: int,
    out_channels: int,
    conditioning_channels: int,
    channels: tuple[int, ...],
    layers_per_block: int,
    attention: tuple[bool, ...],
    attention_head_dim: int,
    embedding_dim: int,
    norm_num_groups: int,
) -> None:
    """Reject configs that would fail deep inside the first forward pass, naming the field."""
    if in_channels < 1 or out_channels < 1:
        raise InputError(f"in_channels and out_channels must be >= 1, got {in_channels} and {out_channels}")
    if conditioning_channels < 0 or embedding_dim < 0:
        raise InputError(
            f"conditioning_channels and embedding_dim must be >= 0, got {conditioning_channels} and {embedding_dim}"
        )
    if not channels or layers_per_block < 1:
        raise InputError(f"need at least one level and layers_per_block >= 1, got {channels} and {layers_per_block}")
    if len(attention) != len(channels):
        raise InputError(
            f"attention_levels has {len(attention)} entries but block_out_channels has {len(channels)} levels"
        )
    for level, (width, attend) in enumerate(zip(channels, attention)):
        if width % norm_num_groups:
            raise InputError(
                f"block_out_channels[{level}]={width} is not divisible by norm_num_groups={norm_num_groups}"
            )
        if attend and width % attention_head_dim:
            raise InputError(
                f"attention at level {level} needs block_out_channels[{level}]={width} to be a multiple of "
                f"attention_head_dim={attention_head_dim}"
            )
