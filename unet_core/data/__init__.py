"""Data sets for the U-Net replication: loaders, validation, synthetic stand-ins, patches.

Modules, one concern each:

* :mod:`.paths` -- :func:`data_dir`, the one data-directory setting (``$UNET_DATA_DIR``), and
  :func:`shown_path`, a data path as a page may print it.
* :mod:`.errors` -- :class:`DataError`, raised for every problem with files on disk.
* :mod:`.imageio` -- validated image reading and mask binarisation (all PIL modes).
* :mod:`.drive` -- :func:`load_drive` for DRIVE's official layout.
* :mod:`.isbi2012` -- :func:`load_isbi2012` for ISBI 2012 (PNG folders or multi-page TIFFs).
* :mod:`.synthetic_drive`, :mod:`.synthetic_isbi` -- deterministic DRIVE-like and ISBI-like
  stand-ins, written in the real layouts.
* :mod:`.resolve` -- :func:`resolve_dataset`: real data if present, else the cached stand-in.
* :mod:`.sampler` -- :class:`PatchSampler`: random training patches with mirrored context.

The chapters load their data through these modules; chapter 5 explains the splits.
"""

from unet_core.data.drive import DRIVE_SPLITS, DriveSample, load_drive
from unet_core.data.errors import DataError
from unet_core.data.imageio import binarize_mask, read_gray, read_mask, read_rgb
from unet_core.data.isbi2012 import ISBI_SPLITS, IsbiSample, load_isbi2012
from unet_core.data.paths import DATA_DIR_ENV, data_dir, shown_path
from unet_core.data.resolve import (
    DATASETS,
    ResolvedDataset,
    SyntheticDataWarning,
    resolve_dataset,
)
from unet_core.data.sampler import PatchBatch, PatchSampler
from unet_core.data.synthetic_drive import (
    SyntheticFundus,
    synthetic_fundus,
    write_synthetic_drive,
)
from unet_core.data.synthetic_isbi import SyntheticEM, synthetic_em, write_synthetic_isbi2012

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV",
    "DRIVE_SPLITS",
    "ISBI_SPLITS",
    "DataError",
    "DriveSample",
    "IsbiSample",
    "PatchBatch",
    "PatchSampler",
    "ResolvedDataset",
    "SyntheticDataWarning",
    "SyntheticEM",
    "SyntheticFundus",
    "binarize_mask",
    "data_dir",
    "load_drive",
    "load_isbi2012",
    "read_gray",
    "read_mask",
    "read_rgb",
    "resolve_dataset",
    "shown_path",
    "synthetic_em",
    "synthetic_fundus",
    "write_synthetic_drive",
    "write_synthetic_isbi2012",
]
