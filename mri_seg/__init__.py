"""mri_seg: brain MRI tumour segmentation, from a Kaggle-LGG-layout folder to patient reports."""

import os

# albumentations 2.x checks for updates over the network on import; we never want that.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
