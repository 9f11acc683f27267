"""Do face parts learnt without real masks carry to real faces? Approaches side by side, one run,
the same small parsing network, optimiser and budget, each scored by the real-face landmark
check (`evaluation.parsing_checks.real_face_checks`) on celeba-mini's val faces as aligned and
moved by known random similarities (the parsing must follow the face), and by IoU on generated
people held apart:

- ``drawn``: generated people and their drawn masks, the augmentation of `train parsing`;
- ``drawn-photo``: the same faces given real-photo backgrounds and skin/hair texture, blur,
  noise and JPEG (`data.face_jitter.photo_texture`), and moved about (`move_face`);
- ``real-pseudo``: real celeba-mini *train* faces with masks placed by each face's own dark
  blobs (`data.pseudo_parts`; background/hair/skin from ``drawn-photo``'s prediction when it
  ran), moved about in training;
- ``template``: no network, the same drawing at the mean face's positions for every face (what
  a parsing that learnt a fixed place would do: passes aligned, fails moved);
- ``blobs``: no network, `pseudo_mask` itself on each val face (the dark blobs found near the
  mean face's places: what ``real-pseudo`` was taught; it follows only small moves).

    python bench/parsing_transfer.py --generated runs/gen --limit 2000 --epochs 3 --out runs/pt
    python bench/parsing_transfer.py --smoke-test     # seconds: tiny network, few faces

The machine is shared and noisy (training times are wall clock at nice 19); the figures are
accuracies. Prints a table; last line JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(__file__)
DATA = os.path.join(HERE, "..", "..", "shared", "data", "celeba-mini")
PHOTOS = os.path.join(HERE, "..", "..", "shared", "data", "backgrounds")
ARMS = ("drawn", "drawn-photo", "real-pseudo", "template", "blobs")
MOVE = {"scale": [0.85, 1.15], "shift": 0.1}


def parser_of(net, pre):
    from faceattr_ray.evaluation.parsing_checks import predict_parts

    return lambda images: predict_parts(net, pre, images)


def main(argv: list[str] | None = None) -> dict:
    from faceattr_ray.data.celeba import read_celeba
    from faceattr_ray.data.decode import load_image
    from faceattr_ray.data.parsing import load_mask, parsing_rows
    from faceattr_ray.data.parts import PARTS
    from faceattr_ray.data.pseudo_parts import pseudo_mask, template_mask, write_pseudo_root
    from faceattr_ray.evaluation.parsing_checks import parsing_iou, real_face_checks
    from faceattr_ray.models import Preprocess
    from faceattr_ray.train import api

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--generated", help="generated people with masks (generate --masks)")
    p.add_argument("--celeba-root", default=DATA)
    p.add_argument("--photos", default=PHOTOS, help="real photos without faces")
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    p.add_argument("--limit", type=int, default=2000, help="training faces per arm")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.004)
    p.add_argument("--tolerance", type=float, default=4.0, help="pixels at 89x109")
    p.add_argument("--shift", type=float, default=6.0, help="px each way, moved val faces")
    p.add_argument("--val-limit", type=int, default=None)
    p.add_argument("--out", default=None, help="keep the bundles here (ARM/)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke-test", action="store_true")
    args = p.parse_args(argv)
    out = args.out or tempfile.mkdtemp()
    if args.smoke_test:
        from faceattr_ray.data.synthetic import write_aligned, write_backgrounds

        args.generated = write_aligned(os.path.join(out, "gen"), 24, 12, seed=3, masks=True)
        if not os.path.isdir(args.photos):  # a clone without ../shared/data: generated clutter
            args.photos = os.path.join(out, "photos")
            write_backgrounds(args.photos, 4, seed=3)
        args.celeba_root, args.limit, args.epochs, args.val_limit = args.generated, 8, 1, 6
        args.batch_size = 4
    common = dict(local=True, epochs=args.epochs, limit=args.limit, batch_size=args.batch_size,
                  lr=args.lr, optimizer="adamw", weight_decay=1e-4, schedule="cosine",
                  seed=args.seed, smoke_test=args.smoke_test)
    val_paths = list(read_celeba(args.celeba_root, split="val").paths)[:args.val_limit]
    val = [load_image(str(x)) for x in val_paths]
    gen_rows = []
    if args.generated:
        for split in ("val", "test"):
            try:
                gen_rows += parsing_rows(args.generated, split)
            except Exception:  # a tiny root may have no such split
                continue
        gen_rows = gen_rows[:300]
    gen_images = [load_image(r["path"]) for r in gen_rows]
    gen_truth = [load_mask(r) for r in gen_rows]

    results, nets = [], {}
    for arm in args.arms:
        start = time.perf_counter()
        if arm == "template":
            parse = lambda ims: [template_mask(*im.shape[:2]) for im in ims]  # noqa: E731
        elif arm == "blobs":
            parse = lambda ims: [pseudo_mask(im) for im in ims]  # noqa: E731
        else:
            if arm == "drawn":
                net, metrics, cfg = api.train_parsing(args.generated, **common)
            elif arm == "drawn-photo":
                net, metrics, cfg = api.train_parsing(args.generated, photos=args.photos,
                                                      move=MOVE, **common)
            else:
                teacher = nets.get("drawn-photo")
                coarse = None if teacher is None else parser_of(*teacher)
                root = write_pseudo_root(args.celeba_root, os.path.join(out, "pseudo"),
                                         "train", args.limit, coarse)
                net, metrics, cfg = api.train_parsing(root, move=MOVE, **common)
            api.save_job_bundle(os.path.join(out, arm), {"anet": net}, cfg, trained=["parsing"])
            pre = Preprocess.from_dict(cfg["preprocess"])
            nets[arm] = (net, pre)
            parse = parser_of(net, pre)
        train_s = time.perf_counter() - start
        row: dict = {"arm": arm, "train_s": round(train_s, 1),
                     **real_face_checks(parse, val, args.tolerance, args.shift)}
        if gen_rows:
            g = parsing_iou(parse(gen_images), gen_truth, len(PARTS))
            row["generated_iou"] = dict(zip(PARTS, g["iou"], strict=True))
        results.append(row)
        print(f"{arm}: {_line(row)}", flush=True)

    print(f"\nreal faces: celeba-mini val ({len(val)}), share within {args.tolerance:g} px "
          f"(89x109); moved: scale 0.9-1.1, shift up to {args.shift:g} px; follow r: mean "
          "correlation of region centroid with the moved landmark")
    print(f"{'arm':<12} {'L eye':>6} {'R eye':>6} {'nose':>6} {'mouth':>6} | moved: "
          f"{'L eye':>6} {'R eye':>6} {'nose':>6} {'mouth':>6} {'follow r':>8} {'train s':>8}")
    for row in results:
        print(f"{row['arm']:<12} {_line(row)}")
    summary = {"bench": "parsing_transfer", "faces": len(val), "tolerance_px": args.tolerance,
               "shift_px": args.shift, "limit": args.limit, "epochs": args.epochs,
               "out": os.path.abspath(out), "results": results}
    print(json.dumps(summary))
    return summary


def _line(row: dict) -> str:
    keys = ("left_eye", "right_eye", "nose", "mouth")
    a = " ".join(f"{100 * row['aligned'][k]['within']:5.1f}%" for k in keys)
    m = " ".join(f"{100 * row['moved'][k]['within']:5.1f}%" for k in keys)
    r = row["following"]["mean_r"]
    return f"{a} | moved: {m} {'-' if r is None else f'{r:8.2f}'} {row['train_s']:8.1f}"


if __name__ == "__main__":
    main(sys.argv[1:])
