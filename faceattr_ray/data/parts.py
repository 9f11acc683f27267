"""The face parts that face parsing labels (Kalayeh et al. 2017 use these seven on Helen).

One label per pixel: 0 background, 1 hair, 2 skin, 3 eyes, 4 brows, 5 nose, 6 mouth. The
generated-people drawer (people.py) writes them; the readers of real parsing datasets
(parsing.py) map their own classes onto them.
"""

from __future__ import annotations

PARTS: tuple[str, ...] = ("background", "hair", "skin", "eyes", "brows", "nose", "mouth")
BACKGROUND, HAIR, SKIN, EYES, BROWS, NOSE, MOUTH = range(len(PARTS))
NUM_PARTS = len(PARTS)
