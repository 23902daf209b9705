"""PETCTMPUNet3DModel: EDM2's magnitude-preserving UNet (Karras et al. 2024) in 3D, for either cascade stage.

The paper's own code (TotalGen) is built on EDM2; this is that network with our interface: the same
``forward(sample, timestep, encoder_embedding, conditioning)`` and output as ``PETCTUNet3DModel``,
so the pipeline, the denoiser and the training stages take either. Like the FiLM UNet it returns
the raw output F; EDM preconditioning is the scheduler's (EDM2's ``Precond`` uses the same c_in,
c_skip, c_out and c_noise = log(sigma) / 4 as diffusers' EDM schedulers).

Differences from EDM2's 2D UNet, on purpose: 3D convolutions and 2x box/nearest resampling in 3D;
the demographic embedding (a learned vector, not a one-hot class) is pixel-normalised before its
MP linear layer, as EDM2 scales its one-hot labels to unit magnitude; stage 2's conditioning
channels are concatenated to the input with EDM2's constant-ones channel; forced weight
normalisation runs after each optimiser step (``mp_layers.force_weight_normalization``) instead of
inside the forward pass.
"""

from __future__ import annotations

import math

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..errors import InputError
from .mp_layers import MPConv3d, MPFourier, mp_cat, mp_silu, mp_sum, normalize
from .unet_3d import PETCTUNet3DOutput
from .unet_3d_blocks import MAX_ATTENTION_TOKENS
from .unet_3d_mp_blocks import MPBlock3D

__all__ = ["PETCTMPUNet3DModel"]


class PETCTMPUNet3DModel(ModelMixin, ConfigMixin):
    """Magnitude-preserving 3D UNet (EDM2 config-G style) with attention at the coarse levels.

    Args:
        in_channels: channels of the noisy sample (CT, PET).
        out_channels: channels of the output.
        conditioning_channels: extra channels concatenated to the sample (0 = none; stage 2: 5).
        block_out_channels: channels per level (EDM2: model_channels * channel_mult).
        layers_per_block: blocks per encoder level (decoder levels get one more), EDM2's num_blocks.
        attention_levels: per level, self-attention in every block of that level.
        mid_attention: attention in the first bottleneck block (EDM2 always has it).
        attention_head_dim: channels per attention head (EDM2: 64).
        embedding_dim: size of the demographic embedding (0 = no demographic conditioning).
        time_embedding_dim: width of the conditioning vector (EDM2: max(block_out_channels)).
        noise_channels: Fourier features of the noise level (EDM2: block_out_channels[0]).
        dropout: dropout in the residual branches.
        label_balance: mp_sum weight of the demographic embedding against the noise embedding (EDM2: 0.5).
        concat_balance: mp_cat weight of the main path against the skip connection (EDM2: 0.5).
        res_balance, attn_balance: residual / attention branch weights (EDM2: 0.3).
        clip_act: activation clamp of every block (EDM2: 256); None = off.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        in_channels: int = 2,
        out_channels: int = 2,
        conditioning_channels: int = 0,
        block_out_channels: tuple[int, ...] = (64, 128, 192, 256),
        layers_per_block: int = 3,
        attention_levels: tuple[bool, ...] = (False, False, False, True),
        mid_attention: bool = True,
        attention_head_dim: int = 64,
        embedding_dim: int = 0,
        time_embedding_dim: int | None = None,
        noise_channels: int | None = None,
        dropout: float = 0.0,
        label_balance: float = 0.5,
        concat_balance: float = 0.5,
        res_balance: float = 0.3,
        attn_balance: float = 0.3,
        clip_act: float | None = 256.0,
    ) -> None:
        super().__init__()
        channels = tuple(int(c) for c in block_out_channels)
        attention = tuple(bool(a) for a in attention_levels)
        check_config(in_channels, out_channels, conditioning_channels, channels, layers_per_block, attention,
                     bool(mid_attention), attention_head_dim, embedding_dim)
        emb_channels = int(time_embedding_dim or max(channels))
        self.gradient_checkpointing = False
        self.concat_balance = float(concat_balance)
        self.label_balance = float(label_balance)
        self.out_gain = nn.Parameter(torch.zeros([]))  # the network starts at F = 0, as EDM2's

        self.emb_fourier = MPFourier(int(noise_channels or channels[0]))
        self.emb_noise = MPConv3d(int(noise_channels or channels[0]), emb_channels, kernel=0)
        self.emb_label = MPConv3d(embedding_dim, emb_channels, kernel=0) if embedding_dim > 0 else None

        block = {"emb_channels": emb_channels, "dropout": dropout, "res_balance": res_balance,
                 "attn_balance": attn_balance, "clip_act": clip_act}
        head = int(attention_head_dim)
        self.conv_in = MPConv3d(in_channels + conditioning_channels + 1, channels[0], kernel=3)  # +1: ones channel
        self.enc = nn.ModuleList()
        width = channels[0]
        for level, level_width in enumerate(channels):
            if level > 0:
                self.enc.append(MPBlock3D(width, width, flavor="enc", resample_mode="down", **block))
            for _ in range(layers_per_block):
                self.enc.append(MPBlock3D(width, level_width, flavor="enc",
                                          attention_head_dim=head if attention[level] else 0, **block))
                width = level_width
        skips = [channels[0]] + [b.out_channels for b in self.enc]

        self.dec = nn.ModuleList()
        self.dec_takes_skip: list[bool] = []
        for level in reversed(range(len(channels))):
            if level == len(channels) - 1:
                self.dec.append(MPBlock3D(width, width, flavor="dec",
                                          attention_head_dim=head if mid_attention else 0, **block))
                self.dec.append(MPBlock3D(width, width, flavor="dec", **block))
                self.dec_takes_skip += [False, False]
            else:
                self.dec.append(MPBlock3D(width, width, flavor="dec", resample_mode="up", **block))
                self.dec_takes_skip.append(False)
            for _ in range(layers_per_block + 1):
                self.dec.append(MPBlock3D(width + skips.pop(), channels[level], flavor="dec",
                                          attention_head_dim=head if attention[level] else 0, **block))
                self.dec_takes_skip.append(True)
                width = channels[level]
        self.conv_out = MPConv3d(width, out_channels, kernel=3)

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
        """Raw network output F for a noisy (c_in-scaled) sample; arguments as ``PETCTUNet3DModel.forward``."""
        batch = self._check_inputs(sample, encoder_embedding, conditioning)
        emb = self._embedding(timestep, encoder_embedding, batch, sample.device).to(sample.dtype)

        parts = [sample] if conditioning is None else [sample, conditioning.to(sample.dtype)]
        x = torch.cat([*parts, torch.ones_like(sample[:, :1])], dim=1)  # ones: a learnable offset (EDM2)
        x = self.conv_in(x)
        skips = [x]
        for block in self.enc:
            x = self._run(block, x, emb)
            skips.append(x)
        for block, takes_skip in zip(self.dec, self.dec_takes_skip):
            if takes_skip:
                x = mp_cat(x, skips.pop(), t=self.concat_balance)
            x = self._run(block, x, emb)
        out = self.conv_out(x, gain=self.out_gain)
        if not return_dict:
            return (out,)
        return PETCTUNet3DOutput(sample=out)

    def _run(self, block: nn.Module, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and self.gradient_checkpointing:
            return self._gradient_checkpointing_func(block, x, emb)
        return block(x, emb)

    def _embedding(self, timestep: torch.Tensor | float, encoder_embedding: torch.Tensor | None, batch: int,
                   device: torch.device) -> torch.Tensor:
        """MP noise embedding, mp_summed with the normalised demographic embedding, through mp_silu (EDM2)."""
        noise = torch.as_tensor(timestep, device=device, dtype=torch.float32)
        if noise.numel() not in (1, batch):
            raise InputError(
                f"timestep must be a scalar or hold one value per sample ({batch}), got shape {tuple(noise.shape)}"
            )
        emb = self.emb_noise(self.emb_fourier(noise.reshape(-1).expand(batch)))
        if self.emb_label is not None:
            label = normalize(encoder_embedding.to(device=device, dtype=torch.float32))  # unit magnitude, as eq. 103's
            emb = mp_sum(emb, self.emb_label(label), t=self.label_balance)
        return mp_silu(emb)

    def _check_inputs(self, sample: torch.Tensor, encoder_embedding: torch.Tensor | None,
                      conditioning: torch.Tensor | None) -> int:
        cfg = self.config
        if sample.ndim != 5 or sample.shape[1] != cfg.in_channels:
            raise InputError(f"sample must have shape (B, {cfg.in_channels}, X, Y, Z), got {tuple(sample.shape)}")
        batch, _, *spatial = sample.shape
        if any(size % self.spatial_multiple for size in spatial):
            raise InputError(f"sample spatial shape {tuple(spatial)} must be divisible by {self.spatial_multiple} "
                             "(2**(len(block_out_channels) - 1)); pad or crop the volume")
        levels = [i for i, a in enumerate(cfg.attention_levels) if a]
        levels += [len(cfg.block_out_channels) - 1] if cfg.mid_attention else []
        for level in levels:
            tokens = math.prod(n >> level for n in spatial)
            if tokens > MAX_ATTENTION_TOKENS:
                raise InputError(f"attention at level {level} would see {tokens} voxels of {tuple(spatial)} "
                                 f"(> {MAX_ATTENTION_TOKENS} = 16^3); attention belongs at coarse levels only")
        if cfg.embedding_dim > 0:
            if encoder_embedding is None or tuple(encoder_embedding.shape) != (batch, cfg.embedding_dim):
                got = None if encoder_embedding is None else tuple(encoder_embedding.shape)
                raise InputError(f"encoder_embedding of shape ({batch}, {cfg.embedding_dim}) is required (this "
                                 f"model is conditioned on demographics), got {got}")
        elif encoder_embedding is not None:
            raise InputError("encoder_embedding was given but this model has embedding_dim=0 (no demographic input)")
        if cfg.conditioning_channels > 0:
            expected = (batch, cfg.conditioning_channels, *spatial)
            if conditioning is None or tuple(conditioning.shape) != expected:
                got = None if conditioning is None else tuple(conditioning.shape)
                raise InputError(f"conditioning of shape {expected} is required, got {got}")
        elif conditioning is not None:
            raise InputError("conditioning was given but this model has conditioning_channels=0")
        return batch


def check_config(in_channels: int, out_channels: int, conditioning_channels: int, channels: tuple[int, ...],
                 layers_per_block: int, attention: tuple[bool, ...], mid_attention: bool, attention_head_dim: int,
                 embedding_dim: int) -> None:
    """Reject configs that would fail deep inside the first forward pass, naming the field."""
    if in_channels < 1 or out_channels < 1:
        raise InputError(f"in_channels and out_channels must be >= 1, got {in_channels} and {out_channels}")
    if conditioning_channels < 0 or embedding_dim < 0:
        raise InputError(
            f"conditioning_channels and embedding_dim must be >= 0, got {conditioning_channels} and {embedding_dim}")
    if not channels or layers_per_block < 1:
        raise InputError(f"need at least one level and layers_per_block >= 1, got {channels} and {layers_per_block}")
    if len(attention) != len(channels):
        raise InputError(
            f"attention_levels has {len(attention)} entries but block_out_channels has {len(channels)} levels")
    attended = [(i, w) for i, (w, a) in enumerate(zip(channels, attention)) if a]
    if mid_attention:
        attended.append((len(channels) - 1, channels[-1]))
    for level, width in attended:
        if attention_head_dim < 1 or width % attention_head_dim:
            raise InputError(f"attention at level {level} needs block_out_channels[{level}]={width} to be a "
                             f"multiple of attention_head_dim={attention_head_dim}")
