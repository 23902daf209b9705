"""OrganSegmentationModel: the shipped checkpoint loads, a saved model reloads to the same logits, errors say why."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from petct_pipeline.models import OrganSegmentationModel, PETCTUNet3DModel, class_ids_for
from petct_pipeline.models.organ_segmentation import SEGMENTER_CONFIG, pool_input, upsample_logits
from petct_pipeline.organs import LABEL_IDS

SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints" / "petct-phantom-seg"
TINY_UNET = {"block_out_channels": (8, 16), "attention_levels": (False, False), "norm_num_groups": 4}


def test_shipped_checkpoint_loads_with_its_classes_and_grid():
    meta = json.loads((SHIPPED / SEGMENTER_CONFIG).read_text())
    assert json.loads((SHIPPED / "config.json").read_text())["_class_name"] == "PETCTUNet3DModel"
    model = OrganSegmentationModel.from_pretrained(SHIPPED)
    assert isinstance(model.unet, PETCTUNet3DModel) and not model.unet.training
    assert model.label_ids == tuple(meta["label_ids"]) and LABEL_IDS["liver"] in model.label_ids
    assert model.spacing_mm == meta["spacing_mm"] and model.info["dice"] == meta["info"]["dice"]
    side = model.spatial_multiple
    logits = model.logits(torch.zeros(1, 2, side, side, 2 * side))
    assert logits.shape == (1, len(model.label_ids) + 1, side, side, 2 * side) and logits.dtype == torch.float32


def test_saved_model_reloads_to_the_same_logits(tmp_path):
    torch.manual_seed(0)
    model = OrganSegmentationModel.build(class_ids_for(("liver", "lungs")), spacing_mm=16.0, **TINY_UNET)
    model.info = {"note": "tiny"}
    model.save_pretrained(tmp_path / "seg")
    again = OrganSegmentationModel.from_pretrained(tmp_path / "seg")
    volume = torch.randn(1, 2, 4, 4, 8)
    assert torch.equal(model.logits(volume), again.logits(volume))
    assert again.label_ids == model.label_ids and again.spacing_mm == 16.0 and again.info == {"note": "tiny"}
    # a training output folder holding organ_segmenter/ loads too
    model.save_pretrained(tmp_path / "run" / "organ_segmenter")
    assert OrganSegmentationModel.from_pretrained(tmp_path / "run").label_ids == model.label_ids


def test_classes_map_to_totalsegmentator_ids_and_back():
    ids = class_ids_for(("liver", "lungs"))
    assert LABEL_IDS["liver"] in ids and LABEL_IDS["lung_upper_lobe_left"] in ids and ids == tuple(sorted(ids))
    model = OrganSegmentationModel.build(ids, **TINY_UNET)
    lookup = model.class_lookup()
    assert np.array_equal(model.classes_to_ids(lookup[np.array(ids)]), np.array(ids))
    assert lookup[LABEL_IDS["spleen"]] == 0  # not modelled: background


def test_model_grid_covers_the_same_box():
    model = OrganSegmentationModel.build(class_ids_for(("liver",)), spacing_mm=8.0, **TINY_UNET)
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    shape, grid_affine = model.model_grid((40, 30, 21), affine)
    assert shape == (10, 8, 8)
    # the first voxel's outer corner is where the source's is
    assert np.allclose(grid_affine[:3, 3] - 4.0, affine[:3, 3] - np.array([1.0, 1.0, 1.5]))


def test_invalid_models_and_folders_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unet.in_channels is fixed"):
        OrganSegmentationModel.build(class_ids_for(), in_channels=3)
    with pytest.raises(ValueError, match="distinct TotalSegmentator"):
        OrganSegmentationModel.build((5, 5), **TINY_UNET)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        OrganSegmentationModel.from_pretrained(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="is not a segmentation model"):
        OrganSegmentationModel.from_pretrained(tmp_path / "empty")
    OrganSegmentationModel.build(class_ids_for(("liver",)), **TINY_UNET).save_pretrained(tmp_path / "old")
    meta = json.loads((tmp_path / "old" / SEGMENTER_CONFIG).read_text())
    (tmp_path / "old" / SEGMENTER_CONFIG).write_text(json.dumps({**meta, "format": "other/9"}))
    with pytest.raises(ValueError, match="format 'other/9'"):
        OrganSegmentationModel.from_pretrained(tmp_path / "old")


def test_input_stride_runs_the_unet_coarser_and_labels_the_output_grid(tmp_path):
    torch.manual_seed(0)
    model = OrganSegmentationModel.build(class_ids_for(("liver",)), spacing_mm=4.0, input_stride=2, **TINY_UNET)
    assert model.spatial_multiple == 2 * model.unet.spatial_multiple
    side = model.spatial_multiple
    volume = torch.randn(1, 2, side, side, 2 * side)
    logits = model.logits(volume)
    assert logits.shape == (1, 2, side, side, 2 * side)
    # the UNet saw the 2x average-pooled volume; its logits came back trilinearly
    pooled = pool_input(volume, 2)
    assert pooled.shape[2:] == (side // 2, side // 2, side)
    assert torch.allclose(pooled[0, :, 0, 0, 0], volume[0, :, :2, :2, :2].mean(dim=(1, 2, 3)))
    constant = torch.full((1, 3, 2, 2, 2), 1.5)
    assert torch.equal(upsample_logits(constant, 2), torch.full((1, 3, 4, 4, 4), 1.5))
    model.save_pretrained(tmp_path / "strided")
    again = OrganSegmentationModel.from_pretrained(tmp_path / "strided")
    assert again.input_stride == 2 and torch.equal(again.logits(volume), logits)
    with pytest.raises(ValueError, match="input_stride must be an integer >= 1"):
        OrganSegmentationModel.build(class_ids_for(("liver",)), input_stride=0, **TINY_UNET)
