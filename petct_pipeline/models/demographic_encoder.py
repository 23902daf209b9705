"""Demographic encoder: four patient numbers -> one embedding vector that conditions the UNet.

The feature mapping ((quantity - offset) / scale per named quantity) lives in this model's
config and nowhere else, so a saved checkpoint carries the exact normalisation it was trained
with. A learned null embedding stands in for dropped rows: classifier-free guidance dropout
during training and the unconditional branch at sampling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from ..demographics import Demographics
from ..errors import InputError, InputTypeError

__all__ = ["DemographicEncoder", "DemographicEncoderOutput"]

# Any valid patient: used only to ask Demographics whether a quantity name exists, so the list
# of allowed names stays in demographics.py.
_PROBE = Demographics(age=50.0, sex="F", weight=70.0, height=170.0)


@dataclass
class DemographicEncoderOutput(BaseOutput):
    """Output of [`DemographicEncoder`].

    Args:
        embedding (`torch.Tensor` of shape `(batch_size, embedding_dim)`): conditioning vector per sample.
    """

    embedding: torch.Tensor


class DemographicEncoder(ModelMixin, ConfigMixin):
    """MLP from normalised demographic features to a conditioning embedding, with a learned null embedding.

    Default mapping is the paper's: height(m) - 1, (weight - 30) / 100, sex (F=0, M=1), age / 100.
    """

    @register_to_config
    def __init__(
        self,
        feature_names: tuple[str, ...] = ("height_m", "weight", "sex", "age"),
        feature_offsets: tuple[float, ...] = (1.0, 30.0, 0.0, 0.0),
        feature_scales: tuple[float, ...] = (1.0, 100.0, 1.0, 100.0),
        embedding_dim: int = 128,
        hidden_dim: int = 128,
    ) -> None:
        super().__init__()
        n = len(feature_names)
        if n == 0:
            raise InputError("feature_names must name at least one demographic quantity")
        if len(feature_offsets) != n or len(feature_scales) != n:
            raise InputError(
                f"feature_names ({n}), feature_offsets ({len(feature_offsets)}) and feature_scales "
                f"({len(feature_scales)}) must have the same length"
            )
        for name in feature_names:
            _PROBE.quantity(name)  # raises ValueError naming the allowed quantities
        for name, scale in zip(feature_names, feature_scales):
            if float(scale) == 0.0:
                raise InputError(f"feature_scales for {name!r} must be non-zero, got {scale!r}")
        if embedding_dim < 1 or hidden_dim < 1:
            raise InputError(f"embedding_dim and hidden_dim must be >= 1, got {embedding_dim} and {hidden_dim}")

        self.mlp = nn.Sequential(
            nn.Linear(n, hidden_dim),
            nn.SiLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.SiLU(),
            nn.Linear(hidden_dim, embedding_dim),
        )
        self.null_embedding = nn.Parameter(torch.randn(embedding_dim) * 0.02)

    @property
    def num_features(self) -> int:
        return len(self.config.feature_names)

    def features(self, demographics: Demographics | Sequence[Demographics]) -> torch.Tensor:
        """Normalised feature matrix (B, F), float32 on this model's device, from validated demographics."""
        rows = [demographics] if isinstance(demographics, Demographics) else list(demographics)
        if not rows:
            raise InputError("demographics must contain at least one Demographics, got an empty sequence")
        cfg = self.config
        values = []
        for index, row in enumerate(rows):
            if not isinstance(row, Demographics):
                raise InputTypeError(f"demographics[{index}] must be a Demographics, got {type(row).__name__}")
            values.append(
                [
                    (row.quantity(name) - float(offset)) / float(scale)
                    for name, offset, scale in zip(cfg.feature_names, cfg.feature_offsets, cfg.feature_scales)
                ]
            )
        return torch.tensor(values, dtype=torch.float32, device=self.device)

    def forward(
        self,
        features: torch.Tensor | None,
        drop: torch.Tensor | None = None,
        return_dict: bool = True,
        *,
        batch_size: int | None = None,
    ) -> DemographicEncoderOutput | tuple[torch.Tensor]:
        """Embed features; rows where `drop` is True (or all rows when `features` is None) get the null embedding.

        Args:
            features: (B, F) from [`features`], or None for an all-unconditional batch of `batch_size`.
            drop: optional bool tensor (B,), True = replace that row by the null embedding.
            return_dict: return a [`DemographicEncoderOutput`] instead of a tuple.
            batch_size: required when `features` is None; checked against B otherwise.
        """
        null = self.null_embedding
        if features is None:
            if batch_size is None or int(batch_size) < 1:
                raise InputError(f"features=None (unconditional) needs batch_size >= 1, got batch_size={batch_size!r}")
            batch = int(batch_size)
            if drop is not None:
                self._check_drop(drop, batch)
                if not bool(drop.all()):
                    raise InputError("features=None means every row is unconditional, but drop has False entries")
            embedding = null.unsqueeze(0).expand(batch, -1).clone()
        else:
            if not isinstance(features, torch.Tensor):
                raise InputTypeError(f"features must be a torch.Tensor of shape (B, F), got {type(features).__name__}")
            if features.ndim != 2 or features.shape[1] != self.num_features:
                raise InputError(
                    f"features must have shape (B, {self.num_features}) for {tuple(self.config.feature_names)}, "
                    f"got {tuple(features.shape)}"
                )
            batch = features.shape[0]
            if batch_size is not None and int(batch_size) != batch:
                raise InputError(f"batch_size={batch_size} does not match features batch {batch}")
            embedding = self.mlp(features.to(device=null.device, dtype=null.dtype))
            if drop is not None:
                self._check_drop(drop, batch)
                embedding = torch.where(drop.to(embedding.device)[:, None], null.expand_as(embedding), embedding)

        if not return_dict:
            return (embedding,)
        return DemographicEncoderOutput(embedding=embedding)

    @staticmethod
    def _check_drop(drop: torch.Tensor, batch: int) -> None:
        if not isinstance(drop, torch.Tensor) or drop.dtype != torch.bool:
            raise InputTypeError(f"drop must be a bool tensor of shape ({batch},), got {drop!r:.80}")
        if tuple(drop.shape) != (batch,):
            raise InputError(f"drop must have shape ({batch},) (one flag per row), got {tuple(drop.shape)}")
