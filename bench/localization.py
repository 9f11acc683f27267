"""Face localization in real photos: a bundle's LNet cascade vs scikit-image's LBP cascade.

The paper's claim (section 2.1, Fig. 7): LNets trained with image-level tags only, never a face
box, find faces in the wild. This script measures a bundle's LNets (`LNetLocalizer.from_bundle`,
its calibrated threshold, every face) side by side with the LBP face cascade on three sets:

1. real photos with hand-drawn face boxes: ``--photos DIR --boxes FILE`` (boxes as JSON,
   ``{"file.jpg": [[x1, y1, x2, y2], ...]}``); by default the photos that ship inside installed
   packages (`data/sample_photos.py`: 3 people and 5 photos without anyone);
2. "collages": real test-split CelebA crops, whole (their own hair, shoulders and background,
   hard rectangular edges), 1-4 per image on held-apart real backgrounds (``--celeba-root``,
   ``--backgrounds``; skipped when absent);
3. pasted scenes: test-split faces pasted with a soft mask on held-apart backgrounds, as
   `reproduce` calibrates on (val faces there, test faces here);
4. "whole": the same faces pasted whole (hair, neck, their own surroundings) under a feathered
   rectangle, often side by side, as the other half of `reproduce`'s calibration faces;
5. "group": scenes of up to 8 faces of 30-90 px, half pasted whole, none empty (``GROUP_SCENES``);
6. "pascal" (``--pascal-faces DIR``): 9 real group photos and portraits of PASCAL VOC, 43 faces
   of 37-109 px boxed by hand (dlib's detector examples, fetched once from its release on PyPI:
   `bench/_pascal_faces.py`). Only read, never chosen on.

In sets 3-5 no paste hides an earlier face (at most ``RECIPE["scenes"]["test_max_hidden"]`` of
its box under a later paste's hair or surroundings): a box over a face nobody can see would be
a miss for every localizer.

Rows: "lnet" (the bundle's LNets at its threshold), "framed" (the same boxes, each then
re-sized to the zoom ANet reads most confidently, its centre moved where ANet reads it more
confidently, and dropped when ANet reads them below the bundle's confidence floor (on its face
head when it has one, `heads.face`):
`localizers.framing`, what `Predictor` does when the bundle says "frame_zooms",
"frame_shifts_y", "frame_shifts_x" and "frame_min_confidence"), "unfloored" (framed, no floor; only for a bundle
with one), "cascade". Per set and localizer: recall at IoU 0.5 and false detections per image at the operating
threshold, detections per image, the recall of "crowded" faces (another face's centre within 1.5
of their width, as in group photos; `evaluation.localization_metrics.crowded`), and the TPR at
0.1 and 1 false positive per image.

    python bench/localization.py                          # the bundled model, ~3 min on 2 cores
    python bench/localization.py --model runs/repro/model --overlays bench-out/loc
    python bench/localization.py --photos my_photos/ --boxes my_boxes.json
    python bench/localization.py --pascal-faces DIR       # + 9 real group photos (fetched)
    python bench/localization.py --split val --localizer-options '{"scale_step": 2}'  # a variant
    python bench/localization.py --split val --why-missed # + why the framed row misses faces
    python bench/localization.py --smoke-test             # seconds: the plumbing, not figures

Last line: JSON {"<set>_<localizer>_<figure>": ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The "group" set: up to 8 faces of 30-90 px a scene, half pasted whole, no empty scene.
GROUP_SCENES = {"max_faces": 8, "face_px": [30, 90], "empty_share": 0.0}
SHARED = os.path.join(ROOT, "..", "shared", "data")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="bundle (default: the bundled model)")
    p.add_argument("--photos", default=None, help="folder of real photos (default: the samples)")
    p.add_argument("--boxes", default=None, help="JSON of face boxes per photo file name")
    p.add_argument("--celeba-root", default=os.path.join(SHARED, "celeba-mini"))
    p.add_argument("--backgrounds", default=os.path.join(SHARED, "backgrounds"))
    p.add_argument("--scenes", type=int, default=60, help="pasted scenes and collages, each")
    p.add_argument("--overlays", default=None, help="folder for overlay PNGs of each set")
    p.add_argument("--split", choices=["val", "test"], default="test",
                   help="faces of collages and scenes: val to choose a setting, test to report")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--localizer-options", type=json.loads, default={}, metavar="JSON",
                   help='the LNets\' reading options over the bundle\'s, e.g. \'{"scale_step": 2}\'')
    p.add_argument("--frame-zooms", type=float, nargs="*", default=None, metavar="Z",
                   help="zooms of the 'framed' row (each LNet box re-sized to the one ANet reads "
                        "most confidently; default localizers.framing.DEFAULT_ZOOMS); none given: "
                        "no framed row")
    p.add_argument("--why-missed", action="store_true",
                   help="per set, the faces the framed row misses counted by the first step "
                        "that lost them (evaluation.localization_metrics.miss_reasons; one more "
                        "pass of the LNets and framing per set)")
    p.add_argument("--pascal-faces", default=None, metavar="DIR",
                   help="also the 'pascal' set: 9 real group photos and portraits of PASCAL VOC "
                        "with 43 hand-boxed faces, fetched once into DIR from dlib's release on "
                        "PyPI (bench/_pascal_faces.py)")
    p.add_argument("--smoke-test", action="store_true", help="tiny random model, 2 photos")
    return p


def collages(root: str, backgrounds: list[str], count: int, seed: int, split: str = "test"):
    """Real crops of ``split`` pasted whole (rectangles) on held-apart backgrounds; their face
    boxes."""
    from PIL import Image

    from faceattr_ray.crops import ALIGNED_FACE_BOX
    from faceattr_ray.data.scenes import load_background
    from faceattr_ray.reproduce import split_faces

    faces, _ = split_faces(root, split)
    bgs = [load_background(p, 1280) for p in backgrounds]
    fx1, fy1, fx2, fy2 = ALIGNED_FACE_BOX
    images, boxes = [], []
    for k in range(count):
        rng = np.random.default_rng([seed, 77, k])
        bg = bgs[int(rng.integers(len(bgs)))]
        x0, y0 = int(rng.integers(0, bg.shape[1] - 500 + 1)), int(rng.integers(0, bg.shape[0] - 375 + 1))
        canvas = Image.fromarray(bg[y0:y0 + 375, x0:x0 + 500])
        taken: list[tuple] = []
        for _ in range(int(rng.integers(1, 5))):
            fw = float(np.exp(rng.uniform(np.log(30), np.log(110))))
            crop = faces[int(rng.integers(len(faces)))]
            s = fw / ((fx2 - fx1) * crop.shape[1])
            cw, ch = round(crop.shape[1] * s), round(crop.shape[0] * s)
            for _ in range(30):
                x, y = int(rng.integers(0, 500 - cw)), int(rng.integers(0, 375 - ch))
                if all(x + cw < a or x > c or y + ch < b or y > d for a, b, c, d in taken):
                    break
            else:
                continue
            canvas.paste(Image.fromarray(crop).resize((cw, ch), Image.BILINEAR), (x, y))
            taken.append((x, y, x + cw, y + ch))
        images.append(np.asarray(canvas))
        boxes.append(np.array([(x + fx1 * (c - x), y + fy1 * (d - y), x + fx2 * (c - x),
                                y + fy2 * (d - y)) for x, y, c, d in taken]).reshape(-1, 4))
    return images, boxes


def score(localizer, images, boxes, threshold) -> dict:
    from faceattr_ray.evaluation.localization_metrics import scene_scores

    start = time.perf_counter()
    dets = localizer.localize(images)
    out = scene_scores(dets, boxes, threshold)
    out["seconds_per_image"] = (time.perf_counter() - start) / max(len(images), 1)
    return out, dets


def why_missed(framer, lnet, images, boxes, threshold) -> dict:
    """The set's true faces by `miss_reasons`: every LNet find with no threshold, framed by
    ``framer`` (a `FramedLocalizer`), then the threshold, its floor and its NMS."""
    from faceattr_ray.evaluation.localization_metrics import (
        MISS_REASONS,
        every_detection,
        miss_reasons,
    )

    found = every_detection(lnet, images)
    total = dict.fromkeys(MISS_REASONS, 0)
    for one, scored, truth in zip(found, framer.frame_scored(images, found), boxes, strict=True):
        for reason, n in miss_reasons(one, scored, truth, threshold, framer.min_confidence,
                                      framer.nms_iou).items():
            total[reason] += n
    return total


def draw_grid(images, boxes, detections, path: str, width: int = 360) -> None:
    """The photos side by side: hand-drawn boxes green, found faces red with their score."""
    from PIL import Image, ImageDraw

    tiles = []
    for image, truth, dets in zip(images, boxes, detections, strict=True):
        im = Image.fromarray(image)
        d = ImageDraw.Draw(im)
        lw = max(2, image.shape[1] // 200)
        for b in truth:
            d.rectangle([float(v) for v in b], outline=(0, 255, 0), width=lw)
        for det in dets:
            d.rectangle(list(det.box), outline=(255, 0, 0), width=lw)
            d.text((det.box[0] + 3, det.box[1] + 3), f"{det.score:.2f}", fill=(255, 0, 0))
        tiles.append(im.resize((width, round(width * im.height / im.width))))
    cols = min(4, len(tiles))
    rows = (len(tiles) + cols - 1) // cols
    h = max(t.height for t in tiles)
    grid = Image.new("RGB", (cols * width, rows * h), (30, 30, 30))
    for k, t in enumerate(tiles):
        grid.paste(t, ((k % cols) * width, (k // cols) * h))
    grid.save(path)


def main(args) -> dict:
    from faceattr_ray.bundle import load_bundle
    from faceattr_ray.bundled import resolve_model
    from faceattr_ray.data.decode import load_image
    from faceattr_ray.data.sample_photos import read_boxes, write_sample_photos
    from faceattr_ray.evaluation.localization_metrics import CROWDED_WIDTHS
    from faceattr_ray.localizers import CascadeLocalizer, LNetLocalizer
    from faceattr_ray.localizers.framing import DEFAULT_ZOOMS
    from faceattr_ray.predictor import bundle_face_head, bundle_frame_floor, framed_localizer

    if args.smoke_test:
        from faceattr_ray.bundle import save_bundle
        from faceattr_ray.presets import build_bundle

        work = tempfile.mkdtemp(prefix="loc-smoke-")
        bundle = build_bundle("wild-smoke", seed=args.seed, threshold=0.5)
        save_bundle(os.path.join(work, "model"), bundle)
        args.model, args.scenes = os.path.join(work, "model"), 2
    bundle = load_bundle(resolve_model(args.model))
    lnet = LNetLocalizer.from_bundle(bundle, threshold=None, all_faces=True,
                                     **args.localizer_options)
    cascade = CascadeLocalizer(all_faces=True)
    localizers = {"lnet": (lnet, bundle.threshold)}
    # The same LNet boxes, each then re-sized to the zoom ANet reads most confidently (what
    # `Predictor` does when the bundle's "predict" says "frame_zooms").
    zooms = DEFAULT_ZOOMS if args.frame_zooms is None else tuple(args.frame_zooms)
    floor = bundle_frame_floor(bundle)
    if zooms:
        localizers["framed"] = (framed_localizer(bundle, lnet, zooms), bundle.threshold)
        if floor is not None:  # the same without the bundle's confidence floor
            localizers["unfloored"] = (framed_localizer(bundle, lnet, zooms, floor=False),
                                       bundle.threshold)
    localizers["cascade"] = (cascade, None)

    sets = {}
    photos = args.photos or write_sample_photos(tempfile.mkdtemp(prefix="photos-"))
    truth = read_boxes(args.boxes or os.path.join(photos, "boxes.json"))
    names = sorted(truth)[:2] if args.smoke_test else sorted(truth)
    sets["photos"] = ([load_image(os.path.join(photos, n)) for n in names],
                      [truth[n] for n in names])
    if args.pascal_faces:
        import _pascal_faces

        folder, boxes_path = _pascal_faces.fetch(args.pascal_faces)
        pascal = read_boxes(boxes_path)
        sets["pascal"] = ([load_image(os.path.join(folder, n)) for n in sorted(pascal)],
                          [pascal[n] for n in sorted(pascal)])
    have_shared = os.path.isdir(args.celeba_root) and os.path.isdir(args.backgrounds)
    if have_shared and not args.smoke_test:
        from faceattr_ray.reproduce import RECIPE, scene_backgrounds, validation_scenes

        _, held, _ = scene_backgrounds([os.path.join(args.backgrounds, f)
                                        for f in sorted(os.listdir(args.backgrounds))
                                        if f.lower().endswith((".jpg", ".png"))],
                                       tempfile.gettempdir(), RECIPE, args.seed)
        sets["collages"] = collages(args.celeba_root, held, args.scenes, args.seed, args.split)

        def scene_set(recipe: dict, context_share: float) -> tuple[list, list]:
            scenes = validation_scenes(args.celeba_root, args.split, held, recipe, args.scenes,
                                       args.seed, context_share,
                                       recipe["scenes"].get("test_max_hidden"))
            return [s.image for s in scenes], [s.boxes for s in scenes]

        sets["scenes"] = scene_set(RECIPE, 0.0)
        # the same faces pasted whole (hair, neck, their own surroundings) under a feathered
        # rectangle, as half of reproduce's calibration faces: the hardest set, and the one
        # with faces side by side
        sets["whole"] = scene_set(RECIPE, 1.0)
        # group scenes: more faces, smaller, side by side, none empty (what a group photo asks
        # of the proposals; README, *Localization in the wild*, tenth round)
        sets["group"] = scene_set({**RECIPE, "scenes": {**RECIPE["scenes"], **GROUP_SCENES}}, 0.5)

    print(f"setting: model {bundle.path} (threshold {bundle.threshold}; localizer options "
          f"{json.dumps(args.localizer_options)} over the bundle's; framed zooms "
          f"{[round(z, 3) for z in zooms]}, confidence floor {floor} on the "
          f"{'face head' if bundle_face_head(bundle) else 'attribute confidence'}); "
          f"{args.split} faces; sets: "
          + ", ".join(f"{k} {len(v[0])} images / {sum(len(b) for b in v[1])} faces"
                      for k, v in sets.items()))
    result: dict = {}
    header = (f"{'set':<9} {'localizer':<9} {'recall@0.5':>10} {'false/img':>9} {'dets/img':>8} "
              f"{'crowded':>13} {'TPR@0.1FPPI':>11} {'TPR@1FPPI':>9} {'s/img':>6}")
    print(header)
    print("(crowded: recall of the faces with another face's centre within "
          f"{CROWDED_WIDTHS} of their width, and how many)")
    for set_name, (images, boxes) in sets.items():
        for loc_name, (loc, threshold) in localizers.items():
            r, dets = score(loc, images, boxes, threshold)
            near = ("-" if r["recall_crowded"] is None else f"{r['recall_crowded']:.3f}")
            print(f"{set_name:<9} {loc_name:<9} {r['recall_iou50']:>10.3f} "
                  f"{r['false_per_image']:>9.2f} {r['detections_per_image']:>8.2f} "
                  f"{near + ' (' + str(r['crowded_faces']) + ')':>13} "
                  f"{r['tpr_fppi01']:>11.3f} {r['tpr_fppi1']:>9.3f} {r['seconds_per_image']:>6.2f}")
            for key, value in r.items():
                if value is not None:
                    result[f"{set_name}_{loc_name}_{key}"] = round(float(value), 4)
            if args.why_missed and loc_name == "framed":
                reasons = why_missed(loc, lnet, images, boxes, threshold)
                print(f"{'':<9} {'why':<9} " + ", ".join(f"{k} {v}" for k, v in reasons.items()))
                result.update({f"{set_name}_missed_{k.replace(' ', '_')}": v
                               for k, v in reasons.items()})
            if args.overlays:  # every photo; the first 12 of a generated set
                os.makedirs(args.overlays, exist_ok=True)
                shown = len(images) if set_name == "photos" else 12
                kept = [[d for d in ds if threshold is None or d.score >= threshold]
                        for ds in dets[:shown]]
                draw_grid(images[:shown], boxes[:shown], kept,
                          os.path.join(args.overlays, f"{set_name}_{loc_name}.png"))
    return result


if __name__ == "__main__":
    out = main(get_args_parser().parse_args())
    print(json.dumps(out))
    sys.exit(0)
