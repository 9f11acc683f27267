"""Attribute sets: names, the paper's reference figures, and label normalisation.

Label tables come in many encodings ({-1, 1}, {0, 1}, booleans, blanks). Everything inside the
package uses one: float32 arrays with 1.0 = present, 0.0 = absent and NaN = unknown.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

# CelebA's 40 attributes, in the order of list_attr_celeba.txt.
CELEBA_40: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup",
    "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard",
    "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns",
    "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)  # fmt: skip

# Accuracy (%) of LNets+ANet in the paper's Table 1, same order as CELEBA_40.
PAPER_TABLE1_CELEBA: tuple[int, ...] = (
    91, 79, 81, 79, 98, 95, 68, 78, 88, 95, 84, 80, 90, 91, 92, 99, 95, 97, 90, 87,
    98, 92, 95, 81, 95, 66, 91, 72, 89, 90, 96, 92, 73, 80, 82, 99, 93, 71, 93, 87,
)  # fmt: skip
PAPER_TABLE1_LFWA: tuple[int, ...] = (
    84, 82, 83, 83, 88, 88, 75, 81, 90, 97, 74, 77, 82, 73, 78, 95, 78, 84, 95, 88,
    94, 82, 92, 81, 79, 74, 84, 80, 85, 78, 77, 91, 76, 76, 94, 88, 95, 88, 79, 86,
)  # fmt: skip


def paper_reference(names: Iterable[str], dataset: str = "celeba") -> dict[str, float]:
    """The paper's Table 1 accuracy (0-1) for each of ``names`` that CelebA's 40 include."""
    table = PAPER_TABLE1_CELEBA if dataset == "celeba" else PAPER_TABLE1_LFWA
    ref = dict(zip(CELEBA_40, table, strict=True))
    return {n: ref[n] / 100.0 for n in names if n in ref}


def normalize_labels(values: Iterable, name: str = "labels") -> np.ndarray:
    """Map one attribute column to float32 {1.0, 0.0, NaN}.

    Accepts -1/1, 0/1, booleans, the strings "1", "-1", "0", "true", "false", "yes", "no", and
    blanks/None/NaN for unknown. Anything else raises ValueError naming the column and the value.
    """
    out = []
    for v in values:
        out.append(_one_label(v, name))
    return np.asarray(out, dtype=np.float32)


_TRUE = {"1", "1.0", "true", "t", "yes", "y"}
_FALSE = {"-1", "-1.0", "0", "0.0", "false", "f", "no", "n"}


def _one_label(v, name: str) -> float:
    if v is None:
        return np.nan
    if isinstance(v, (bool, np.bool_)):
        return 1.0 if v else 0.0
    if isinstance(v, (int, float, np.integer, np.floating)):
        if np.isnan(v):
            return np.nan
        if v == 1:
            return 1.0
        if v in (0, -1):
            return 0.0
        raise ValueError(f"column {name!r}: label {v!r} is not one of -1, 0, 1")
    s = str(v).strip().lower()
    if s in ("", "nan", "none", "null", "na"):
        return np.nan
    if s in _TRUE:
        return 1.0
    if s in _FALSE:
        return 0.0
    raise ValueError(f"column {name!r}: label {v!r} is not one of -1, 0, 1, true, false or blank")
