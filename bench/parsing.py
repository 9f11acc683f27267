"""Parsing quality of an SSP+SSG bundle's parsing network, two ways:

1. per-part IoU on generated people held apart (a root written with `generate --masks`, the
   identities of its val and test splits: never trained on), where the true masks are known;
2. the landmark check on real aligned faces with no masks (celeba-mini's val split): the eye,
   nose and mouth regions' centroids against where the mean face has them
   (`evaluation.parsing_checks`, the tolerance in pixels of the 89 x 109 crop), on the faces
   as aligned and moved by known random similarities (``--shift``: the regions must move with
   the face; "follow r" is their correlation with where the landmarks went, 0 for a template).

    python bench/parsing.py --model runs/parsing --generated runs/gen --tolerance 4
    python bench/parsing.py --smoke-test     # seconds: a fresh tiny network, generated faces

The machine is shared and noisy; the figures are accuracies, not timings. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "celeba-mini")


def main(argv: list[str] | None = None) -> dict:
    from faceattr_ray.bundle import load_bundle
    from faceattr_ray.data.celeba import read_celeba
    from faceattr_ray.data.decode import load_image
    from faceattr_ray.data.parsing import load_mask, parsing_rows
    from faceattr_ray.data.parts import PARTS
    from faceattr_ray.evaluation.parsing_checks import (
        landmark_check,
        parsing_iou,
        predict_parts,
        real_face_checks,
    )
    from faceattr_ray.models import Preprocess

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", help="an SSP+SSG bundle (train parsing / train ssp-ssg)")
    p.add_argument("--generated", help="generated people with masks (generate --masks)")
    p.add_argument("--celeba-root", default=DATA)
    p.add_argument("--split", default="val", help="celeba split for the landmark check")
    p.add_argument("--tolerance", type=float, default=4.0, help="pixels at 89x109")
    p.add_argument("--shift", type=float, default=6.0, help="px each way, moved faces")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--smoke-test", action="store_true")
    args = p.parse_args(argv)
    tmp = tempfile.mkdtemp() if args.smoke_test else None
    if args.smoke_test:
        from faceattr_ray.bundle import save_bundle
        from faceattr_ray.data.synthetic import write_aligned
        from faceattr_ray.models import SSPSSGConfig, SSPSSGNet
        from faceattr_ray.presets import architecture, build_bundle

        args.generated = write_aligned(os.path.join(tmp, "gen"), 20, 10, seed=3, masks=True)
        bundle = build_bundle("tiny", attributes=["A"])
        bundle.anet = SSPSSGNet(SSPSSGConfig.from_dict(
            {**architecture("ssp-ssg-smoke")["ssp_ssg"], "num_attributes": 1})).eval()
        args.model = os.path.join(tmp, "model")
        save_bundle(args.model, bundle)
        args.celeba_root, args.limit = args.generated, 8  # the check runs; figures meaningless
    bundle = load_bundle(args.model)
    net, pre = bundle.anet, Preprocess.of(bundle)
    result: dict = {"model": os.path.abspath(args.model), "tolerance_px": args.tolerance}
    if args.generated:
        rows = []
        for split in ("val", "test"):
            try:
                rows += parsing_rows(args.generated, split)
            except Exception:  # a tiny root may have no such split
                continue
        rows = rows[:args.limit] if args.limit else rows
        images = [load_image(r["path"]) for r in rows]
        truth = [load_mask(r) for r in rows]
        predicted = predict_parts(net, pre, images)
        g = parsing_iou(predicted, truth, len(PARTS))
        result["generated"] = {"images": len(rows), "mean_iou": g["mean_iou"],
                               "pixel_accuracy": g["pixel_accuracy"],
                               "iou": dict(zip(PARTS, g["iou"], strict=True)),
                               "landmarks_of_true_masks": landmark_check(truth, args.tolerance)}
        print(f"generated people held apart ({len(rows)} faces): mean IoU "
              f"{g['mean_iou']:.3f}, pixel accuracy {g['pixel_accuracy']:.3f}")
        for name, v in zip(PARTS, g["iou"], strict=True):
            print(f"  {name:<10} IoU {v:.3f}")
    data = read_celeba(args.celeba_root, split=args.split)
    paths = list(data.paths)[:args.limit] if args.limit else list(data.paths)
    checks = real_face_checks(lambda ims: predict_parts(net, pre, ims),
                              [load_image(x) for x in paths], args.tolerance, args.shift)
    result["real_landmarks"] = {"root": os.path.abspath(args.celeba_root), "split": args.split,
                                **checks}
    print(f"real faces ({len(paths)}, {args.split}): share with the region centroid within "
          f"{args.tolerance:g} px of the mean face's landmark, as aligned | moved (scale "
          f"0.9-1.1, shift up to {args.shift:g} px)")
    for key in ("left_eye", "right_eye", "nose", "mouth"):
        line = []
        for name in ("aligned", "moved"):
            c = checks[name][key]
            med = "-" if c["median_px"] is None else f"{c['median_px']:.1f}"
            line.append(f"{100 * c['within']:5.1f}%  median {med} px  missing "
                        f"{100 * c['missing']:.1f}%")
        print(f"  {key:<10} " + " | ".join(line))
    print(f"  follow r (mean over parts and axes): {checks['following']['mean_r']}")
    print("(nose: x distance to the nostrils, and y between the eye line and the nostrils)")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
