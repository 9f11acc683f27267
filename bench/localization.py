"""Face localization in the wild: LNets fine-tuned with attribute tags only vs the LBP cascade.

The paper's claim (section 2.1, Fig. 7): LNet_o and LNet_s, trained with image-level attribute
tags and no face boxes, localize faces from their averaged C5 response maps. This script
1. writes in-the-wild images with known boxes: real faces of ../shared/data/celeba-mini pasted on
   cluttered backgrounds (``--data celeba``), or generated people (``--data generated``, which
   needs nothing outside the repository; ``auto``, the default, takes celeba-mini when present).
   One person per image; their attribute tags are the only labels training sees. The split is
   identity-disjoint: train (LNet training), val (threshold calibration, with background-only
   images), test (scoring, with background-only images that count for false positives);
2. fine-tunes LNet_o on whole images, then LNet_s on LNet_o's head-shoulder windows
   (``faceattr_ray.train.api.finetune``, in-process, or on Ray Train with ``--ray``);
3. sets the face/no-face threshold on the val images (``faceattr_ray.calibrate``);
4. localizes the test images with LNet (``LNetLocalizer``) and with scikit-image's LBP face
   cascade (``CascadeLocalizer``), one dominant face per image, and prints side by side: recall at
   IoU >= 0.5 at each one's operating threshold, the true-positive rate at 0.1 false positives
   per image (the paper's Fig. 7a measure) and recall vs IoU (Fig. 7c).

    python bench/localization.py                  # ~2 minutes on 2 CPU cores
    python bench/localization.py --head global_max --init he --epochs-pre 3 --epochs-o 6 \
        --schedule cosine --weight-decay 0.05    # the global-max recipe below (~5 minutes)
    python bench/localization.py --data generated --images 1500
    python bench/localization.py --smoke-test     # seconds: the plumbing, not the figures

Besides LNet and the cascade, a third column runs the same trained LNets with windows scored on
the raw response maps (``LNetLocalizer(baseline=None)``), and three rows grade LNet_o's stage on
its own: does its head-shoulder window hold the face, how much of the image it takes, and how
often its averaged map peaks inside the face box (the "pointing game").

Two recipes, both measured (numbers in the README's localization notes):
- the default, the paper's layout from scratch: FC attribute head over the pooled 6x6 C5 map,
  PyTorch's default initialisation. Its attribute accuracy on the wild val images stays at the
  label prior (0.80, the majority rate).
- ``--head global_max --init he --epochs-pre 3 ...``: the attribute head reads each C5 channel's
  maximum anywhere in the image (``LNetConfig.head_pool``), and an LNet+ stand-in: the paper
  starts LNets from ImageNet, which cannot be downloaded here, so the He-initialised LNet first
  learns the tags on aligned crops of celeba-mini's train split (val 0.84), then on the wild
  images, where it does learn them a little (0.81).
- ``--negatives N`` (default 0) adds background-only training images with every tag absent;
  measured no better.
With ImageNet AlexNet weights (``--preset paper --init-lnet alexnet.pth``) and a GPU the same
script measures the paper's own setting.

What it shows here, honestly: neither recipe localizes. Their maps peak inside the face box in
about 3 images of 10 and their boxes reach IoU 0.5 in under 1 of 10; the paper's Fig. 3 (a.4)
reports the same failure for LNets without pre-training. The cascade finds most pasted faces.

Last line: JSON {"lnet_recall_iou50", "cascade_recall_iou50", "lnet_tpr_fppi01",
"cascade_tpr_fppi01", ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

from faceattr_ray.presets import PRESETS

HERE = os.path.dirname(os.path.abspath(__file__))
CELEBA_MINI = os.path.join(HERE, "..", "..", "shared", "data", "celeba-mini")
IOUS = (0.3, 0.4, 0.5, 0.6, 0.7)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", choices=["auto", "celeba", "generated"], default="auto",
                   help="pasted celeba-mini faces or generated people (auto: celeba when present)")
    p.add_argument("--celeba-root", default=CELEBA_MINI, help="CelebA-layout root to paste from")
    p.add_argument("--images", type=int, default=2500,
                   help="in-the-wild images written, split 80/10/10 train/val/test by identity")
    p.add_argument("--negatives", type=int, default=0,
                   help="background-only training images, every tag absent (0: none)")
    p.add_argument("--backgrounds", type=int, default=100,
                   help="background-only images for val (calibration) and again for test")
    p.add_argument("--size", type=int, nargs=2, default=(256, 192), metavar=("W", "H"))
    p.add_argument("--face", type=float, nargs=2, default=(24.0, 96.0), metavar=("MIN", "MAX"),
                   help="face width range in pixels (log-uniform)")
    p.add_argument("--preset", choices=PRESETS, default="cpu",
                   help="LNet size (faceattr_ray/presets.py)")
    p.add_argument("--pretrain-images", type=int, default=6400,
                   help="aligned face crops for the LNet+ stand-in (attribute tags only)")
    p.add_argument("--epochs-pre", type=int, default=0,
                   help="epochs of an LNet+ stand-in on aligned crops before the wild images "
                        "(0: LNets from scratch; see the module notes)")
    p.add_argument("--epochs-o", type=int, default=3, help="LNet_o fine-tuning epochs")
    p.add_argument("--epochs-s", type=int, default=2, help="LNet_s fine-tuning epochs")
    p.add_argument("--head", choices=["fc", "global_max"], default="fc",
                   help="LNets' attribute head during fine-tuning (LNetConfig.head_pool): "
                        "global max of each C5 channel, or the paper's FC layers")
    p.add_argument("--init", choices=["default", "he"], default="default",
                   help="LNet convolutions' starting weights: He normal, or PyTorch's default")
    p.add_argument("--init-lnet", default=None, metavar="ALEXNET_STATE_DICT",
                   help="start both LNets from torchvision AlexNet weights (a state_dict file; "
                        "with --preset paper): the paper's LNet+ pre-training")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--optimizer", choices=["sgd", "adamw"], default="adamw")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--schedule", choices=["constant", "cosine"], default="constant",
                   help="per-step learning rate: cosine decay after one warm-up epoch, or constant")
    p.add_argument("--baseline", type=float, default=0.5,
                   help="quantile of each response map subtracted before window scoring "
                        "(LNetLocalizer's baseline; a negative value: none)")
    p.add_argument("--ray", action="store_true", help="train on Ray Train (default: in-process)")
    p.add_argument("--use-gpu", action="store_true", help="train and localize on a GPU")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--workdir", default=None, help="keep the data and bundle here (default: a "
                                                   "temporary folder, removed at the end)")
    p.add_argument("--figures", type=int, default=2,
                   help="write this many test images' LNet figures (PNG) into the workdir")
    p.add_argument("--smoke-test", action="store_true",
                   help="tiny networks, a few images, 2 steps: seconds, checks the plumbing")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


SMOKE = dict(images=80, backgrounds=6, negatives=8, size=(192, 144), face=(24.0, 40.0), preset="tiny",
             pretrain_images=16, epochs_pre=1, epochs_o=1, epochs_s=1)


def write_data(args, work: str) -> tuple[str, str]:
    """The in-the-wild root (CelebA layout, boxes) and which kind of faces it holds."""
    from faceattr_ray.data.paste import paste_faces
    from faceattr_ray.data.synthetic import write_wild

    root = os.path.join(work, "wild")
    lo, hi = args.face
    kind = args.data
    if kind == "auto":
        found = os.path.exists(os.path.join(args.celeba_root, "list_attr_celeba.txt"))
        kind = "celeba" if found else "generated"
    if kind == "celeba":
        paste_faces(args.celeba_root, root, args.images, seed=args.seed, size=tuple(args.size),
                    max_people=1, min_face=lo, max_face=hi)
    else:
        # Enough identities that each split holds many (the split is by identity).
        write_wild(root, args.images, identities=max(30, args.images // 10), seed=args.seed,
                   size=tuple(args.size), max_people=1, min_face=lo, max_face=hi)
    return root, kind


def aligned_root(args, kind: str, work: str) -> str:
    """Aligned face crops for the LNet+ stand-in: celeba-mini itself (its train split; the
    wild test faces come from its test split), or generated crops of the same identities as
    the generated scenes (same seed, so the split by identity is the same)."""
    from faceattr_ray.data.synthetic import write_aligned

    if kind == "celeba":
        return args.celeba_root
    count = max(args.pretrain_images * 5 // 4, 40)
    return write_aligned(os.path.join(work, "aligned"), count,
                         identities=max(30, args.images // 10), seed=args.seed)


def split_paths(root: str) -> dict[str, list[str]]:
    from faceattr_ray.data.celeba import read_celeba

    data = read_celeba(root, image_dir="img_celeba")
    part = np.asarray(data.partition)
    return {name: [str(data.paths[i]) for i in np.flatnonzero(part == k)]
            for k, name in enumerate(("train", "val", "test"))}


def he_initialised(lnet_cfg: dict, seed: int):
    """An LNet whose convolutions start from He (Kaiming) normal weights and zero biases.

    Why: with PyTorch's default initialisation (uniform, 1/sqrt(3) of He's scale) the signal
    shrinks layer after layer through five convolutions without batch norm, and a few thousand
    steps of attribute training stay at the label prior (measured here: val attribute accuracy
    0.810 = the majority rate after an epoch of aligned crops). He's scale keeps it alive.
    """
    import torch

    from faceattr_ray.models import LNet, LNetConfig

    torch.manual_seed(seed)
    net = LNet(LNetConfig.from_dict({**lnet_cfg, "num_classes": 0}))
    for m in net.features:
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            torch.nn.init.zeros_(m.bias)
    return net


def train_lnets(args, root: str, aligned: str | None, lnet_cfg: dict, timings: dict,
                negatives: list[str]):
    """LNet+ stand-in on aligned crops, then LNet_o on whole wild images, then LNet_s on
    LNet_o's head-shoulder windows (the paper's order), attribute tags only throughout."""
    from faceattr_ray.train import api

    common = dict(local=not args.ray, use_gpu=args.use_gpu, batch_size=args.batch_size,
                  lr=args.lr, seed=args.seed, weight_decay=args.weight_decay,
                  schedule=args.schedule, warmup_epochs=1 if args.schedule == "cosine" else 0,
                  optimizer=args.optimizer, lnet=lnet_cfg,
                  storage_path=os.path.join(root, "..", "runs"))
    if args.smoke_test:
        common.update(max_steps=2, limit=16)
    init: dict = {"lnet": he_initialised(lnet_cfg, args.seed)} if args.init == "he" else {}
    if args.init_lnet:
        from faceattr_ray.models import LNet, LNetConfig, load_alexnet_weights

        init = {"lnet": LNet(LNetConfig.from_dict({**lnet_cfg, "num_classes": 0}))}
        load_alexnet_weights(init["lnet"], args.init_lnet)
    metrics: dict = {}
    if aligned is not None and args.epochs_pre > 0:
        start = time.perf_counter()
        # One network (LNet_o's job on whole images = the aligned crops) starts both LNets, as
        # LNet+ does in the paper. `limit` keeps the first N images of each split.
        pre, m, _ = api.finetune(aligned, nets=("lnet_o",), epochs=args.epochs_pre, init=init,
                                 image_dir="img_align_celeba",
                                 **{**common, "limit": common.get("limit", args.pretrain_images)})
        init = {"lnet": pre["lnet_o"]}
        metrics["pretrain"] = m["lnet_o"]
        timings["pretrain_s"] = time.perf_counter() - start
    start = time.perf_counter()
    common["negatives"] = negatives  # the wild stages only; aligned crops are all faces
    nets, m, _ = api.finetune(root, nets=("lnet_o",), epochs=args.epochs_o, init=init,
                              image_dir="img_celeba", **common)
    metrics.update(m)
    timings["train_lnet_o_s"] = time.perf_counter() - start
    start = time.perf_counter()
    # LNet_s trains on LNet_o's head-shoulder windows of the training images (the paper's way).
    nets, m, cfg = api.finetune(root, nets=("lnet_s",), init={**init, "lnet_o": nets["lnet_o"]},
                                epochs=args.epochs_s, image_dir="img_celeba", **common)
    metrics.update(m)
    timings["train_lnet_s_s"] = time.perf_counter() - start
    return nets["lnet_o"], nets["lnet_s"], metrics, cfg


def load_all(paths: list[str]) -> list[np.ndarray]:
    from faceattr_ray.data.decode import load_image

    return [load_image(p) for p in paths]


def detect(localizer, images: list[np.ndarray], batch: int = 16,
           traces: list | None = None) -> tuple[list, float]:
    """Detections of every image and the seconds per image (LNet: traces appended to
    ``traces`` when given, for the head-shoulder stage's own figures)."""
    start = time.perf_counter()
    out = []
    for i in range(0, len(images), batch):
        if traces is None:
            out.extend(localizer.localize(images[i:i + batch]))
        else:
            found = localizer.localize_traced(images[i:i + batch])
            traces.extend(found)
            out.extend(t.detections for t in found)
    return out, (time.perf_counter() - start) / max(len(images), 1)


def head_shoulder_stage(traces: list, faces: list[np.ndarray], sizes: list) -> dict:
    """How well LNet_o did, on images with a face: the share of windows holding at least 90% of
    the face (LNet_s can only find what its window holds), the window's share of the image (1.0
    would hold every face trivially), and how often its map's peak lies in the face box."""
    holds, share, peaks = [], [], []
    for trace, gt, (h, w) in zip(traces, faces, sizes, strict=True):
        if not len(gt) or not trace.head_shoulders:
            continue
        # The pointing game: does the averaged map's highest cell fall inside the face box?
        rows, cols = trace.response_o.shape
        r, c = np.unravel_index(np.argmax(trace.response_o), trace.response_o.shape)
        px, py = (c + 0.5) * w / cols, (r + 0.5) * h / rows
        peaks.append(gt[0][0] <= px <= gt[0][2] and gt[0][1] <= py <= gt[0][3])
        x1, y1, x2, y2 = trace.head_shoulders[0]
        fx1, fy1, fx2, fy2 = gt[0]
        inter = max(0.0, min(x2, fx2) - max(x1, fx1)) * max(0.0, min(y2, fy2) - max(y1, fy1))
        holds.append(inter >= 0.9 * (fx2 - fx1) * (fy2 - fy1))
        share.append((x2 - x1) * (y2 - y1) / (w * h))
    return {"holds_face": float(np.mean(holds)) if holds else 0.0,
            "area_share": float(np.mean(share)) if share else 0.0,
            "peak_in_face": float(np.mean(peaks)) if peaks else 0.0}


def at_threshold(detections: list, threshold: float) -> list:
    return [[d for d in dets if d.score >= threshold] for dets in detections]


def scores(detections: list, ground_truth: list, threshold: float) -> dict:
    """Recall at IoU 0.5 at the operating threshold, TPR at 0.1 FPPI (score swept), FPPI at the
    threshold, recall vs IoU at the threshold."""
    from faceattr_ray.evaluation.localization_metrics import recall_vs_iou, roc_curve, tpr_at_fppi

    kept = at_threshold(detections, threshold)
    fppi, _, cuts = roc_curve(kept, ground_truth, 0.5)
    curve = recall_vs_iou(kept, ground_truth, IOUS)
    return {
        "recall_iou50": float(curve[IOUS.index(0.5)]),
        "tpr_fppi01": tpr_at_fppi(detections, ground_truth, 0.1, 0.5),
        "fppi": float(fppi[-1]),
        "recall_vs_iou": {str(t): round(float(r), 4) for t, r in zip(IOUS, curve, strict=True)},
        # The best window always (no threshold): what the boxes alone are worth.
        "recall_iou50_any": float(recall_vs_iou(detections, ground_truth, (0.5,))[0]),
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.smoke_test:
        for key, value in SMOKE.items():
            setattr(args, key, value)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from faceattr_ray.bundle import Bundle
    from faceattr_ray.data.synthetic import read_all_faces, write_backgrounds
    from faceattr_ray.localizers import CascadeLocalizer, LNetLocalizer
    from faceattr_ray.presets import preset_configs
    from faceattr_ray.runtime import pick_device

    work = args.workdir or tempfile.mkdtemp(prefix="bench-localization-")
    os.makedirs(work, exist_ok=True)
    timings: dict[str, float] = {}
    baseline = None if args.baseline < 0 else args.baseline
    try:
        start = time.perf_counter()
        root, kind = write_data(args, work)
        aligned = aligned_root(args, kind, work) if args.epochs_pre > 0 else None
        splits = split_paths(root)
        size = tuple(args.size)
        bg_val = write_backgrounds(os.path.join(work, "bg_val"), args.backgrounds,
                                   seed=args.seed + 101, size=size)
        bg_test = write_backgrounds(os.path.join(work, "bg_test"), args.backgrounds,
                                    seed=args.seed + 202, size=size)
        negatives = write_backgrounds(os.path.join(work, "bg_train"), args.negatives,
                                      seed=args.seed + 303, size=size)
        timings["data_s"] = time.perf_counter() - start
        lnet_cfg = preset_configs(args.preset, 1)[0].to_dict()
        for key in ("num_attributes", "num_classes"):  # set by the fine-tuning job
            lnet_cfg.pop(key)
        lnet_cfg["head_pool"] = args.head
        init = f"AlexNet init {args.init_lnet}" if args.init_lnet else f"{args.init} init"
        faces = ("celeba-mini faces pasted on generated backgrounds" if kind == "celeba"
                 else "generated people on generated scenes")
        pre = (f"LNet+ stand-in: {args.epochs_pre} epoch(s) on {args.pretrain_images} aligned "
               f"crops ({'celeba-mini train split' if kind == 'celeba' else 'generated'}); "
               if aligned else "LNets from scratch; ")
        print(f"setting: {faces}, {size[0]}x{size[1]} px, one person each, face width "
              f"{args.face[0]:g}-{args.face[1]:g} px; train {len(splits['train'])}, val "
              f"{len(splits['val'])} + {len(bg_val)} backgrounds (threshold), test "
              f"{len(splits['test'])} + {len(bg_test)} backgrounds (identity-disjoint); "
              f"LNet preset {args.preset} {tuple(lnet_cfg['channels'])}, input "
              f"{lnet_cfg['input_size']}, {args.head} head, {init}; {pre}epochs LNet_o {args.epochs_o}, LNet_s "
              f"{args.epochs_s}; {args.optimizer} lr {args.lr:g} ({args.schedule}), weight decay "
              f"{args.weight_decay:g}, batch {args.batch_size}, "
              f"{'Ray Train' if args.ray else 'in-process'} on "
              f"{'GPU' if args.use_gpu else 'CPU'}, {torch.get_num_threads()} "
              f"torch threads; attribute tags only, {len(negatives)} background-only training "
              f"images with every tag absent; map baseline quantile {baseline}",
              flush=True)

        if args.ray:
            from faceattr_ray.runtime import init_ray

            init_ray(num_cpus=4, log_to_driver=False)
        lnet_o, lnet_s, metrics, cfg = train_lnets(args, root, aligned, lnet_cfg, timings,
                                                   negatives)
        accuracy = ", ".join(f"{k} {m.get('val_accuracy', float('nan')):.3f}"
                             for k, m in metrics.items())
        print(f"trained: {', '.join(f'{k[:-2]} {v:.0f} s' for k, v in timings.items())}; "
              f"val attribute accuracy {accuracy}", flush=True)

        device = pick_device(use_gpu=args.use_gpu)
        # The trained LNets read as the bundle this run saves will read them.
        trained = Bundle(path=None, config={"preprocess": cfg["preprocess"]}, attributes=[],
                         lnet_o=lnet_o, lnet_s=lnet_s, anet=None)
        localizers = {"LNet": LNetLocalizer.from_bundle(trained, threshold=None,
                                                        baseline=baseline, device=device)}
        if baseline is not None:  # the same networks, windows on the raw maps: what it adds
            localizers["LNet raw maps"] = LNetLocalizer.from_bundle(
                trained, threshold=None, baseline=None, device=device)
        start = time.perf_counter()
        val_faces, val_bgs = load_all(splits["val"]), load_all(bg_val)
        thresholds, calibration = {}, {}
        for name, loc in localizers.items():
            thresholds[name], calibration[name] = calibrate(loc, val_faces, val_bgs)
            print(f"{name}: threshold {thresholds[name]:.4g} from val, face recall "
                  f"{calibration[name]['face_recall']:.3f}, background rejection "
                  f"{calibration[name]['background_rejection']:.3f}", flush=True)
        timings["calibrate_s"] = time.perf_counter() - start

        boxes = read_all_faces(root)
        test_faces = set(splits["test"])
        test_paths = splits["test"] + bg_test
        truth = [np.array([f["face"] for f in boxes[os.path.basename(p)]["faces"]], float)
                 if p in test_faces else np.zeros((0, 4)) for p in test_paths]
        images = load_all(test_paths)
        results, per_image = {}, {}
        sizes = [im.shape[:2] for im in images]
        for name, loc in localizers.items():
            traces: list = []
            dets, per_image[name] = detect(loc, images, traces=traces)
            results[name] = scores(dets, truth, thresholds[name])
            stage = head_shoulder_stage(traces, truth, sizes)
            results[name].update({f"hs_{k}": v for k, v in stage.items()})
        # The cascade's score is its vote count: keep every group (>= 1 vote) for the ROC; its
        # operating point is scikit-image's default of 4 agreeing windows.
        dets, per_image["cascade"] = detect(CascadeLocalizer(threshold=1.0), images)
        results["cascade"] = scores(dets, truth, CascadeLocalizer().threshold)
        timings["test_s"] = sum(per_image.values()) * len(images)

        if args.workdir:
            _save_outputs(args, work, localizers["LNet"], images, test_paths, lnet_o, lnet_s,
                          cfg, thresholds["LNet"], calibration["LNet"], baseline)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    names = list(results)
    print(f"{'':42s}" + "".join(f"{n:>15s}" for n in names))
    rows = [("recall at IoU 0.5 (at threshold)", "recall_iou50"),
            ("TPR at 0.1 FPPI (IoU 0.5)", "tpr_fppi01"),
            ("false positives per image (at threshold)", "fppi"),
            ("recall at IoU 0.5, best window always", "recall_iou50_any")]
    rows += [(f"recall at IoU {t} (at threshold)", f"iou{t}") for t in IOUS if t != 0.5]
    for label, key in rows:
        values = [results[n]["recall_vs_iou"][key[3:]] if key.startswith("iou")
                  else results[n][key] for n in names]
        print(f"{label:42s}" + "".join(f"{v:15.3f}" for v in values))
    for label, key in (("LNet_o window holds >= 90% of the face", "hs_holds_face"),
                       ("LNet_o window's share of the image", "hs_area_share"),
                       ("LNet_o map's peak inside the face box", "hs_peak_in_face")):
        print(f"{label:42s}" + "".join(f"{results[n][key]:15.3f}" if key in results[n]
                                       else f"{'-':>15s}" for n in names))
    print(f"{'ms per image':42s}" + "".join(f"{1000 * per_image[n]:15.1f}" for n in names))
    print("seconds per stage: " + ", ".join(f"{k[:-2]} {v:.0f}" for k, v in timings.items())
          + f"; total {sum(timings.values()):.0f}")
    lnet, cascade = results["LNet"], results["cascade"]
    result = {
        "lnet_recall_iou50": round(lnet["recall_iou50"], 4),
        "cascade_recall_iou50": round(cascade["recall_iou50"], 4),
        "lnet_tpr_fppi01": round(lnet["tpr_fppi01"], 4),
        "cascade_tpr_fppi01": round(cascade["tpr_fppi01"], 4),
        "lnet_fppi": round(lnet["fppi"], 4),
        "cascade_fppi": round(cascade["fppi"], 4),
        "lnet_recall_iou50_any": round(lnet["recall_iou50_any"], 4),
        "cascade_recall_iou50_any": round(cascade["recall_iou50_any"], 4),
        "lnet_hs_holds_face": round(lnet["hs_holds_face"], 4),
        "lnet_hs_area_share": round(lnet["hs_area_share"], 4),
        "lnet_peak_in_face": round(lnet["hs_peak_in_face"], 4),
        "lnet_recall_vs_iou": lnet["recall_vs_iou"],
        "cascade_recall_vs_iou": cascade["recall_vs_iou"],
        "threshold": round(thresholds["LNet"], 6),
        "calibration_balanced_accuracy": round(calibration["LNet"]["balanced_accuracy"], 4),
        "lnet_ms_per_image": round(1000 * per_image["LNet"], 2),
        "cascade_ms_per_image": round(1000 * per_image["cascade"], 2),
        "data": kind, "preset": args.preset, "train_images": len(splits["train"]),
        "test_images": len(splits["test"]), "test_backgrounds": len(bg_test),
        "epochs": {"pretrain": args.epochs_pre if aligned else 0, "lnet_o": args.epochs_o,
                   "lnet_s": args.epochs_s},
        "val_accuracy": {k: round(m.get("val_accuracy", float("nan")), 4)
                         for k, m in metrics.items()},
        "seconds": {k: round(v, 1) for k, v in timings.items()},
    }
    if "LNet raw maps" in results:
        raw = results["LNet raw maps"]
        result["lnet_raw_maps_recall_iou50"] = round(raw["recall_iou50"], 4)
        result["lnet_raw_maps_tpr_fppi01"] = round(raw["tpr_fppi01"], 4)
        result["lnet_raw_maps_hs_holds_face"] = round(raw["hs_holds_face"], 4)
    print(json.dumps(result), flush=True)
    return result


def calibrate(localizer, faces: list[np.ndarray], backgrounds: list[np.ndarray]):
    """The face/no-face threshold from val faces vs backgrounds (faceattr_ray.calibrate)."""
    from faceattr_ray.calibrate import calibrate_threshold

    def best(images):
        return [d[0].score if d else 0.0 for d in detect(localizer, images)[0]]

    return calibrate_threshold(best(faces), best(backgrounds))


def _save_outputs(args, work, lnet, images, paths, lnet_o, lnet_s, cfg, threshold,
                  calibration, baseline) -> None:
    """A bundle of the trained LNets with the calibrated threshold (for `faceattr-ray localize`)
    and Fig. 3/6-style PNGs of the first test images."""
    from faceattr_ray.bundle import load_bundle, save_bundle
    from faceattr_ray.localizers.drawing import draw_cascade
    from faceattr_ray.train.api import save_job_bundle

    bundle_dir = os.path.join(work, "bundle")
    save_job_bundle(bundle_dir, {"lnet_o": lnet_o, "lnet_s": lnet_s}, cfg)
    bundle = load_bundle(bundle_dir)
    bundle.threshold = threshold
    bundle.config["localizer"] = {**(bundle.config.get("localizer") or {}),
                                  "options": {"baseline": baseline}, "calibration": calibration}
    save_bundle(bundle_dir, bundle)
    for k, (image, trace) in enumerate(zip(images[:args.figures],
                                           lnet.localize_traced(images[:args.figures]),
                                           strict=True)):
        draw_cascade(image, trace, os.path.join(work, f"figure_{k}_{os.path.basename(paths[k])}.png"))
    print(f"bundle {bundle_dir}; figures in {work}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
