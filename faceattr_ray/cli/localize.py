"""`faceattr-ray localize`: per image, a Fig. 3/6-style PNG of both LNets' maps and the boxes."""

from __future__ import annotations

import json
import os
import sys


def run(args) -> int:
    """Per image, a `draw_cascade` PNG in ``--out`` and its boxes in ``boxes.jsonl``."""
    from faceattr_ray.bundle import load_bundle
    from faceattr_ray.data.sources import list_inputs
    from faceattr_ray.errors import DataError
    from faceattr_ray.localizers import LNetLocalizer
    from faceattr_ray.predictor import framed_localizer
    from faceattr_ray.runtime import pick_device

    paths = list_inputs(args.images)
    if not paths:
        raise DataError(f"no images found in {' '.join(args.images)}")
    device = pick_device(args.device)
    bundle = load_bundle(args.model, device=device)
    threshold = "bundle" if args.threshold is None else args.threshold
    localizer = LNetLocalizer.from_bundle(bundle, threshold=threshold, all_faces=args.all_faces,
                                          device=device)
    if localizer.threshold is None:
        print("note: the bundle has no threshold (run `faceattr-ray calibrate`); every image "
              "gets its best window")
    # the boxes `annotate` gives: framed by ANet when the bundle frames
    framer = framed_localizer(bundle, localizer, device=device)
    return draw_folder(localizer, paths, args.out, None if framer is localizer else framer)


def draw_folder(localizer, paths: list[str], out: str, framer=None) -> int:
    """Localize and draw each image into ``out``; an unreadable file is reported and skipped.
    ``framer`` (a `FramedLocalizer`): the found boxes re-sized by it before drawing. Returns the
    exit status (1 when a file could not be read)."""
    from faceattr_ray.data.decode import load_image
    from faceattr_ray.errors import FaceAttrError
    from faceattr_ray.localizers.drawing import draw_cascade

    os.makedirs(out, exist_ok=True)
    used: set[str] = set()
    failed = 0
    with open(os.path.join(out, "boxes.jsonl"), "w") as log:
        for path in paths:
            try:
                image = load_image(path)
            except FaceAttrError as e:  # one unreadable file does not stop the others
                print(f"{path}: error: {e}", file=sys.stderr)
                failed += 1
                continue
            trace = localizer.localize_traced([image])[0]
            if framer is not None:
                trace.detections = framer.frame([image], [trace.detections])[0]
            stem = os.path.splitext(os.path.basename(path.rstrip("/")))[0] or "image"
            name, k = f"{stem}.png", 1
            while name in used:  # same file name in two folders
                name, k = f"{stem}_{k}.png", k + 1
            used.add(name)
            figure = os.path.join(out, name)
            draw_cascade(image, trace, figure)
            faces = [{"box": [round(v, 1) for v in d.box], "score": round(d.score, 4)}
                     for d in trace.detections]
            log.write(json.dumps({"path": path, "figure": figure, "faces": faces}) + "\n")
            found = "; ".join(f"({', '.join(f'{v:.0f}' for v in f['box'])}) score {f['score']:.3g}"
                              for f in faces) or "no face above the threshold"
            print(f"{path}: {found} -> {figure}")
    print(f"{len(paths) - failed} image(s) localized, {failed} unreadable; boxes in "
          f"{os.path.join(out, 'boxes.jsonl')}")
    return 1 if failed else 0
