"""Training data: AutoPET / nnU-Net layout readers, DICOM demographics, SUV, preprocessing and cache.

Nothing here is needed to *use* the pipeline; it turns folders of real (or phantom)
PET/CT studies into the fixed-size model-space arrays the training scripts read.
"""

from .autopet import scan_autopet
from .cache import CachedVolumeDataset, CacheIndex, build_cache, dataset_key, open_cache
from .nnunet import scan_nnunet
from .preprocess import PreprocessConfig, preprocess_study
from .scan import scan_dataset
from .study import ScanResult, SkippedStudy, StudyRecord
from .suv import F18_HALF_LIFE_S, activity_to_suv, suv_scale_factor

__all__ = [
    "PreprocessConfig",
    "preprocess_study",
    "build_cache",
    "dataset_key",
    "open_cache",
    "CacheIndex",
    "CachedVolumeDataset",
    "scan_autopet",
    "scan_nnunet",
    "scan_dataset",
    "ScanResult",
    "SkippedStudy",
    "StudyRecord",
    "F18_HALF_LIFE_S",
    "activity_to_suv",
    "suv_scale_factor",
]
