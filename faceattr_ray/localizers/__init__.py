"""Face localizers: images in, faces out (boxes in each image's pixels, dominant first).

Every localizer offers ``localize(images) -> list[list[Detection]]``:
- `LNetLocalizer` (lnet.py): the paper's cascade, LNet_o then LNet_s; built from a bundle with
  `LNetLocalizer.from_bundle`;
- `PyramidLNetLocalizer` (pyramid.py): the cascade for face-tag LNets (preset "wild"): LNet_o
  over an image pyramid proposes, LNet_s refines; `LNetLocalizer.from_bundle` returns it for
  such bundles;
- `CascadeLocalizer`, `FullImageLocalizer` (baselines.py): scikit-image's LBP cascade, and the
  whole image for aligned crops;
- `FramedLocalizer` (framing.py): any of them, each found box re-sized to the zoom the
  attribute network reads most confidently, then its centre moved where it reads more so
  (`Predictor(frame_zooms=...)`; the bundle's "predict" settings).
Their parts: windows.py scores rectangles on a response map, peaks.py splits a map into regions
(density peaks), drawing.py draws the maps and boxes.
"""

from faceattr_ray.localizers.base import Detection, as_rgb
from faceattr_ray.localizers.baselines import CascadeLocalizer, FullImageLocalizer
from faceattr_ray.localizers.framing import FramedLocalizer
from faceattr_ray.localizers.lnet import LNetLocalizer, LocalizationTrace
from faceattr_ray.localizers.pyramid import PyramidLNetLocalizer

LOCALIZERS = ("lnet", "cascade", "full")

__all__ = ["LOCALIZERS", "CascadeLocalizer", "Detection", "FramedLocalizer", "FullImageLocalizer",
           "LNetLocalizer", "LocalizationTrace", "PyramidLNetLocalizer", "as_rgb"]
