"""LNet: face localization network (Liu et al. 2015, Sec. 2.1, Fig. 2 (a), (b)).

C1-C5 follow AlexNet, with the same module indices as ``torchvision.models.alexnet().features``
so that ImageNet weights load unchanged (``load_alexnet_weights``). Up to C5 the network is fully
convolutional: any image of at least ``LNet.min_input_size`` pixels a side gives a C5 map and its
channel mean, the *averaged response map* that the localizer thresholds.

Two heads read C5, both dropped at inference:
- ``classifier`` (LNet+): torchvision's AlexNet classifier layout on the pooled 6x6 map, for
  object pre-training;
- ``head``: the attribute head used for fine-tuning with attribute tags. ``head_pool="fc"`` (the
  paper's layout): FC hidden, FC out over the pooled 6x6 map. ``head_pool="global_max"``: one
  linear layer over each C5 channel's maximum anywhere in the image, the weakly supervised
  localization head of Oquab et al. (CVPR 2015). Why offer it: an FC head must learn each of the
  36 positions separately, and trained from scratch on a few thousand in-the-wild images it stays
  at the label prior; the maximum is the same wherever the face is, and an attribute is read off
  where its evidence is strongest (what it measured: README, localization notes).
  ``attribute_maps`` runs either head as convolutions over any input (paper Fig. 9).
  ``head_pool="map_max"``: a 1x1 convolution gives one score map per tag, and an image's logit
  is its map's maximum (multiple-instance learning: the tag is present if it is present
  somewhere). The maps are then what the localizer reads.

``arch="fcn"`` with ``face_tag=True`` is the LNet that finds faces in real photos here (preset
"wild"): five convolutions with batch norm, stride 8, the last one dilated so a C5 cell sees
57 pixels (a face at its working scale), and a first tag "a face is present" next to the
attributes: still one bit per image, no box. ``face_map`` is that tag's score map, read by
`localizers.PyramidLNetLocalizer`. Why not AlexNet's layout here: its stride-16 C5 is too coarse
for 20-40 pixel faces, and without ImageNet weights its maps follow contrast, not faces (README,
localization).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from faceattr_ray.errors import BundleError

HEAD_POOL = 6  # the FC heads read a 6x6 pooled C5 map, as torchvision's AlexNet does
HEAD_POOLS = ("fc", "global_max", "map_max")
ARCHS = ("alexnet", "fcn")


@dataclass
class LNetConfig:
    channels: tuple = (64, 192, 384, 256, 256)  # torchvision AlexNet C1..C5
    num_attributes: int = 40                    # attribute head (fine-tuning; dropped at inference)
    head_hidden: int = 512                      # "fc" head only
    head_pool: str = "fc"                       # "fc" (paper) or "global_max" (see module notes)
    num_classes: int = 1000                     # LNet+ object classifier (0 = none)
    classifier_hidden: int = 4096
    input_size: int = 227
    arch: str = "alexnet"                       # "alexnet" (paper, loads AlexNet) or "fcn"
    face_tag: bool = False                      # head also predicts "a face is present" (first)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> LNetConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"LNetConfig: unknown keys {sorted(unknown)}")
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
        return cls(**kw)

    @property
    def num_outputs(self) -> int:
        return self.num_attributes + (1 if self.face_tag else 0)

    def __post_init__(self) -> None:
        if self.head_pool not in HEAD_POOLS:
            raise ValueError(f"LNetConfig: head_pool must be one of {HEAD_POOLS}, "
                             f"got {self.head_pool!r}")
        if self.arch not in ARCHS:
            raise ValueError(f"LNetConfig: arch must be one of {ARCHS}, got {self.arch!r}")
        if self.arch == "fcn" and (self.head_pool == "fc" or self.num_classes):
            raise ValueError("LNetConfig: an 'fcn' LNet has no 6x6 pooled map: use head_pool "
                             "'map_max' or 'global_max' and num_classes 0")


def _features(channels: Sequence[int]) -> nn.Sequential:
    c1, c2, c3, c4, c5 = channels
    return nn.Sequential(
        nn.Conv2d(3, c1, kernel_size=11, stride=4, padding=2),   # 0
        nn.ReLU(inplace=True),                                   # 1
        nn.MaxPool2d(kernel_size=3, stride=2),                   # 2
        nn.Conv2d(c1, c2, kernel_size=5, padding=2),             # 3
        nn.ReLU(inplace=True),                                   # 4
        nn.MaxPool2d(kernel_size=3, stride=2),                   # 5
        nn.Conv2d(c2, c3, kernel_size=3, padding=1),             # 6
        nn.ReLU(inplace=True),                                   # 7
        nn.Conv2d(c3, c4, kernel_size=3, padding=1),             # 8
        nn.ReLU(inplace=True),                                   # 9
        nn.Conv2d(c4, c5, kernel_size=3, padding=1),             # 10 (C5)
        nn.ReLU(inplace=True),                                   # 11
        nn.MaxPool2d(kernel_size=3, stride=2),                   # 12
    )


def _fcn_features(channels: Sequence[int]) -> nn.Sequential:
    """Five 3x3-ish convolutions with batch norm, stride 8; the last one dilated so that a C5
    cell sees 57 pixels, a face at the working scale (module notes)."""
    c1, c2, c3, c4, c5 = channels
    spec = [(3, c1, 5, 2, 1), (c1, c2, 3, 2, 1), (c2, c3, 3, 1, 1), (c3, c4, 3, 2, 1),
            (c4, c5, 3, 1, 2)]
    layers: list[nn.Module] = []
    for cin, cout, k, stride, dilation in spec:
        layers += [nn.Conv2d(cin, cout, k, stride=stride, padding=dilation * (k // 2),
                             dilation=dilation, bias=False),
                   nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def c5_size(height: int, width: int) -> tuple[int, int]:
    """Rows and columns of the C5 map (before the last max-pool) for an input of this size."""
    def side(n: int) -> int:
        n = (n + 2 * 2 - 11) // 4 + 1   # C1
        n = (n - 3) // 2 + 1            # pool 1
        return (n - 3) // 2 + 1         # C2 keeps the size; pool 2
    return side(height), side(width)


class LNet(nn.Module):
    # Smallest input side that still gives a C5 map (1x1); the caller pads or upsamples below.
    min_input_size: int = 31

    def __init__(self, config: LNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or LNetConfig()
        c5 = config.channels[-1]
        self.fcn = config.arch == "fcn"
        self.features = _fcn_features(config.channels) if self.fcn else _features(config.channels)
        if self.fcn:
            self.min_input_size = 8
        outputs = config.num_outputs
        self.avgpool = nn.AdaptiveAvgPool2d(HEAD_POOL)
        flat = c5 * HEAD_POOL * HEAD_POOL
        # Attribute head for fine-tuning (sigmoid cross-entropy on its logits).
        self.head: nn.Sequential | None = None
        if outputs > 0 and config.head_pool == "map_max":
            self.head = nn.Sequential(nn.Dropout2d(0.1), nn.Conv2d(c5, outputs, 1))
        elif outputs > 0 and config.head_pool == "global_max":
            self.head = nn.Sequential(nn.Dropout(), nn.Linear(c5, outputs))
        elif outputs > 0:
            self.head = nn.Sequential(
                nn.Dropout(), nn.Linear(flat, config.head_hidden), nn.ReLU(inplace=True),
                nn.Linear(config.head_hidden, outputs),
            )
        # LNet+ object classifier, laid out like torchvision's AlexNet.classifier.
        h = config.classifier_hidden
        self.classifier = nn.Sequential(
            nn.Dropout(), nn.Linear(flat, h), nn.ReLU(inplace=True),
            nn.Dropout(), nn.Linear(h, h), nn.ReLU(inplace=True),
            nn.Linear(h, config.num_classes),
        ) if config.num_classes > 0 else None

    def _check(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"LNet: input must be (N, 3, H, W), got {tuple(x.shape)}")
        if min(x.shape[-2:]) < self.min_input_size:
            raise ValueError(f"LNet: input {tuple(x.shape[-2:])} is smaller than "
                             f"{self.min_input_size} pixels a side; pad or upsample it first")

    def c5(self, x: Tensor) -> Tensor:
        """(N, C5, h, w): ReLU(conv5), before the last max-pool."""
        self._check(x)
        return self.features(x) if self.fcn else self.features[:12](x)

    def response_map(self, x: Tensor) -> Tensor:
        """(N, h, w): the averaged response map (channel mean of C5)."""
        return self.c5(x).mean(dim=1)

    def _pooled(self, x: Tensor) -> Tensor:
        return self.avgpool(self.features[12](self.c5(x))).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        """Image-level logits (N, num_outputs) of the fine-tuning head: the face tag first when
        ``face_tag``, then the attributes."""
        if self.head is None:
            raise ValueError("LNet: this network has no attribute head (num_attributes = 0)")
        if self.config.head_pool == "map_max":
            return self.head(self.c5(x)).amax(dim=(2, 3))
        if self.config.head_pool == "global_max":
            return self.head(self.c5(x).amax(dim=(2, 3)))
        return self.head(self._pooled(x))

    def classify(self, x: Tensor) -> Tensor:
        """LNet+ object logits (N, num_classes)."""
        if self.classifier is None:
            raise ValueError("LNet: this network has no object classifier (num_classes = 0)")
        return self.classifier(self._pooled(x))

    def attribute_maps(self, x: Tensor) -> Tensor:
        """(N, A, h', w'): the attribute head run as convolutions (paper Fig. 9).

        ``fc`` head: FC1 as a 6x6 convolution over the pooled C5 map, FC2 as 1x1; at the default
        input size it equals ``forward`` (h' = w' = 1), larger inputs give a map of logits.
        ``global_max`` head: its linear layer as a 1x1 convolution over C5, the logits each
        position alone would give (the C5 map's size)."""
        if self.head is None:
            raise ValueError("LNet: this network has no attribute head (num_attributes = 0)")
        if self.config.head_pool == "map_max":
            return self.head[1](self.c5(x))
        if self.config.head_pool == "global_max":
            fc = self.head[1]
            return F.conv2d(self.c5(x), fc.weight[:, :, None, None], fc.bias)
        pooled = self.features[12](self.c5(x))
        if min(pooled.shape[-2:]) < HEAD_POOL:
            raise ValueError(f"LNet: attribute_maps needs a pooled C5 map of at least "
                             f"{HEAD_POOL}x{HEAD_POOL}; got {tuple(pooled.shape[-2:])}")
        fc1, fc2 = self.head[1], self.head[3]
        w1 = fc1.weight.view(fc1.out_features, -1, HEAD_POOL, HEAD_POOL)
        hidden = F.relu(F.conv2d(pooled, w1, fc1.bias))
        w2 = fc2.weight.view(fc2.out_features, fc2.in_features, 1, 1)
        return F.conv2d(hidden, w2, fc2.bias)


    def face_map(self, x: Tensor) -> Tensor:
        """(N, h, w): the face tag's logit at every C5 position (``face_tag`` LNets)."""
        if not self.config.face_tag:
            raise ValueError("LNet: this network has no face tag (LNetConfig.face_tag)")
        return self.attribute_maps(x)[:, 0]


def response_maps(lnet: LNet, images: Sequence[Tensor]) -> list[Tensor]:
    """Averaged response maps of images of mixed sizes: a list of (3, H, W) tensors ->
    a list of (h, w) maps. Images of the same size run as one batch (exact: no padding
    leaks into a map's border)."""
    by_size: dict[tuple[int, int], list[int]] = {}
    for i, im in enumerate(images):
        by_size.setdefault(tuple(im.shape[-2:]), []).append(i)
    out: list[Tensor | None] = [None] * len(images)
    for idx in by_size.values():
        maps = lnet.response_map(torch.stack([images[i] for i in idx]))
        for i, m in zip(idx, maps, strict=True):
            out[i] = m
    return out  # type: ignore[return-value]


def load_alexnet_weights(lnet: LNet, path: str | os.PathLike) -> None:
    """Load a torchvision AlexNet state_dict file (``torch.save(alexnet().state_dict())``).

    ``features.*`` always load; each ``classifier.*`` tensor loads into LNet+'s classifier when
    its shape matches (the 1000-way ImageNet layer needs ``num_classes = 1000``). Read with
    ``weights_only=True``; a missing file or a shape mismatch raises BundleError.
    """
    path = os.fspath(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BundleError(f"{path}: AlexNet weights file not found") from None
    except Exception as e:  # unpickling refused, truncated file, ...
        raise BundleError(f"{path}: not a torch state_dict file ({e})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise BundleError(f"{path}: expected a state_dict, got {type(state).__name__}")
    own = lnet.state_dict()
    chosen = {}
    for key, value in state.items():
        if not key.startswith(("features.", "classifier.")):
            continue
        if key.startswith("classifier.") and lnet.classifier is None:
            continue
        if key not in own:
            raise BundleError(f"{path}: unexpected key {key!r} for LNet")
        if tuple(own[key].shape) != tuple(value.shape):
            if key.startswith("classifier."):
                continue  # e.g. a 10-way LNet+ keeps ImageNet's hidden layers only
            raise BundleError(f"{path}: {key} has shape {tuple(value.shape)}, LNet expects "
                              f"{tuple(own[key].shape)} (check LNetConfig.channels)")
        chosen[key] = value
    missing = [k for k in own if k.startswith("features.") and k not in chosen]
    if missing:
        raise BundleError(f"{path}: missing AlexNet keys {missing[:4]}")
    lnet.load_state_dict(chosen, strict=False)
