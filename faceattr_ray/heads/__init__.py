"""Linear attribute heads on ANet features (paper section 2.2): the model and its scoring
(model.py), fitting with liblinear or a Ray Newton solver (fit.py, solvers.py), and feature
tables read from Parquet (features.py)."""

from faceattr_ray.heads.fit import fit_heads, fit_heads_blocks, score_blocks
from faceattr_ray.heads.model import TEST, TRAIN, VAL, LinearHeads, linear_scores
from faceattr_ray.heads.solvers import RayBlocks, blocks_from_arrays

__all__ = ["TEST", "TRAIN", "VAL", "LinearHeads", "RayBlocks", "blocks_from_arrays",
           "fit_heads", "fit_heads_blocks", "linear_scores", "score_blocks"]
