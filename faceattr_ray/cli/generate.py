"""`faceattr-ray generate`: generated people with boxes, backgrounds, real faces pasted, or
real faces with blob-placed part masks."""

from __future__ import annotations

import os


def run(args) -> int:
    """Write generated people (CelebA layout) or backgrounds under ``--out``."""
    from faceattr_ray.data.paste import paste_faces
    from faceattr_ray.data.sources import list_inputs
    from faceattr_ray.data.synthetic import (
        ALIGNED_SIZE,
        write_aligned,
        write_backgrounds,
        write_distractors,
        write_wild,
    )
    from faceattr_ray.errors import DataError

    size = tuple(args.size) if args.size else None
    scene = size or (256, 192)
    kind = args.kind
    masks = bool(getattr(args, "masks", False))
    if masks and kind not in ("aligned", "wild", "pseudo-parts"):
        raise DataError(f"--masks: only generated people (aligned, wild) have known face parts; "
                        f"{kind} images get none (pasted real faces were never drawn)")
    if kind == "aligned":
        write_aligned(args.out, args.count, args.identities, args.seed, size or ALIGNED_SIZE,
                      masks=masks)
    elif kind == "wild":
        write_wild(args.out, args.count, args.identities, args.seed, scene,
                   max_people=args.max_people, distractor_rate=args.distractor_rate, masks=masks)
    elif kind == "backgrounds":
        write_backgrounds(args.out, args.count, args.seed, scene)
    elif kind == "distractors":
        write_distractors(args.out, args.count, args.seed, scene)
    elif kind == "pseudo-parts":
        from faceattr_ray.data.pseudo_parts import write_pseudo_root

        if not args.faces_from:
            raise DataError("--kind pseudo-parts needs --faces-from (a CelebA-layout root of "
                            "aligned faces)")
        write_pseudo_root(args.faces_from, args.out, "train", args.count or None)
        written = len(os.listdir(os.path.join(args.out, "parts")))
        print(f"wrote part masks of {written} train faces of {args.faces_from} under "
              f"{args.out}/parts (images linked)")
        return 0
    elif kind == "paste":
        if not args.faces_from:
            raise DataError("--kind paste needs --faces-from (a CelebA-layout root)")
        bgs = list_inputs([args.backgrounds_from]) if args.backgrounds_from else None
        paste_faces(args.faces_from, args.out, args.count, args.seed, scene,
                    max_people=args.max_people, backgrounds=bgs)
    print(f"wrote {args.count} {kind} images under {args.out}")
    return 0
