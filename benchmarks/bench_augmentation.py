"""Augmentation utility: does adding generated subjects with lesions help a lesion segmenter?

The field's test of a generator for data augmentation (autoPET's task): the same small lesion
segmenter, trained with the same steps and seed on

* (a) ``--n-phantoms`` phantoms with lesions (the phantom's own lesion model, AutoPET's diagnoses),
* (b) the same plus ``--n-generated`` subjects of the shipped cascade with lesions inserted by
  ``pipe(..., diagnosis=...)`` (``petct_pipeline.lesions``, placed by the shipped organ labels),
* (c) the ``--n-generated`` generated subjects alone,

is tested on ``--n-test`` held-out phantoms with lesions (other seeds): voxel Dice pooled over the
test subjects and lesion-wise detection F1 (``petct_pipeline.evaluation.lesion_detection``: a true
lesion is found when any predicted voxel touches it; autoPET's reading).

The segmenter: ``PETCTUNet3DModel`` (2 inputs CT and PET in the library's model space, 2 classes,
no conditioning), 4 mm, random 48^3 crops (192 mm) of which a third are centred on a lesion voxel
(nnU-Net's foreground oversampling), cross-entropy + soft Dice (``training.seg_loss``), AdamW with
cosine decay; the test volumes are segmented whole (the body's box, padded with air). Every
configuration sees the same number of steps and crops: equal compute, only the data differ.

    python benchmarks/bench_augmentation.py                     # 16 + 16 subjects, 16 test, 600 steps
    python benchmarks/bench_augmentation.py --steps 1200 --tag cpu_long

Generated subjects and phantoms are kept under ``--work-dir`` (default data/augmentation), so a
rerun trains again without generating again. Results: benchmarks/results/augmentation.{json,md}.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
import numpy as np
import torch
from scipy import ndimage

from petct_pipeline.data.preprocess import AIR_HU, OUTSIDE_BODY_MODEL
from petct_pipeline.evaluation.lesion_detection import LesionScores, combine_scores, lesion_scores
from petct_pipeline.evaluation.metrics import body_mask
from petct_pipeline.intensity import hu_to_model, suv_to_model
from petct_pipeline.models import PETCTUNet3DModel
from petct_pipeline.phantom import generate_phantom, sample_population
from training.seg_loss import segmentation_loss

SPACING_MM = 4.0
CROP = (48, 48, 48)
FOREGROUND_FRACTION = 1 / 3  # nnU-Net's oversampling of crops holding foreground
POSITIVE_DIAGNOSES = ("LYMPHOMA", "MELANOMA", "LUNG_CANCER")
UNET = {"block_out_channels": (16, 32, 64), "layers_per_block": 1, "attention_levels": (False, False, False),
        "mid_attention": False, "norm_num_groups": 8}
HEADER = ["training data", "subjects", "lesions", "test Dice", "test F1", "sensitivity", "false positives",
          "train s"]


@dataclass
class Study:
    """One subject as the lesion segmenter sees it: model-space (2, X, Y, Z) volume and its lesion mask."""

    name: str
    volume: np.ndarray
    lesions: np.ndarray  # bool (X, Y, Z)

    def padded(self) -> tuple[np.ndarray, np.ndarray]:
        """Volume and mask padded with air by half a crop on every side, so any voxel can centre a crop."""
        if not hasattr(self, "_padded"):
            pad = [(c // 2, c // 2) for c in CROP]
            volume = np.stack([np.pad(self.volume[c], pad, constant_values=OUTSIDE_BODY_MODEL[c]) for c in range(2)])
            self._padded = (volume, np.pad(self.lesions, pad))
        return self._padded

    @property
    def lesion_count(self) -> int:
        return int(ndimage.label(self.lesions, structure=np.ones((3, 3, 3)))[1])


def as_study(name: str, ct: np.ndarray, suv: np.ndarray, lesions: np.ndarray, affine: np.ndarray) -> Study:
    """Mask to the body and crop to its box, as the organ segmenter prepares its input."""
    spacing = np.abs(np.diag(np.asarray(affine)[:3, :3]))
    if not np.allclose(spacing, SPACING_MM, atol=1e-3):
        raise ValueError(f"{name}: the study is at {spacing} mm, the benchmark at {SPACING_MM:g} mm")
    body = body_mask(ct, affine)
    ct = np.where(body, ct, AIR_HU).astype(np.float32)
    suv = np.where(body, np.clip(suv, 0, None), 0.0).astype(np.float32)
    box = ndimage.find_objects(body.astype(np.int8))[0]
    volume = np.stack([hu_to_model(ct[box]), suv_to_model(suv[box])]).astype(np.float32)
    return Study(name, volume, (np.asarray(lesions) > 0)[box] & body[box])


def phantom_studies(count: int, seed: int, work_dir: Path) -> list[Study]:
    """Phantoms with lesions (diagnoses cycling through AutoPET's positives), cached as .npz."""
    studies = []
    for index, demographics in enumerate(sample_population(count, seed)):
        path = work_dir / f"phantom_{seed}_{index:03d}.npz"
        if not path.is_file():
            diagnosis = POSITIVE_DIAGNOSES[index % len(POSITIVE_DIAGNOSES)]
            subject = generate_phantom(demographics, seed + index, spacing=SPACING_MM, lesions=True,
                                       diagnosis=diagnosis)
            np.savez_compressed(path, ct=subject.ct_hu, suv=subject.suv, lesions=subject.lesion_mask,
                                affine=subject.affine)
        studies.append(_load(path))
    return studies


def generated_studies(count: int, seed: int, work_dir: Path, model: str | None) -> list[Study]:
    """Subjects of the shipped cascade with lesions inserted (``pipe(..., diagnosis=...)``), cached as .npz."""
    paths = [work_dir / f"generated_{seed}_{index:03d}.npz" for index in range(count)]
    missing = [i for i, path in enumerate(paths) if not path.is_file()]
    if missing:
        _, pipe = harness.load_pipeline(model)
        population = sample_population(count, seed)
        for index in missing:
            started = time.perf_counter()
            output = pipe(population[index], diagnosis=POSITIVE_DIAGNOSES[index % len(POSITIVE_DIAGNOSES)],
                          generator=torch.Generator().manual_seed(seed + index))
            np.savez_compressed(paths[index], ct=output.ct[0], suv=output.pet[0],
                                lesions=output.lesions[0].instances, affine=output.affines[0])
            print(f"generated {index + 1}/{count} in {time.perf_counter() - started:.0f} s", flush=True)
    return [_load(path) for path in paths]


def _load(path: Path) -> Study:
    data = np.load(path)
    return as_study(path.stem, data["ct"], data["suv"], data["lesions"], data["affine"])


# ----------------------------------------------------------------------------- training
def random_crop(study: Study, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A CROP-sized (volume, target) pair; a third centred on a lesion voxel, the rest anywhere (air-padded)."""
    volume, lesions = study.padded()
    if rng.random() < FOREGROUND_FRACTION and study.lesions.any():
        voxels = np.argwhere(study.lesions)
        centre = voxels[rng.integers(len(voxels))]
    else:
        centre = np.array([rng.integers(n) for n in study.lesions.shape])
    box = tuple(slice(int(c), int(c) + size) for c, size in zip(centre, CROP))  # padded coordinates
    return volume[(slice(None), *box)].copy(), lesions[box].astype(np.int64)


def train_segmenter(studies: list[Study], steps: int, seed: int, batch_size: int = 2) -> PETCTUNet3DModel:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    unet = PETCTUNet3DModel(in_channels=2, out_channels=2, conditioning_channels=0, embedding_dim=0, **UNET)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps, pct_start=0.05,
                                                   anneal_strategy="cos")
    unet.train()
    for step in range(steps):
        pairs = [random_crop(studies[rng.integers(len(studies))], rng) for _ in range(batch_size)]
        volume = torch.from_numpy(np.stack([p[0] for p in pairs]))
        target = torch.from_numpy(np.stack([p[1] for p in pairs]))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = unet(volume, 0.0).sample.float()
        loss, _ = segmentation_loss(logits, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if (step + 1) % 100 == 0:
            print(f"  step {step + 1}/{steps} loss {loss.item():.3f}", flush=True)
    return unet.eval()


@torch.no_grad()
def segment(unet: PETCTUNet3DModel, study: Study) -> np.ndarray:
    """The predicted lesion mask of a whole study (padded with air to the UNet's size multiple)."""
    multiple = unet.spatial_multiple
    size = study.volume.shape[1:]
    pad = [(0, (-n) % multiple) for n in size]
    volume = np.stack([np.pad(study.volume[c], pad, constant_values=OUTSIDE_BODY_MODEL[c]) for c in range(2)])[None]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = unet(torch.from_numpy(volume), 0.0).sample.float()
    return logits.argmax(dim=1)[0].numpy()[: size[0], : size[1], : size[2]].astype(bool)


def score(unet: PETCTUNet3DModel, test: list[Study]) -> LesionScores:
    return combine_scores([lesion_scores(segment(unet, study), study.lesions) for study in test])


# ----------------------------------------------------------------------------- report
def render_markdown(result: dict[str, Any]) -> str:
    lines = [f"Lesion segmenter (PETCTUNet3DModel {list(UNET['block_out_channels'])}, 4 mm, {result['steps']} steps "
             f"of {CROP[0]}^3 crops, batch 2, seed {result['seed']}) tested on {result['test_subjects']} held-out "
             f"phantoms with {result['test_lesions']} lesions; Dice pooled over the test voxels, F1 lesion-wise "
             "(any overlap is a hit):", "", *harness.markdown_table(HEADER, result["rows"]), "",
             f"Generating one subject with lesions took {result['generation_s_per_subject']} s "
             "(the shipped demo cascade, default steps, 2 CPU cores shared with other work)."]
    return "\n".join(lines) + "\n"


def headline_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"training data": row[0], "test Dice": row[3], "test F1": row[4]} for row in result["rows"]]


BENCHMARK = harness.Benchmark("augmentation", __doc__, __file__, render_markdown, headline_rows)


def main() -> None:
    parser = harness.argument_parser(__doc__, model=True, tag=True)
    parser.add_argument("--n-phantoms", type=int, default=16, help="phantoms with lesions in training (a), (b)")
    parser.add_argument("--n-generated", type=int, default=16, help="generated subjects with lesions (b), (c)")
    parser.add_argument("--n-test", type=int, default=16, help="held-out phantoms with lesions to test on")
    parser.add_argument("--steps", type=int, default=600, help="training steps of every configuration")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, default=harness.REPO / "data" / "augmentation")
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    phantoms = phantom_studies(args.n_phantoms, args.seed, args.work_dir)
    test = phantom_studies(args.n_test, 1000 + args.seed, args.work_dir)
    started = time.perf_counter()
    generated = generated_studies(args.n_generated, 500 + args.seed, args.work_dir, args.model)
    generation_s = (time.perf_counter() - started) / max(1, args.n_generated)
    rows = []
    for name, studies in (("(a) phantoms", phantoms), ("(b) phantoms + generated", phantoms + generated),
                          ("(c) generated", generated)):
        print(f"training on {name}: {len(studies)} subjects", flush=True)
        started = time.perf_counter()
        unet = train_segmenter(studies, args.steps, args.seed)
        seconds = time.perf_counter() - started
        scores = score(unet, test)
        rows.append([name, len(studies), sum(s.lesion_count for s in studies), round(scores.dice or 0.0, 3),
                     round(scores.f1 or 0.0, 3), round(scores.sensitivity or 0.0, 3), scores.false_positives,
                     round(seconds, 1)])
        print(rows[-1], flush=True)
    result = {"rows": rows, "steps": args.steps, "seed": args.seed, "test_subjects": len(test),
              "test_lesions": sum(s.lesion_count for s in test),
              "generation_s_per_subject": round(generation_s, 1)}
    config = {"n_phantoms": args.n_phantoms, "n_generated": args.n_generated, "n_test": args.n_test,
              "steps": args.steps, "seed": args.seed, "model": harness.relative(harness.resolve_model(args.model))}
    print(BENCHMARK.save(args.tag, config, result))


if __name__ == "__main__":
    main()
