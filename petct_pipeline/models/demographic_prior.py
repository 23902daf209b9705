"""Demographic prior: a per-voxel linear model of how the stage-1 volume changes with the demographics.

The score model learns the demographic effects only partly on a CPU budget (benchmarks/
bench_conditioning.py measured its slopes at under half of the data's at guidance 1), while a
least-squares fit of the training volumes on the same features gets the first-order effects
right in seconds: taller patients have longer lungs, men more enclosed air, heavier patients
more fat. At sampling the pipeline adds ``prior_scale`` times this model's shift (the fitted
volume of the subject minus that of the training population's mean features) to the denoised
estimate at high noise levels, where anatomy is decided, and leaves the fine detail to the
score model (see ``PETCTPipeline``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from ..errors import InputError

__all__ = ["DemographicPrior", "PRIOR_CHANNELS"]

#: the stage-1 volume's channels, in order
PRIOR_CHANNELS = ("ct", "pet")


class DemographicPrior(ModelMixin, ConfigMixin):
    """Per-voxel slopes of the model-space volume on the demographic encoder's features.

    ``forward(features)`` returns the (B, 2, X, Y, Z) shift from the population mean; channels
    not in ``channels`` get zero (the PET channel is left out of the shipped prior because it
    made organ SUVs worse, see docs/experiments.md, entry 8).
    """

    @register_to_config
    def __init__(
        self,
        num_features: int = 4,
        shape: Sequence[int] = (28, 28, 48),
        channels: Sequence[str] = ("ct",),
        feature_mean: Sequence[float] | None = None,
        sigma_min: float = 0.5,
    ) -> None:
        super().__init__()
        shape = [int(n) for n in shape]
        if num_features < 1 or len(shape) != 3 or min(shape) < 1:
            raise InputError(f"num_features must be >= 1 and shape three positive ints, got {num_features}, {shape}")
        channels = list(channels)
        unknown = [c for c in channels if c not in PRIOR_CHANNELS]
        if not channels or unknown or len(set(channels)) != len(channels):
            raise InputError(f"channels must be distinct names from {list(PRIOR_CHANNELS)}, got {channels}")
        mean = [0.0] * num_features if feature_mean is None else [float(v) for v in feature_mean]
        if len(mean) != num_features:
            raise InputError(f"feature_mean needs {num_features} values (one per feature), got {len(mean)}")
        if not sigma_min >= 0.0:
            raise InputError(f"sigma_min must be >= 0, got {sigma_min!r}")
        self.register_buffer("population_features", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("slopes", torch.zeros(num_features, len(channels), *shape))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, num_features) encoder features -> (B, 2, X, Y, Z) shift of the model-space volume."""
        if features.ndim != 2 or features.shape[1] != self.config.num_features:
            raise InputError(
                f"features must have shape (batch, {self.config.num_features}), got {tuple(features.shape)}"
            )
        centred = features.to(self.slopes) - self.population_features
        fitted = torch.einsum("bf,fc...->bc...", centred, self.slopes)
        shift = fitted.new_zeros(features.shape[0], len(PRIOR_CHANNELS), *self.config.shape)
        for index, name in enumerate(self.config.channels):
            shift[:, PRIOR_CHANNELS.index(name)] = fitted[:, index]
        return shift

    @classmethod
    def fit(
        cls, features: torch.Tensor, volumes: torch.Tensor, channels: Sequence[str] = ("ct",), sigma_min: float = 0.5
    ) -> DemographicPrior:
        """Ordinary least squares of (N, 2, X, Y, Z) ``volumes`` on (N, F) ``features`` (with intercept)."""
        if features.ndim != 2 or volumes.ndim != 5 or volumes.shape[1] != len(PRIOR_CHANNELS):
            raise InputError(
                f"expected features (N, F) and volumes (N, 2, X, Y, Z), got {tuple(features.shape)} and "
                f"{tuple(volumes.shape)}"
            )
        count, num_features = features.shape
        if volumes.shape[0] != count or count <= num_features + 1:
            raise InputError(
                f"need one volume per feature row and more than {num_features + 1} subjects, got {count} rows "
                f"and {volumes.shape[0]} volumes"
            )
        mean_features = features.double().mean(0)
        prior = cls(num_features=num_features, shape=volumes.shape[2:], channels=channels,
                    feature_mean=mean_features.tolist(), sigma_min=sigma_min)
        centred = features.double() - mean_features
        rank = int(torch.linalg.matrix_rank(centred))
        if rank < num_features:
            raise InputError(f"the features are collinear (rank {rank} of {num_features}): vary every demographic")
        picked = [PRIOR_CHANNELS.index(name) for name in prior.config.channels]
        targets = volumes[:, picked].double().reshape(count, -1)
        targets = targets - targets.mean(0)
        slopes = _normal_equation_slopes(centred, targets)
        prior.slopes.copy_(slopes.reshape(prior.slopes.shape).float())
        return prior


def _normal_equation_slopes(centred: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(F, V) least-squares slopes of (N, V) ``targets`` on (N, F) full-rank ``centred`` features, bit-reproducible.

    ``torch.linalg.lstsq`` (LAPACK on the whole (N, V) right-hand side) differed in the last bit between two
    processes fitting the same data (blocked kernels whose path depends on memory alignment), so a refit
    did not reproduce a pipeline folder's bytes. The normal equations (X'X) b = X'y with the tiny F x F
    system inverted once and every (F, V) product summed elementwise give the same bits every run; in
    float64 with centred features their conditioning is ample for a handful of demographic features.
    """
    gram_inverse = torch.linalg.inv(sum(torch.outer(row, row) for row in centred))
    cross = sum(row[:, None] * target[None, :] for row, target in zip(centred, targets))  # X'y, (F, V)
    return sum(gram_inverse[:, f, None] * cross[f][None, :] for f in range(cross.shape[0]))
