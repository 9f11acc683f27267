"""Face localizers: images in, faces out (boxes in each image's pixels, dominant first).

Every localizer offers ``localize(images) -> list[list[Detection]]``:
- `LNetLocalizer` (lnet.py): the paper's cascade, LNet_o then LNet_s; built from a bundle with
  `LNetLocalizer.from_bundle`;
- `CascadeLocalizer`, `FullImageLocalizer` (baselines.py): scikit-image's LBP cascade, and the
  whole image for aligned crops.
Their parts: windows.py scores rectangles on a response map, peaks.py splits a map into regions
(density peaks), drawing.py draws the maps and boxes.
"""

from faceattr_ray.localizers.base import Detection, as_rgb
from faceattr_ray.localizers.baselines import CascadeLocalizer, FullImageLocalizer
from faceattr_ray.localizers.lnet import LNetLocalizer, LocalizationTrace

LOCALIZERS = ("lnet", "cascade", "full")

__all__ = ["LOCALIZERS", "CascadeLocalizer", "Detection", "FullImageLocalizer", "LNetLocalizer",
           "LocalizationTrace", "as_rgb"]
