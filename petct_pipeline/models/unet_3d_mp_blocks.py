"""The encoder/decoder block of EDM2's magnitude-preserving UNet (Karras et al. 2024, fig. 21), in 3D.

No biases and no normalisation layers in the main path: pixel norm on the encoder's main branch,
magnitude-preserving convolutions, SiLU and sums, the conditioning vector as a learned-gain
multiplicative modulation (``1 + gain * Linear(emb)``, gain initialised to 0), and cosine attention
(pixel-normalised q, k, v) through ``scaled_dot_product_attention``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .mp_layers import MPConv3d, mp_silu, mp_sum, normalize, resample

__all__ = ["MPBlock3D"]


class MPBlock3D(nn.Module):
    """One residual block; ``flavor`` 'enc' applies the 1x1 skip before the branch, 'dec' after it (EDM2 fig. 21).

    Args:
        in_channels, out_channels: widths; a 1x1x1 MP convolution maps between them when they differ.
        emb_channels: width of the conditioning vector.
        flavor: 'enc' or 'dec'.
        resample_mode: 'keep', 'down' (2x box average) or 'up' (2x nearest).
        attention_head_dim: channels per head; 0 = no self-attention.
        dropout: dropout in the residual branch.
        res_balance, attn_balance: mp_sum weights of the residual and attention branches (EDM2: 0.3).
        clip_act: clamp the output to +-clip_act (EDM2: 256; guards fp16/bf16 overflow); None = off.
    """

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int, flavor: str = "enc",
                 resample_mode: str = "keep", attention_head_dim: int = 0, dropout: float = 0.0,
                 res_balance: float = 0.3, attn_balance: float = 0.3, clip_act: float | None = 256.0) -> None:
        super().__init__()
        if flavor not in ("enc", "dec"):
            raise ValueError(f"flavor must be 'enc' or 'dec', got {flavor!r}")
        self.out_channels = out_channels
        self.flavor = flavor
        self.resample_mode = resample_mode
        self.num_heads = out_channels // attention_head_dim if attention_head_dim else 0
        self.dropout = float(dropout)
        self.res_balance = float(res_balance)
        self.attn_balance = float(attn_balance)
        self.clip_act = clip_act
        self.emb_gain = nn.Parameter(torch.zeros([]))
        self.conv_res0 = MPConv3d(out_channels if flavor == "enc" else in_channels, out_channels, kernel=3)
        self.emb_linear = MPConv3d(emb_channels, out_channels, kernel=0)
        self.conv_res1 = MPConv3d(out_channels, out_channels, kernel=3)
        self.conv_skip = MPConv3d(in_channels, out_channels, kernel=1) if in_channels != out_channels else None
        self.attn_qkv = MPConv3d(out_channels, out_channels * 3, kernel=1) if self.num_heads else None
        self.attn_proj = MPConv3d(out_channels, out_channels, kernel=1) if self.num_heads else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        x = resample(x, self.resample_mode)
        if self.flavor == "enc":
            if self.conv_skip is not None:
                x = self.conv_skip(x)
            x = normalize(x, dim=1)  # pixel norm: the encoder's main path stays at unit magnitude

        y = self.conv_res0(mp_silu(x))
        scale = self.emb_linear(emb, gain=self.emb_gain) + 1  # conditioning as a modulation around 1
        y = mp_silu(y * scale[:, :, None, None, None].to(y.dtype))
        if self.training and self.dropout:
            y = F.dropout(y, p=self.dropout)
        y = self.conv_res1(y)

        if self.flavor == "dec" and self.conv_skip is not None:
            x = self.conv_skip(x)
        x = mp_sum(x, y, t=self.res_balance)

        if self.num_heads:
            x = mp_sum(x, self._attention(x), t=self.attn_balance)
        if self.clip_act is not None:
            x = x.clamp(-self.clip_act, self.clip_act)
        return x

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
        """Cosine self-attention over all voxels: q, k, v pixel-normalised per head (EDM2 fig. 21)."""
        batch, channels, *spatial = x.shape
        qkv = self.attn_qkv(x).reshape(batch, self.num_heads, channels // self.num_heads, 3, -1)
        q, k, v = normalize(qkv, dim=2).unbind(3)  # each (B, heads, head_dim, N)
        # SDPA's default scale 1/sqrt(head_dim) is EDM2's k / sqrt(q.shape[2])
        y = F.scaled_dot_product_attention(q.transpose(2, 3), k.transpose(2, 3), v.transpose(2, 3))
        return self.attn_proj(y.transpose(2, 3).reshape(batch, channels, *spatial))
