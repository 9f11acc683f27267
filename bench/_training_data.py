"""The faces and backgrounds of the training benches (`bench/prefetch.py`,
`bench/lnet_loop.py`): celeba-mini and the real face-free photos where they are, generated
stand-ins otherwise and for ``--smoke-test``. A helper module, not a bench script (its name
starts with "_")."""

from __future__ import annotations

import os


def faces_and_backgrounds(root: str, backgrounds: str, tmp: str,
                          generate: bool) -> tuple[str, str]:
    """(faces root, backgrounds folder): the given ones, or with ``generate`` (or where one is
    missing) 48 generated aligned faces of 12 identities and 6 generated backgrounds under
    ``tmp``."""
    from faceattr_ray.data.synthetic import write_aligned, write_backgrounds

    if generate or not os.path.isdir(root):
        root = write_aligned(os.path.join(tmp, "faces"), count=48, identities=12, seed=0)
    if generate or not os.path.isdir(backgrounds):
        backgrounds = os.path.join(tmp, "bg")
        write_backgrounds(backgrounds, 6, seed=0)
    return root, backgrounds
