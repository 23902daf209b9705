"""Power-function EMA and its post-hoc reconstruction (Karras et al. 2024, section 3.1 and appendix C.1-C.3).

An EMA whose averaging profile is a power function ``t^gamma`` keeps the same *relative* length
``sigma_rel`` (std of the profile / training length) at every point of training. Training tracks
two of them (EDM2: sigma_rel 0.05 and 0.10) and writes snapshots of both every few steps; any other
length at any step is then a least-squares combination of those snapshots (appendix C.3,
Algorithm 3), so the EMA length is chosen on measurements after training instead of before it.
Time is counted in optimiser steps (EDM2 counts images; with a fixed batch the two agree).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "PowerFunctionEMA",
    "SNAPSHOT_PATTERN",
    "exp_to_std",
    "power_function_beta",
    "power_function_correlation",
    "snapshot_name",
    "solve_posthoc_coefficients",
    "std_to_exp",
]

#: ``phema-<step>-<sigma_rel>.safetensors`` in OUTPUT/posthoc_ema/
SNAPSHOT_PATTERN = re.compile(r"^phema-(\d+)-(\d+\.\d+)\.safetensors$")


def snapshot_name(step: int, std: float) -> str:
    return f"phema-{step:07d}-{std:.3f}.safetensors"


def exp_to_std(exp: float | np.ndarray) -> np.ndarray:
    """Relative standard deviation sigma_rel of the power-function profile with exponent gamma (eq. 123)."""
    exp = np.float64(exp)
    return np.sqrt((exp + 1) / (exp + 2) ** 2 / (exp + 3))


def std_to_exp(std: float | np.ndarray) -> np.ndarray:
    """Exponent gamma for a relative standard deviation (eq. 126: the largest real root of a cubic)."""
    std = np.float64(std)
    roots = [np.roots([1, 7, 16 - t, 12 - t]).real.max() for t in np.atleast_1d(std).reshape(-1) ** -2]
    return np.float64(roots).reshape(np.shape(std))


def power_function_beta(std: float, step: int) -> float:
    """EMA decay after optimiser step ``step`` (1-based) that tracks profile ``std`` (eq. 127, t_delta = 1)."""
    return float((1 - 1 / step) ** (std_to_exp(std) + 1))


def power_function_correlation(a_ofs: np.ndarray, a_std: np.ndarray, b_ofs: np.ndarray, b_std: np.ndarray
                               ) -> np.ndarray:
    """Inner products of power-function profiles ending at ``a_ofs`` and ``b_ofs`` (eq. 151, Algorithm 3)."""
    a_exp, b_exp = std_to_exp(a_std), std_to_exp(b_std)
    ratio = a_ofs / b_ofs
    t_exp = np.where(a_ofs < b_ofs, b_exp, -a_exp)
    return (a_exp + 1) * (b_exp + 1) * ratio**t_exp / ((a_exp + b_exp + 1) * np.maximum(a_ofs, b_ofs))


def solve_posthoc_coefficients(in_ofs: Sequence[float], in_std: Sequence[float], out_ofs: Sequence[float],
                               out_std: Sequence[float]) -> np.ndarray:
    """Weights [snapshot, output] of the snapshots whose sum best matches each wanted profile (Algorithm 3)."""
    in_ofs, in_std = np.broadcast_arrays(np.float64(in_ofs), np.float64(in_std))
    out_ofs, out_std = np.broadcast_arrays(np.float64(out_ofs), np.float64(out_std))
    col, row = (lambda x: x.reshape(-1, 1)), (lambda x: x.reshape(1, -1))
    gram = power_function_correlation(col(in_ofs), col(in_std), row(in_ofs), row(in_std))
    target = power_function_correlation(col(in_ofs), col(in_std), row(out_ofs), row(out_std))
    weights = np.linalg.lstsq(gram, target, rcond=None)[0]  # lstsq: snapshots may be nearly collinear
    return weights / weights.sum(axis=0)


class PowerFunctionEMA:
    """Power-function EMAs of a module's parameters for several sigma_rel (EDM2's ``PowerFunctionEMA``).

    Holds float32 copies on the parameters' device. ``state_dict``/``load_state_dict`` make it an
    accelerate checkpointing object, so a resumed run continues the same averages.
    """

    def __init__(self, named_parameters: Iterable[tuple[str, torch.nn.Parameter]],
                 stds: Sequence[float] = (0.05, 0.10)) -> None:
        self.names, self.parameters = [], []
        for name, parameter in named_parameters:
            self.names.append(name)
            self.parameters.append(parameter)
        self.stds = tuple(float(s) for s in stds)
        self.averages = [[p.detach().float().clone() for p in self.parameters] for _ in self.stds]

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Fold in the current parameters after optimiser step ``step`` (1-based; step 1 copies them)."""
        for std, average in zip(self.stds, self.averages):
            beta = power_function_beta(std, step)
            for tracked, parameter in zip(average, self.parameters):
                tracked.lerp_(parameter.detach().float(), 1 - beta)

    def snapshot(self, directory: Path, step: int) -> list[Path]:
        """Write one safetensors file per sigma_rel, ``{parameter name: tensor}``, into ``directory``."""
        from safetensors.torch import save_file

        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for std, average in zip(self.stds, self.averages):
            path = directory / snapshot_name(step, std)
            tmp = path.with_suffix(".tmp")
            save_file({n: t.detach().cpu().contiguous() for n, t in zip(self.names, average)}, str(tmp),
                      metadata={"step": str(step), "sigma_rel": f"{std:.6f}"})
            tmp.replace(path)
            written.append(path)
        return written

    def state_dict(self) -> dict:
        return {"stds": list(self.stds), "names": list(self.names),
                "averages": [[t.cpu() for t in average] for average in self.averages]}

    def load_state_dict(self, state: dict) -> None:
        if list(state["names"]) != self.names or [float(s) for s in state["stds"]] != list(self.stds):
            raise ValueError("power-function EMA state does not match the model's parameters or sigma_rel values")
        for average, saved in zip(self.averages, state["averages"]):
            for tracked, value in zip(average, saved):
                tracked.copy_(value.to(tracked.device))
