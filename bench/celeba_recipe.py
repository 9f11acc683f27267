"""The CelebA training recipe, measured: ANet pre-trained on identities, fine-tuned on attribute
tags, SVM heads on its FC features, on ../shared/data/celeba-mini (train 6,370 / val 805 / test 809).

Each named SETTING is a recipe: the keyword options of `pretrain_anet`, `finetune` and
`fit_heads`. A run trains it on the train split (in-process, `local=True`, this CPU) and prints,
with the setting and the wall time of every stage:

- "val head": ANet's own fine-tuned attribute layer on val (scores averaged over the one-pass
  grid of patches, as `Predictor` does). ANet never sees val, so this is a clean choice figure.
- "val svm cv": SVM heads on the patch-averaged FC features, 2-fold cross-validation on val,
  folds split by identity (the protocol fits the SVMs on val, so choices use val only).
- with --test (the chosen recipe only): the protocol's figure, SVMs fit on the whole val split,
  scored on test through a saved bundle and `evaluate_celeba(localizer="full")`, plus ANet's
  own head on test for comparison.

    python bench/celeba_recipe.py --setting bn_adamw_cos --quick   # a short screening run
    python bench/celeba_recipe.py --setting ep24 --test            # the chosen recipe
    python bench/celeba_recipe.py --smoke-test     # seconds: generated faces, tiny ANet, --test
    python bench/celeba_recipe.py --points         # operating points, cheap levers (val only)
    python bench/celeba_recipe.py --crossfit       # cross-fit vs 30% holdout (val only, nested)

Last line: JSON with the setting, figures and stage times.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import torch

from faceattr_ray.presets import architecture

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "celeba-mini")

# The ANet geometry is the default one (64x64 patches, a 5x5 lattice 4 px apart: an 80x80
# window, the 89x109 faces squeezed into it). Options not named keep api.DEFAULTS.
BASE: dict = {
    "pretrain": None,  # None = no identity pre-training
    "finetune": {"epochs": 10, "batch_size": 64, "lr": 0.01},
    "anet": {},
    "heads": {"C": [0.001, 0.01, 0.1, 1.0]},
}


def _setting(**changes) -> dict:
    s = copy.deepcopy(BASE)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(s.get(key), dict):
            s[key] = {**s[key], **value}
        else:
            s[key] = value
    return s


BN = {"batch_norm": True}
ADAMW_COS = {"optimizer": "adamw", "lr": 2e-3, "weight_decay": 5e-2, "schedule": "cosine",
             "warmup_epochs": 1}
SETTINGS: dict[str, dict] = {
    "base": _setting(),  # the paper's: plain ANet, SGD 0.01 constant
    "bn": _setting(anet=BN),
    "bn_sgd_cos": _setting(anet=BN, finetune={"lr": 0.05, "schedule": "cosine",
                                              "warmup_epochs": 1}),
    "bn_adamw_cos": _setting(anet=BN, finetune=ADAMW_COS),
    "bn_adamw_cos_drop": _setting(anet={**BN, "dropout": 0.3}, finetune=ADAMW_COS),
    "bn_adamw_cos_wide": _setting(anet={**BN, "channels": [48, 96, 128, 160]},
                                  finetune=ADAMW_COS),
    # The chosen recipe: sized so the whole protocol fits the hour on a busy 2-core CPU.
    # No identity pre-training: 2 epochs of it (267 s here) left identity val accuracy at chance
    # (0.001, loss ln(1795)) with ~2.2 training images per identity; see "pre2_final".
    "ep9": _setting(anet=BN, finetune={**ADAMW_COS, "epochs": 9}),
    "ep24": _setting(anet=BN, finetune={**ADAMW_COS, "epochs": 24}),  # chosen (val)
    "pre2_final": _setting(
        anet=BN, finetune={**ADAMW_COS, "epochs": 8},
        pretrain={"epochs": 2, "batch_size": 32, **ADAMW_COS, "warmup_epochs": 0.5,
                  "similarity_weight": 0.1}),
    # --smoke-test: every stage (identity pre-training, fine-tuning, heads, the test path) on
    # the smoke preset's ANet, 2 steps each.
    "smoke": _setting(
        anet={**architecture("smoke")["anet"], **BN}, heads={"C": [1.0]},
        finetune={**ADAMW_COS, "epochs": 1, "max_steps": 2, "batch_size": 8},
        pretrain={"epochs": 1, "max_steps": 2, "batch_size": 8, "similarity_weight": 0.1}),
    "bn_adamw_cos_pre": _setting(
        anet=BN, finetune=ADAMW_COS,
        pretrain={"epochs": 10, "batch_size": 32, **ADAMW_COS, "similarity_weight": 0.1}),
}


# --- evaluation ----------------------------------------------------------------------------------


def extract(anet, paths: list[str], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Patch-averaged FC features (N, F) and ANet's own head scores (N, A) of aligned faces,
    through `Predictor` with localizer "full" (the evaluation path)."""
    from faceattr_ray.bundle import Bundle, default_preprocess
    from faceattr_ray.data.decode import load_image
    from faceattr_ray.predictor import Predictor

    names = [str(i) for i in range(anet.config.num_attributes)]
    bundle = Bundle(path=None, config={"preprocess": default_preprocess()}, attributes=names,
                    lnet_o=None, lnet_s=None, anet=anet.eval())
    predictor = Predictor(bundle, device="cpu", localizer="full", with_features=True)
    feats, scores = [], []
    for start in range(0, len(paths), batch_size):
        for result in predictor.predict([load_image(p) for p in paths[start:start + batch_size]]):
            feats.append(result.faces[0].features)
            scores.append(result.faces[0].attributes)
    return np.stack(feats), np.stack(scores)


def mean_accuracy(labels: np.ndarray, scores: np.ndarray, names) -> float:
    from faceattr_ray.metrics import attribute_metrics

    return float(attribute_metrics(labels, scores, list(names))["mean"]["accuracy"])


def svm_cv(x: np.ndarray, y: np.ndarray, identity: np.ndarray, names, heads_opts: dict,
           folds: int = 2) -> float:
    """Mean accuracy of SVM heads, k-fold on these images with folds split by identity."""
    from faceattr_ray.heads import fit_heads

    ids = np.unique(identity)
    fold_of = dict(zip(ids, np.random.default_rng(0).permutation(len(ids)) % folds, strict=True))
    fold = np.array([fold_of[i] for i in identity])
    scores = np.zeros_like(y)
    for k in range(folds):
        heads = fit_heads(x[fold != k], y[fold != k], names, **heads_opts)
        scores[fold == k] = heads.decision_function(x[fold == k])
    return mean_accuracy(y, scores, names)


# --- one run -------------------------------------------------------------------------------------


def run(name: str, setting: dict, data: str, quick: float, test: bool, out: str | None,
        test_split: str = "test") -> dict:
    from faceattr_ray.data import read_celeba
    from faceattr_ray.heads import fit_heads
    from faceattr_ray.train import finetune, pretrain_anet

    times: dict[str, float] = {}
    anet_opts = dict(setting["anet"])
    init = None
    if setting["pretrain"]:
        opts = dict(setting["pretrain"])
        opts["epochs"] = max(1, round(opts["epochs"] * quick))
        start = time.perf_counter()
        anet, pm, _ = pretrain_anet(data, local=True, anet=anet_opts, **opts)
        times["pretrain_s"] = time.perf_counter() - start
        print(f"[{name}] pretrain: {opts} -> identity val acc "
              f"{pm.get('val_accuracy', float('nan')):.3f} in {times['pretrain_s']:.0f} s",
              flush=True)
        init = {"anet": anet}
    opts = dict(setting["finetune"])
    opts["epochs"] = max(1, round(opts["epochs"] * quick))
    start = time.perf_counter()
    nets, fm, cfg = finetune(data, nets=("anet",), init=init, local=True,
                             anet=None if init else anet_opts, **opts)
    times["finetune_s"] = time.perf_counter() - start
    anet = nets["anet"].eval()
    print(f"[{name}] finetune: {opts} -> centre-patch val acc "
          f"{fm['anet'].get('val_accuracy', float('nan')):.4f} in {times['finetune_s']:.0f} s",
          flush=True)

    val, names = read_celeba(data, split="val"), list(cfg["attributes"])
    start = time.perf_counter()
    xv, sv = extract(anet, [str(p) for p in val.paths])
    times["extract_val_s"] = time.perf_counter() - start
    fig = {"val_head": mean_accuracy(val.labels, sv, names),
           "val_svm_cv": svm_cv(xv, val.labels, np.asarray(val.identity), names,
                                setting["heads"]),
           "val_majority": mean_accuracy(val.labels, np.where(val.labels.mean(0) > 0.5, 1.0, -1.0)
                                         * np.ones_like(val.labels), names)}
    print(f"[{name}] val ({len(val.paths)} images, {times['extract_val_s']:.1f} s to extract): "
          f"ANet head {100 * fig['val_head']:.2f}%  SVM 2-fold CV {100 * fig['val_svm_cv']:.2f}%"
          f"  majority {100 * fig['val_majority']:.2f}%", flush=True)

    if test:
        from faceattr_ray.evaluation.evaluate import evaluate_celeba
        from faceattr_ray.train import save_job_bundle

        start = time.perf_counter()
        heads = fit_heads(xv, val.labels, names, **setting["heads"])
        times["heads_s"] = time.perf_counter() - start
        tst = read_celeba(data, split=test_split)
        _, st = extract(anet, [str(p) for p in tst.paths])
        fig["test_head"] = mean_accuracy(tst.labels, st, names)
        bundle_dir = out or tempfile.mkdtemp(prefix="celeba_recipe_")
        save_job_bundle(bundle_dir, {"anet": anet}, cfg)
        _replace_heads(bundle_dir, heads)
        start = time.perf_counter()
        m = evaluate_celeba(bundle_dir, data, split=test_split, localizer="full", device="cpu")
        times["evaluate_s"] = time.perf_counter() - start
        fig["test_svm"] = float(m["mean"]["accuracy"])
        fig["test_majority"] = float(m["mean"]["majority_baseline"])
        print(f"[{name}] TEST ({m['images']} images): SVM heads fit on val "
              f"{100 * fig['test_svm']:.2f}%  (ANet head {100 * fig['test_head']:.2f}%, "
              f"majority {100 * fig['test_majority']:.2f}%)  bundle {bundle_dir}", flush=True)
    times["total_s"] = sum(times.values())
    print(f"[{name}] stage times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))
    return {"setting": name, "recipe": setting, "quick": quick, "figures": fig,
            "times_s": {k: round(v, 1) for k, v in times.items()},
            "torch_threads": torch.get_num_threads()}


# --- operating points and the cheap levers, on a trained bundle (val only) ----------------------
# Each candidate sets these keys of reproduce's RECIPE["heads"] (the rest as RECIPE has them),
# so its figures do not move when RECIPE does. PAPER_HEADS: the paper's per-patch samples, no
# class weights (RECIPE's heads before the operating points).
PAPER_HEADS = {"patches": True, "class_weight": None, "flip": False, "refit": True,
               "choose_by": None}


def _heads(**changes) -> dict:
    return {**PAPER_HEADS, **changes}


CANDIDATES: dict[str, dict] = {
    "reproduce": _heads(),  # the paper's (RECIPE before this bench): per-patch samples
    "flip": _heads(flip=True),  # test-time flip: the mirrored crop's patches join
    "mean": _heads(patches=False),  # one SVM sample per face (patch mean), not per patch
    "balanced_w": _heads(class_weight="balanced"),  # class-balanced SVM loss weights
    "no_refit": _heads(refit=False),  # SVMs fit on the fit part only, as the points were chosen
    "flip_balanced_w": _heads(flip=True, class_weight="balanced"),
    # the same levers on patch-mean samples (25x fewer SVM rows: minutes, not tens of minutes,
    # on a shared 2-core CPU)
    "mean_flip": _heads(patches=False, flip=True),
    "mean_balanced_w": _heads(patches=False, class_weight="balanced"),  # RECIPE now
    "mean_no_refit": _heads(patches=False, refit=False),
    "mean_flip_balanced_w": _heads(patches=False, flip=True, class_weight="balanced"),
    # SVM or ANet's layer per attribute by held-out AP rather than the C metric
    "mean_balanced_w_ap": _heads(patches=False, class_weight="balanced",
                                 choose_by="average_precision"),
}
# Each candidate's heads are scored at these points, with each way of choosing the accuracy
# and balanced thresholds (heads/points.py METHODS): "empirical" (best on the choice images),
# "guarded" (accuracy: 0 unless the best beats it clearly) and "platt" (read off the sigmoid
# fitted there); one fit serves all.
POINTS = ("zero", "accuracy", "balanced", "precision:0.9")
METHODS = ("empirical", "guarded", "platt")


def load_models(models: list[str]) -> tuple:
    """(bundle, features cache key): one bundle, or several whose ANets are read as one
    (`models.AttributeEnsemble`, as `reproduce` builds with ``anet_members``; the first
    bundle's LNets and config). Heads are dropped either way, so the "ANet tag layer"
    candidate is the network's own layer, as `reproduce` sees it before fitting heads: a
    finished bundle's SVM heads were fit on all of val, and read as that candidate they leaked
    val into the nested figures (runs/repro20: accuracy point 89.45 read so, 89.37 honestly;
    README, results: A longer ANet, nineteenth round)."""
    from faceattr_ray.bundle import load_bundle
    from faceattr_ray.models import read_as_one

    bundles = [load_bundle(m) for m in models]
    keys = [b.config.get("files", {}).get("anet.safetensors", "anet")[:12] for b in bundles]
    bundle = bundles[0]
    if len(bundles) > 1:
        bundle.anet = read_as_one([b.anet for b in bundles])
    bundle.heads = None
    return bundle, "+".join(keys)


def val_patch_features(bundle, paths: list[str], cache: str | None) -> np.ndarray:
    """(N, 2P, F) patch features of aligned faces and of their mirror images (reproduce's
    `aligned_patch_features` with flip), cached in ``cache`` (float16) when given."""
    from faceattr_ray.reproduce import aligned_patch_features

    if cache and os.path.isfile(cache):
        return np.load(cache).astype(np.float32)
    x = aligned_patch_features(bundle, paths, flip=True)
    if cache:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        np.save(cache, x.astype(np.float16))
    return x


def flip_cost(bundle, paths: list[str], rounds: int = 2) -> dict:
    """Seconds to score ``paths`` (aligned faces, decode included) without and with test-time
    flip, interleaved ``rounds`` times on the same images; the ratio is what flip costs."""
    from faceattr_ray.evaluation.evaluate import predict_scores
    from faceattr_ray.predictor import Predictor

    seconds = {False: [], True: []}
    for _ in range(rounds):
        for flip in (False, True):
            predictor = Predictor(bundle, device="cpu", localizer="full", flip=flip)
            start = time.perf_counter()
            predict_scores(predictor, paths)
            seconds[flip].append(time.perf_counter() - start)
    plain, flipped = min(seconds[False]), min(seconds[True])
    return {"images": len(paths), "seconds_plain": round(plain, 2),
            "seconds_flip": round(flipped, 2), "ratio": round(flipped / plain, 2)}


def points_run(models: list[str], data: str, names: list[str], seed: int, solver: str | None,
               cache_dir: str | None) -> dict:
    """Per candidate, figures at each operating point on val identities no choice saw.

    Reproduce's split rule holds out ``holdout`` of val's identities (VAL); the rest fit the
    SVMs. Here the held-out identities are halved: one half chooses C, the SVM-or-ANet head
    and the operating points, the other half (TEST code: never fit, never chosen on) measures;
    then the halves swap, and the two measurements are averaged."""
    from faceattr_ray.data import read_celeba
    from faceattr_ray.heads import TEST, VAL, linear_scores
    from faceattr_ray.heads.points import choose_points
    from faceattr_ray.metrics import attribute_metrics
    from faceattr_ray.reproduce import RECIPE, _holdout_codes, heads_from_features, merge

    bundle, key = load_models(models)
    val = read_celeba(data, split="val")
    cols = [list(val.names).index(n) for n in bundle.attributes]
    y = val.labels[:, cols]
    start = time.perf_counter()
    feats = val_patch_features(bundle, [str(p) for p in val.paths],
                               os.path.join(cache_dir, f"{key}_val_flip.npy") if cache_dir
                               else None)
    extract_s = time.perf_counter() - start
    identity = np.asarray(val.identity)
    codes = _holdout_codes(identity, len(y), RECIPE["heads"]["holdout"], seed)
    held_ids = np.unique(identity[codes == VAL])
    half = np.random.default_rng([seed, 23]).permutation(held_ids)[:len(held_ids) // 2]
    first = np.isin(identity, half) & (codes == VAL)
    second = (codes == VAL) & ~first
    p = feats.shape[1] // 2
    results: dict[str, dict] = {}
    for name in names:
        h = merge(RECIPE["heads"], CANDIDATES[name])
        if solver:
            h["solver"] = solver
        x = feats if h.get("flip") else feats[:, :p]
        figures: dict[str, dict[str, list]] = {}
        unreachable = []
        start = time.perf_counter()
        for measure in (second, first):  # the other half of VAL chooses
            split = codes.copy()
            split[measure] = TEST
            heads, _, chosen = heads_from_features(bundle, x, y, split, h, seed)
            held = chosen.held_out  # the choice images' scores and labels
            xm = x[measure] if h["patches"] else x[measure].mean(1)
            sm = linear_scores(xm, heads.weight, heads.bias)
            for method in METHODS:
                points = choose_points(*held, bundle.attributes, precisions=[0.9],
                                       method=method)
                for pt in POINTS:
                    if method == "platt" and pt not in ("accuracy", "balanced"):
                        continue  # the same thresholds either way
                    if method == "guarded" and pt not in ("accuracy", "precision:0.9"):
                        continue
                    key = pt if method == "empirical" else f"{pt} ({method})"
                    m = attribute_metrics(y[measure], sm, bundle.attributes,
                                          points.threshold(pt))
                    for k, v in m["mean"].items():
                        figures.setdefault(key, {}).setdefault(k, []).append(v)
                    if pt.startswith("precision"):
                        got = [a["precision"] for a in m["attributes"].values()
                               if a["precision"] is not None]
                        figures[key].setdefault("achieved_precision", []).append(
                            float(np.mean(got)))
                        figures[key].setdefault("unreachable", []).append(
                            len(points.unreachable(pt)))
            unreachable.append(len(points.unreachable("precision:0.9")))
        seconds = time.perf_counter() - start
        results[name] = {
            "heads": CANDIDATES[name],
            "points": {pt: {k: round(float(np.mean(v)), 4) for k, v in f.items()}
                       for pt, f in figures.items()},
            "unreachable_precision_0.9": unreachable, "seconds": round(seconds, 1)}
        r = results[name]["points"]
        print(f"[points] {name:16s} " + "  ".join(
            f"{pt}: acc {100 * r[pt]['accuracy']:.2f} bal {100 * r[pt]['balanced_accuracy']:.2f}"
            for pt in ("zero", "accuracy", "balanced", "accuracy (guarded)", "accuracy (platt)",
                       "balanced (platt)"))
            + f"  AP {100 * r['zero']['average_precision']:.2f}  ({seconds:.0f} s)", flush=True)
        for key in ("precision:0.9", "precision:0.9 (guarded)"):
            print(f"[points] {name:16s} {key}: achieved precision "
                  f"{100 * r[key]['achieved_precision']:.1f}% where reachable, unreachable for "
                  f"{r[key]['unreachable']:.1f} attributes (mean of the two halves)", flush=True)
    cost = flip_cost(bundle, [str(p) for p in val.paths[:128]])
    print(f"[points] flip cost: {cost}", flush=True)
    return {"model": " + ".join(models), "seed": seed, "val_images": len(y), "flip_cost": cost,
            "fit_images": int((codes != VAL).sum()), "choose_measure_images":
            [int(first.sum()), int(second.sum())], "extract_s": round(extract_s, 1),
            "candidates": results, "torch_threads": torch.get_num_threads()}


# --- cross-fitting against the 30% holdout (issue 19, second round), val only --------------------
# Each candidate sets these keys of RECIPE["heads"]; "train" adds the train split's faces
# (ANet features; ANet was trained on them) to every SVM fit.
CROSSFIT: dict[str, dict] = {
    "holdout30": {"crossfit": 0},  # RECIPE before: 70% of the identities fit, 30% choose
    "crossfit5": {"crossfit": 5, "crossfit_final": "refit"},
    "crossfit5_average": {"crossfit": 5, "crossfit_final": "average"},
    "crossfit10": {"crossfit": 10, "crossfit_final": "refit"},
    "crossfit5_train": {"crossfit": 5, "crossfit_final": "refit", "train": True},
    # test-time flip: each face's features are the mean over its patches and its mirror's
    "crossfit5_flip": {"crossfit": 5, "crossfit_final": "refit", "flip": True},
    # per attribute the best mix of the tag layer and the SVM (reproduce.blend_heads)
    "crossfit5_blend": {"crossfit": 5, "crossfit_final": "refit", "choose": "blend"},
}
MIN_POSITIVES = (10, 20, 40)  # the balanced point's guard: Platt's below that many positives


def crossfit_run(models: list[str], data: str, names: list[str], seeds: list[int], solver: str,
                 cache_dir: str | None) -> dict:
    """Nested, val only: val's identities are halved (per seed); one half is the val split of
    the candidate (it fits the SVMs and chooses C, head and points, by the candidate's rule),
    the other half (never fit, never chosen on) measures; then they swap. Figures are means
    over halves and seeds. Also: the balanced point with a minimum-positives guard (Platt's
    threshold for an attribute with fewer positives among the choice faces), and how far the
    final heads' scores of the choice faces sit from the out-of-fold ones (the refit shift)."""
    from faceattr_ray.data import read_celeba
    from faceattr_ray.heads import TEST, TRAIN, VAL, linear_scores
    from faceattr_ray.heads.points import choose_points
    from faceattr_ray.metrics import attribute_metrics
    from faceattr_ray.reproduce import RECIPE, _holdout_codes, heads_from_features, merge

    bundle, key = load_models(models)
    val = read_celeba(data, split="val")
    cols = [list(val.names).index(n) for n in bundle.attributes]
    y = val.labels[:, cols]
    feats = val_patch_features(bundle, [str(p) for p in val.paths],
                               os.path.join(cache_dir, f"{key}_val_flip.npy") if cache_dir
                               else None)
    aligned = feats[:, :feats.shape[1] // 2].mean(1, keepdims=True)  # aligned view, patch mean
    mirrored = feats.mean(1, keepdims=True)  # both views
    identity = np.asarray(val.identity)
    xt = yt = None
    if any(CROSSFIT[n].get("train") for n in names):
        xt, yt = train_mean_features(bundle, data, cache_dir, key)
    ids = np.unique(identity)
    results: dict[str, dict] = {}
    for name in names:
        cand = dict(CROSSFIT[name])
        with_train = cand.pop("train", False)
        x = mirrored if cand.get("flip") else aligned
        h = merge(RECIPE["heads"], {**cand, "patches": False})
        h["solver"] = solver
        figures: dict[str, list] = {}
        start = time.perf_counter()
        for seed in seeds:
            half = np.isin(identity, np.random.default_rng([seed, 29]).permutation(ids)
                           [:len(ids) // 2])
            for measure in (half, ~half):
                choose = ~measure
                if h["crossfit"]:
                    split = np.where(choose, VAL, TEST).astype(np.int8)
                else:
                    split = np.full(len(y), TEST, np.int8)
                    split[choose] = _holdout_codes(identity[choose], int(choose.sum()),
                                                   h["holdout"], seed)
                xs, ys, groups = x, y, identity
                if with_train:
                    xs, ys = np.concatenate([x, xt]), np.concatenate([y, yt])
                    split = np.r_[split, np.full(len(xt), TRAIN, np.int8)]
                    groups = np.r_[identity.astype(str), [f"t{i}" for i in range(len(xt))]]
                heads, info, pts = heads_from_features(bundle, xs, ys, split, h, seed, groups)
                held_s, held_y = pts.held_out
                sm = linear_scores(x[measure, 0], heads.weight, heads.bias)
                svm = np.array([c == "svm" for c in info["choice"].values()])
                final = linear_scores(xs[split == VAL, 0], heads.weight, heads.bias)
                spread = held_s.std(0) + 1e-9
                figures.setdefault("svm_heads", []).append(int(svm.sum()))
                figures.setdefault("shift", []).append(float(np.median(
                    np.abs((final - held_s).mean(0) / spread)[svm])) if svm.any() else 0.0)
                chosen = {m: choose_points(held_s, held_y, bundle.attributes, precisions=[0.9],
                                           method=m) for m in ("empirical", "guarded", "platt")}
                rows = {"zero": chosen["empirical"].threshold("zero"),
                        "accuracy": chosen["empirical"].threshold("accuracy"),
                        "accuracy (guarded)": chosen["guarded"].threshold("accuracy"),
                        "balanced": chosen["empirical"].threshold("balanced"),
                        "balanced (platt)": chosen["platt"].threshold("balanced")}
                for m in MIN_POSITIVES:
                    rows[f"balanced (platt below {m} positives)"] = choose_points(
                        held_s, held_y, bundle.attributes, precisions=[0.9],
                        method="guarded", balanced_platt_below=m).threshold("balanced")
                for row, t in rows.items():
                    mean = attribute_metrics(y[measure], sm, bundle.attributes, t)["mean"]
                    for k2 in ("accuracy", "balanced_accuracy", "average_precision"):
                        figures.setdefault(f"{row}: {k2}", []).append(float(mean[k2]))
        seconds = time.perf_counter() - start
        results[name] = {"heads": CROSSFIT[name], "seconds": round(seconds, 1),
                         **{k: round(float(np.mean(v)), 4) for k, v in figures.items()},
                         "per_split": {k: [round(v, 4) for v in vs] for k, vs in figures.items()
                                       if k in ("accuracy: accuracy",
                                                "balanced: balanced_accuracy")}}
        r = results[name]
        print(f"[crossfit] {name:18s} accuracy point {100 * r['accuracy: accuracy']:.2f} "
              f"(guarded {100 * r['accuracy (guarded): accuracy']:.2f}, zero "
              f"{100 * r['zero: accuracy']:.2f})  balanced point "
              f"{100 * r['balanced: balanced_accuracy']:.2f} (platt "
              f"{100 * r['balanced (platt): balanced_accuracy']:.2f}, guard 20: "
              f"{100 * r['balanced (platt below 20 positives): balanced_accuracy']:.2f})  AP "
              f"{100 * r['zero: average_precision']:.2f}  SVM heads {r['svm_heads']:.1f}  "
              f"shift {r['shift']:.3f}  ({seconds:.0f} s)", flush=True)
        print(f"[crossfit] {name} " + json.dumps(r), flush=True)  # kept if the run is cut
    return {"model": " + ".join(models), "seeds": seeds, "val_images": len(y), "solver": solver,
            "candidates": results, "torch_threads": torch.get_num_threads()}


def crossfit_cost(models: list[str], data: str, solvers: list[str], cache_dir: str | None) -> dict:
    """Seconds of reproduce's heads stage after feature extraction (`heads_from_features` on
    all of val, RECIPE heads) with the 30% holdout and with 5-fold cross-fitting, per solver
    (the Ray one on a local Ray of 2 CPUs), in one run."""
    import ray

    from faceattr_ray.data import read_celeba
    from faceattr_ray.heads import VAL
    from faceattr_ray.reproduce import RECIPE, _holdout_codes, heads_from_features, merge

    bundle, key = load_models(models)
    val = read_celeba(data, split="val")
    y = val.labels[:, [list(val.names).index(n) for n in bundle.attributes]]
    feats = val_patch_features(bundle, [str(p) for p in val.paths],
                               os.path.join(cache_dir, f"{key}_val_flip.npy") if cache_dir
                               else None)
    x = feats[:, :feats.shape[1] // 2].mean(1, keepdims=True)
    identity = np.asarray(val.identity)
    if "ray" in solvers:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    seconds = {}
    for solver in solvers:
        for k in (0, 5):
            h = merge(RECIPE["heads"], {"crossfit": k, "solver": solver})
            split = (np.full(len(y), VAL, np.int8) if k
                     else _holdout_codes(identity, len(y), h["holdout"], 0))
            start = time.perf_counter()
            heads_from_features(bundle, x, y, split, h, 0, identity)
            seconds[f"{solver} crossfit={k}"] = round(time.perf_counter() - start, 1)
            print(f"[crossfit-cost] {seconds}", flush=True)
    return {"model": " + ".join(models), "val_images": len(y), "seconds": seconds}


def train_mean_features(bundle, data: str, cache_dir: str | None, key: str
                        ) -> tuple[np.ndarray, np.ndarray]:
    """(N, 1, F) patch-mean ANet features of the train split's aligned faces and their labels
    (N, A), cached in ``cache_dir``."""
    from faceattr_ray.data import read_celeba
    from faceattr_ray.reproduce import aligned_patch_features

    train = read_celeba(data, split="train")
    y = train.labels[:, [list(train.names).index(n) for n in bundle.attributes]]
    cache = os.path.join(cache_dir, f"{key}_train.npy") if cache_dir else None
    if cache and os.path.isfile(cache):
        return np.load(cache)[:, None, :], y
    x = aligned_patch_features(bundle, [str(p) for p in train.paths], flip=False).mean(1)
    if cache:
        os.makedirs(cache_dir, exist_ok=True)
        np.save(cache, x.astype(np.float32))
    return x[:, None, :], y


def _replace_heads(bundle_dir: str, heads) -> None:
    from faceattr_ray.bundle import load_bundle, write_heads_bundle

    write_heads_bundle(bundle_dir, heads, load_bundle(bundle_dir), {"protocol": "celeba_recipe"})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--setting", choices=sorted(SETTINGS), default=None,
                   help="the recipe to run (required unless --smoke-test)")
    p.add_argument("--data", default=DATA)
    p.add_argument("--quick", type=float, default=1.0,
                   help="scale every stage's epochs (screening runs)")
    p.add_argument("--test", action="store_true", help="also the test figure (final recipe only)")
    p.add_argument("--out", help="bundle folder (with --test)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-split", default="test",
                   help="the split --test scores (val: a dry run of that path, no test figure)")
    p.add_argument("--smoke-test", action="store_true",
                   help="the 'smoke' setting with --test on 120 generated faces (seconds)")
    p.add_argument("--points", action="store_true",
                   help="operating points and the cheap levers (CANDIDATES) on --model's "
                        "features, val only; no training")
    p.add_argument("--model", nargs="+", default=[None],
                   help="with --points or --crossfit: the bundle (default: bundled); several: "
                        "their ANets read as one ensemble (reproduce's anet_members)")
    p.add_argument("--candidates", nargs="+", choices=sorted(CANDIDATES), default=None)
    p.add_argument("--solver", choices=["ray", "liblinear"], default=None,
                   help="with --points: the SVM solver (default: the recipe's)")
    p.add_argument("--crossfit", action="store_true",
                   help="cross-fitting against the 30%% holdout (CROSSFIT) on --model's "
                        "features, nested on val halves; no training")
    p.add_argument("--crossfit-candidates", nargs="+", choices=sorted(CROSSFIT), default=None)
    p.add_argument("--crossfit-cost", nargs="+", choices=["ray", "liblinear"], default=None,
                   help="seconds of the heads stage, holdout vs cross-fit, per solver")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1],
                   help="with --crossfit: the seeds of the val halvings")
    p.add_argument("--cache", default="bench-out/points",
                   help="with --points: folder caching the val features ('' = none)")
    args = p.parse_args()
    if args.crossfit_cost:
        from faceattr_ray.bundled import resolve_model

        print(json.dumps(crossfit_cost([resolve_model(m) for m in args.model], args.data,
                                       args.crossfit_cost, args.cache or None)))
        return
    if args.crossfit:
        from faceattr_ray.bundled import resolve_model

        models = [resolve_model(m) for m in args.model]
        print(f"crossfit: model {' + '.join(models)}, seeds {args.seeds}, solver "
              f"{args.solver or 'liblinear'}, {os.cpu_count()} cores (a shared, noisy machine)",
              flush=True)
        print(json.dumps(crossfit_run(models, args.data,
                                      args.crossfit_candidates or list(CROSSFIT), args.seeds,
                                      args.solver or "liblinear", args.cache or None)))
        return
    if args.points:
        from faceattr_ray.bundled import resolve_model

        models = [resolve_model(m) for m in args.model]
        print(f"points: model {' + '.join(models)}, torch threads {torch.get_num_threads()}, "
              f"{os.cpu_count()} cores (a shared, noisy machine)", flush=True)
        print(json.dumps(points_run(models, args.data, args.candidates or list(CANDIDATES),
                                    args.seed, args.solver, args.cache or None)))
        return
    scratch = None
    if args.smoke_test:
        from faceattr_ray.data.synthetic import write_aligned

        scratch = tempfile.mkdtemp(prefix="celeba_recipe_smoke_")
        args.setting, args.test = "smoke", True
        args.data = write_aligned(os.path.join(scratch, "faces"), 120, identities=30, seed=0)
        args.out = args.out or os.path.join(scratch, "bundle")
    elif args.setting is None:
        p.error("--setting is required (or --smoke-test)")
    if not os.path.isdir(args.data):
        sys.exit(f"no data at {args.data}")
    setting = copy.deepcopy(SETTINGS[args.setting])
    for stage in ("pretrain", "finetune"):
        if setting[stage]:
            setting[stage]["seed"] = args.seed
    print(f"setting {args.setting}: {json.dumps(setting)}  quick={args.quick}  "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} cores", flush=True)
    try:
        result = run(args.setting, setting, args.data, args.quick, args.test, args.out,
                     args.test_split)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
