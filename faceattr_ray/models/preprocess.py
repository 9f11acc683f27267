"""Preprocessing: how pixels become network inputs, in one object.

Training writes its `Preprocess` into the resolved job config and from there into the bundle's
``config.json`` (``"preprocess"``); inference reads it back from the bundle (`Predictor`,
`LNetLocalizer.from_bundle`). So a bundle is read exactly as it was trained: the same
normalisation (``mean``, ``std``), the same framing of a face (``face_context``) and the same
sizes at which the LNets read an image (``lnet_o_short_side``, ``lnet_o_max_long_side``,
``lnet_s_size``).

The side of ANet's face crop is not here: it is the network's own geometry
(``ANetConfig.window_size``), so it travels with ANet's config.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

# torchvision's ImageNet statistics, which the AlexNet weights expect.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # A found face box is enlarged by this factor before ANet sees it (the paper adds a little
    # context, section 2.2). An aligned crop (no box) is taken whole.
    face_context: float = 1.2
    # The framing rule (issue: attributes in the wild): when set, a found face box is framed as
    # an aligned CelebA crop frames its face: the crop in which the box sits at these fractions
    # (x1, y1, x2, y2 of width, height; `crops.frame_face`). It replaces face_context, so a
    # localizer's tight box gives ANet the crop it learnt on. None: the older context rule.
    face_box: tuple | None = None
    # LNet_o reads the whole image with its short side at this size, aspect kept, the long side
    # capped (extreme strips stay small); LNet_s reads the head-shoulder box at this square size.
    lnet_o_short_side: int = 227
    lnet_o_max_long_side: int = 1024
    lnet_s_size: int = 227

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 3:
                raise ValueError(f"preprocess {name} needs 3 values (R, G, B), got {value}")
            object.__setattr__(self, name, value)
        if min(self.std) <= 0:
            raise ValueError(f"preprocess std must be positive, got {self.std}")
        if self.face_box is not None:
            fb = tuple(float(v) for v in self.face_box)
            if len(fb) != 4 or not (0 <= fb[0] < fb[2] <= 1 and 0 <= fb[1] < fb[3] <= 1):
                raise ValueError(f"preprocess face_box must be 4 fractions x1 < x2, y1 < y2, "
                                 f"got {self.face_box}")
            object.__setattr__(self, "face_box", fb)
        if not self.face_context > 0:
            raise ValueError(f"preprocess face_context must be positive, got {self.face_context}")
        for name in ("lnet_o_short_side", "lnet_o_max_long_side", "lnet_s_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"preprocess {name} must be at least 1")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["face_box"] = None if self.face_box is None else list(self.face_box)
        return d

    @classmethod
    def from_dict(cls, d: dict | None) -> Preprocess:
        """From a config's ``"preprocess"``; missing keys take the defaults (older bundles)."""
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"preprocess: unknown keys {sorted(unknown)}")
        return cls(**{k: v for k, v in d.items() if v is not None})

    @classmethod
    def of(cls, bundle_or_config) -> Preprocess:
        """The preprocessing of a bundle (``Bundle``) or of a config dict that holds one."""
        config = getattr(bundle_or_config, "config", bundle_or_config) or {}
        return cls.from_dict(config.get("preprocess"))

    def lnet_options(self) -> dict:
        """`LNetLocalizer` keyword options that read an image the way this preprocessing says."""
        return {"short_side": self.lnet_o_short_side, "max_long_side": self.lnet_o_max_long_side,
                "crop_size": self.lnet_s_size, "mean": self.mean, "std": self.std}

    def face_crop(self, image: np.ndarray, box, side: int) -> np.ndarray:
        """(side, side, 3) uint8: the face ``box`` (x1, y1, x2, y2; None or NaN = the image is an
        aligned face crop) framed (``face_box``, else enlarged by ``face_context``), cut out and
        resized. The one framing rule of training and inference."""
        from faceattr_ray.crops import crop_resize

        h, w = image.shape[:2]
        if box is None or np.isnan(np.asarray(box, dtype=float)).any():
            region = (0.0, 0.0, float(w), float(h))
        else:
            region = self.frame(tuple(float(v) for v in box))
        return crop_resize(image, region, (side, side))

    def frame(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """The region of the image that becomes ANet's crop for a found face ``box``."""
        from faceattr_ray.crops import expand_box, frame_face

        if self.face_box is not None:
            return frame_face(box, self.face_box)
        return expand_box(box, self.face_context)

    def normalize(self, images, device: torch.device | str | None = None) -> torch.Tensor:
        """(N, H, W, 3) uint8 (array or tensor) -> (N, 3, H, W) float32 on ``device``."""
        return normalize(images, self.mean, self.std, device)


def normalize(images, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
              device: torch.device | str | None = None) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [0, 1], minus ``mean``, over ``std``.

    The one normalisation: training (on its device, after the uint8 batch crossed the object
    store), `to_tensor` and `Predictor` all call it.
    """
    if isinstance(images, np.ndarray):  # torch wants a writable array (crops may be views)
        images = np.require(images, requirements=["C", "W"])
    x = torch.as_tensor(images)
    if device is not None and torch.device(device).type == "cuda":
        # uint8 crosses to the GPU (a quarter of float32's bytes) from pinned memory, so the
        # copy is asynchronous; normalising happens there.
        x = x.pin_memory().to(device, non_blocking=True)
    elif device is not None:
        x = x.to(device)
    # (x / 255 - mean) / std as one multiply-add per value: a third of the passes over the
    # floats of (x / 255 - m) / s (4.6x faster on a 1.3 MP pyramid level, equal to 1 ulp).
    m = torch.tensor(tuple(mean), dtype=torch.float64)
    s = torch.tensor(tuple(std), dtype=torch.float64)
    scale = (1.0 / (255.0 * s)).float().view(1, 3, 1, 1).to(x.device)
    shift = (-m / s).float().view(1, 3, 1, 1).to(x.device)
    return torch.addcmul(shift, x.permute(0, 3, 1, 2).float(), scale)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (N, C, H, W) or (C, H, W) float images to ``size`` = (height, width),
    antialiased when shrinking."""
    squeeze = x.dim() == 3
    if squeeze:
        x = x.unsqueeze(0)
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False,
                          antialias=True)
    return x.squeeze(0) if squeeze else x


def to_tensor(images: Sequence[np.ndarray] | np.ndarray, size: tuple[int, int] | None = None,
              mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
              device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 RGB images (H, W, 3) -> (N, 3, H, W) float32, scaled to [0, 1] and normalised.

    ``images`` is one (H, W, 3) array, an (N, H, W, 3) array or a list of (H, W, 3) arrays.
    ``size`` = (height, width) resizes each image (bilinear, antialiased); without it all
    images must already share one size, and they are normalised on ``device`` (uint8 copied
    there first, see `normalize`).
    """
    if isinstance(images, np.ndarray):
        images = [images] if images.ndim == 3 else list(images)
    if len(images) == 0:
        h, w = size if size is not None else (0, 0)
        return torch.zeros(0, 3, h, w)
    for i, im in enumerate(images):
        if im.ndim != 3 or im.shape[2] != 3:
            raise ValueError(f"to_tensor: image {i} has shape {im.shape}, expected (H, W, 3)")
    if size is None:
        shapes = {im.shape for im in images}
        if len(shapes) > 1:
            raise ValueError(f"to_tensor: images have different sizes {sorted(shapes)[:3]}; "
                             "pass size=(height, width)")
        batch = images[0][None] if len(images) == 1 else np.stack(images)  # a view: no copy
        return normalize(batch, mean, std, device)
    # Resizing works on [0, 1] floats; normalising after it is the same affine map per pixel.
    out = [resize(normalize(np.ascontiguousarray(im)[None], (0, 0, 0), (1, 1, 1))[0], size)
           for im in images]
    m = torch.tensor(tuple(mean), dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(tuple(std), dtype=torch.float32).view(1, 3, 1, 1)
    out = (torch.stack(out) - m) / s
    return out if device is None else out.to(device)
