"""Fréchet distance between two cohorts' feature vectors, with the floor that sampling alone gives.

The Fréchet (2-Wasserstein) distance between Gaussians fitted to two feature sets, as FID uses it
(Heusel et al. 2017, "GANs trained by a two time-scale update rule converge to a local Nash
equilibrium", NeurIPS; Dowson & Landau 1982)::

    d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))

Tr((S1 S2)^(1/2)) is computed as the sum of the square roots of the eigenvalues of the symmetric
positive semi-definite S1^(1/2) S2 S1^(1/2), which is exact and stays stable when a covariance
is singular (scipy.linalg.sqrtm on S1 S2 can return complex noise there).

Few subjects and hundreds of features make the covariances singular and the distance mostly
noise, so the features are reduced first: standardised with the reference's mean and SD, then
projected on the first ``dims`` principal components of the two samples being compared, pooled
(``dims = min(FRECHET_DIMS, n_reference // 2 - 1)``, so each half of the reference still has
more subjects than dimensions). Pooling matters: components fitted on the reference alone
describe how reference subjects differ from each other and can miss a shift of the generated
cohort in another direction (a blurred copy, say); a shift between the two samples adds
variance along itself, so the pooled components contain it. The distance is in squared
reference SDs, summed over the kept components.

The estimate grows as samples shrink (Chong & Forsyth 2020), so the figure that means something
is compared at matched size. Over ``FLOOR_SPLITS`` seeded splits of the reference into halves A
and B of ``h = n_reference // 2`` subjects:

* the floor is d^2(A, B): what two samples of the reference population give at that size;
* the matched distance is d^2(G, A), G a random subset of ``h`` generated subjects (all of
  them if fewer).

A matched distance within the floor's range means these features cannot tell the generated
cohort from the reference at this sample size. ``distance`` (all generated vs all reference)
is reported as well, for comparison with other evaluations of the same sizes.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

__all__ = ["FRECHET_DIMS", "FLOOR_SPLITS", "frechet_distance", "standardise", "reduced_distance", "frechet_check"]

#: most principal components kept (fewer when the reference is small)
FRECHET_DIMS = 16
#: random halvings of the reference that give the floor
FLOOR_SPLITS = 20


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) (the squared distance, as FID reports it)."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise InputError(f"means {mu1.shape}/{mu2.shape} and covariances {sigma1.shape}/{sigma2.shape} must "
                         "describe the same number of features")
    root = _psd_sqrt(sigma1)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root @ sigma2 @ root), 0.0, None)).sum()
    value = float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * cross)
    return max(value, 0.0)


def _gaussian(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def standardise(features: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``features`` in units of the reference's per-feature SD around its mean (a constant feature: unscaled)."""
    reference = np.asarray(reference, np.float64)
    sd = reference.std(axis=0)
    return (np.asarray(features, np.float64) - reference.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def reduced_distance(a: np.ndarray, b: np.ndarray, dims: int) -> float:
    """Fréchet distance of two (n, D) standardised samples on the first ``dims`` principal components of both pooled."""
    pooled = np.vstack([a, b])
    _, _, vt = np.linalg.svd(pooled - pooled.mean(axis=0), full_matrices=False)
    components = vt[: max(1, min(dims, vt.shape[0]))]
    return frechet_distance(*_gaussian(a @ components.T), *_gaussian(b @ components.T))


def frechet_check(generated: np.ndarray, reference: np.ndarray, dims: int = FRECHET_DIMS,
                  splits: int = FLOOR_SPLITS, seed: int = 0) -> dict[str, float | int | str | None]:
    """Fréchet distances generated vs reference (all, and matched to half the reference) and the floor between
    reference halves, on projected features (see the module docstring).

    Needs at least 2 generated and 4 reference subjects; otherwise ``distance`` is None and ``reason`` says why.
    """
    generated, reference = np.atleast_2d(generated), np.atleast_2d(reference)
    n_gen, n_ref = len(generated), len(reference)
    out: dict[str, float | int | str | None] = {"n_generated": n_gen, "n_reference": n_ref, "features": None,
                                                "dims": None, "distance": None, "half_size": None,
                                                "matched_distance": None, "matched_min": None, "matched_max": None,
                                                "floor_mean": None, "floor_min": None, "floor_max": None,
                                                "floor_splits": 0, "reason": None}
    if n_gen < 2 or n_ref < 4:
        out["reason"] = (f"needs at least 2 generated and 4 reference subjects (have {n_gen} and {n_ref}): a "
                         "covariance needs 2 subjects and the floor 2 halves of 2")
        return out
    half = n_ref // 2
    k = min(dims, half - 1)
    gen_z, ref_z = standardise(generated, reference), standardise(reference, reference)
    out.update(features=int(reference.shape[1]), dims=k, half_size=half,
               distance=reduced_distance(gen_z, ref_z, k))
    rng = np.random.default_rng(seed)
    floors, matched = [], []
    for _ in range(splits):
        order = rng.permutation(n_ref)
        half_a = ref_z[order[:half]]
        floors.append(reduced_distance(ref_z[order[half : 2 * half]], half_a, k))
        matched.append(reduced_distance(gen_z[rng.permutation(n_gen)[:half]], half_a, k))
    if floors:
        out.update(matched_distance=float(np.mean(matched)), matched_min=float(np.min(matched)),
                   matched_max=float(np.max(matched)), floor_mean=float(np.mean(floors)),
                   floor_min=float(np.min(floors)), floor_max=float(np.max(floors)), floor_splits=len(floors))
    return out
