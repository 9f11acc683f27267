"""Linear attribute heads and the one way patch features become attribute scores.

One linear SVM per attribute scores the FC vector of every patch; an image's score is the mean of
its patches' scores (> 0 = present). ANet's own attribute layer is linear too, so a bundle
without SVM heads is scored the same way with that layer's weights (`Bundle.head_arrays`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from faceattr_ray.errors import BundleError, DataError

# Split codes carried by every row of a heads block (see fit.py): which images fit, choose C,
# or only get scored.
TRAIN, VAL, TEST = 0, 1, 2


def linear_scores(features, weight, bias):
    """Attribute scores (N, A) of features (N, F) or per-patch features (N, P, F): each patch's
    ``features @ weight.T + bias``, averaged over patches.

    numpy arrays give numpy; torch tensors give a tensor on their own device (``weight`` and
    ``bias`` may be arrays or tensors).
    """
    if type(features).__module__.startswith("torch"):
        import torch
        import torch.nn.functional as F

        w = torch.as_tensor(weight, dtype=features.dtype, device=features.device)
        b = torch.as_tensor(bias, dtype=features.dtype, device=features.device)
        scores = F.linear(features, w, b)
    else:
        x = np.asarray(features, dtype=np.float32)
        scores = x @ np.asarray(weight, np.float32).T + np.asarray(bias, np.float32)
    return scores.mean(-2) if scores.ndim == 3 else scores


@dataclass(eq=False)  # arrays inside: compare heads with np.testing, not ==
class LinearHeads:
    """One linear SVM per attribute: ``score = features @ weight.T + bias``."""

    names: list[str]
    weight: np.ndarray  # (A, F)
    bias: np.ndarray  # (A,)
    info: dict = field(default_factory=dict, compare=False, repr=False)  # how they were fit
    # (scores (n, A), labels (n, A)) of the validation images that chose C, scored by the
    # chosen heads before any refit: the images operating points are chosen on (points.py)
    held_out: tuple | None = field(default=None, compare=False, repr=False)

    @property
    def dim(self) -> int:
        return int(self.weight.shape[1])

    def decision_function(self, features):
        """(N, F) or (N, P, F) -> (N, A) scores, averaged over patches (`linear_scores`)."""
        if features.ndim not in (2, 3) or features.shape[-1] != self.dim:
            raise DataError(
                f"features of shape {tuple(features.shape)} do not fit heads of dimension "
                f"{self.dim} (expected (N, {self.dim}) or (N, P, {self.dim}))"
            )
        return linear_scores(features, self.weight, self.bias)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"weight": np.ascontiguousarray(self.weight, dtype=np.float32),
                "bias": np.ascontiguousarray(self.bias, dtype=np.float32)}

    @classmethod
    def from_arrays(cls, names: Sequence[str], arrays: dict[str, np.ndarray]) -> LinearHeads:
        if "weight" not in arrays or "bias" not in arrays:
            raise BundleError(f"heads need 'weight' and 'bias' arrays, got {sorted(arrays)}")
        weight = np.asarray(arrays["weight"], dtype=np.float32)
        bias = np.asarray(arrays["bias"], dtype=np.float32)
        a = len(names)
        if weight.ndim != 2 or weight.shape[0] != a or bias.shape != (a,):
            raise BundleError(
                f"heads weight {weight.shape} / bias {bias.shape} do not match {a} attributes"
            )
        return cls(list(names), weight, bias)
