"""`faceattr-ray reproduce`: the paper's protocol end to end on any CelebA-layout root.

    ROOT (aligned faces, train/val/test) + BACKGROUNDS (real face-free photos; some kept apart)
      ├─ ANet: pre-train on the train split's identities (softmax + similarity loss)
      ├─ LNet_o, LNet_s: train with image-level tags (face present + attributes) on scenes made
      │   on the fly from train faces x train backgrounds (train/lnet_scenes.py); LNet_s on
      │   head-shoulder windows with LNet_o's false proposals as hard negatives
      ├─ ANet: fine-tune with attribute tags on ROOT's face crops, half of them as a localizer
      │   finds them in the wild (pasted, turned, degraded, framed from a jittered box)
      ├─ heads: linear SVMs on ANet patch features of the val split (held-apart identities,
      │   as the paper fits its SVMs); C, and per attribute SVM vs ANet's own tag layer,
      │   chosen on val identities held out of that fit
      ├─ localizer: box geometry and face threshold on scenes of val faces x held-apart
      │   backgrounds
      └─ evaluate on the test split (the only use of test) ──> DIR/model, DIR/report (the results)

Every training setting of a real run lives in `RECIPE` below (`SMOKE` shrinks it for
`--smoke-test`; `--recipe JSON` overrides any key). The demo runs the same `build_model` with
its own tiny recipe on generated faces.

Trainer: Ray Train (`api.fit` with ``local=False``; checkpoints under DIR/work/ray_results,
rerunning resumes) or the same step loop in-process. ``"auto"`` picks Ray Train on a cluster
(``--address``) or when the embedded Ray has a GPU or more than 4 CPUs, and in-process
otherwise: on a small machine Ray Train's decode tasks and its worker share the same few
cores, so the in-process loop is faster there (README, results). The SVM heads are solved on
Ray (the distributed Newton solver) either way.
"""

from __future__ import annotations

import copy
import json
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from faceattr_ray.crops import ALIGNED_FACE_BOX
from faceattr_ray.errors import DataError, RecipeError
from faceattr_ray.presets import architecture

# --- the recipe: every setting of a real run, in one place ------------------------------------
# Accuracy experiments on celeba-mini (2-core CPU, 60-minute budget) tune these values; the
# test split is never used to choose them.
# The face head's recipe when "frame_face_head" asks for one: fit on the framed finds of
# "scenes" generated scenes of train faces on the training backgrounds (C its regularisation);
# its floor is this "quantile" of the head's score on the val scenes' matched faces (in place of
# "frame_confidence_quantile"), and the threshold the lowest whose false detections per val
# scene, after the floor, stay within "max_false_per_image". Chosen on val with the bundled
# model's networks (README, results, twenty-first round: at quantile 0.02 the cameraman's face
# fell under the floor)
# "min_score": only finds the LNets score at least this high are framed and learnt from (None:
# every find). Framing is most of the fit's minutes, but at 0.5 the head read worse on val
# (README, results, twenty-second round)
FACE_HEAD: dict = {"scenes": 400, "C": 0.001, "quantile": 0.01, "max_false_per_image": 0.1,
                   "min_score": None}


def face_head_recipe(recipe: dict) -> dict | None:
    """RECIPE's "frame_face_head" with FACE_HEAD's defaults filled in ({} asks for them
    all); None: no face head."""
    asked = recipe.get("frame_face_head")
    return None if asked is None or asked is False else {**FACE_HEAD, **asked}


RECIPE: dict = {
    "trainer": "auto",  # "auto", "ray" (Ray Train) or "local" (in-process); see module doc
    # AlexNet-style LNets only (no face tag, e.g. the demo's toy): their in-the-wild training
    # images, ROOT's faces pasted on backgrounds once, fine-tuned by api.finetune.
    "wild": {
        "count": 2400, "size": [256, 192], "max_people": 2, "min_face": 28.0,
        "backgrounds": 300,  # generated backgrounds when --backgrounds is not given
    },
    # Architectures (models.ANetConfig / LNetConfig keys): the "wild" preset. Face-tag LNets
    # train on scenes made on the fly ("lnets" below); ANet has batch norm, which lets it train
    # from scratch in minutes.
    "anet_arch": architecture("wild")["anet"],
    "lnet_arch": architecture("wild")["lnet"],
    # ANet reads a found face framed as an aligned CelebA crop frames its face (models.Preprocess)
    "preprocess": {"face_box": list(ALIGNED_FACE_BOX)},
    # Face-tag LNets (train/lnet_scenes.py): steps of fresh scenes, faces face_px wide in
    # scene_size scenes (LNet_o), window_size head-shoulder windows (LNet_s).
    "lnets": {"steps_o": 800, "steps_s": 600, "batch_size": 32, "lr": 0.003,
              "weight_decay": 1e-4, "scene_size": 128, "face_px": [24, 64], "window_size": 96,
              # share of faces pasted whole (neck, shoulders, own surroundings) under a
              # feathered rectangle, and up to this many background patches pasted alike:
              # 0.5 and 2 (with 1000 + 800 steps) localized worse everywhere (README)
              "context_share": 0.0, "distractors": 0,
              # share of the training scenes turned grey (`degrade_image`'s default, 0.15, lost
              # 13-14 points on grey val collages): 0.3 found 9 points more of those faces, and
              # more pasted and whole faces in colour (README, results)
              "grey_share": 0.3,
              "background_val_share": 0.25, "hard_negative_photos": None,
              # share of LNet_s's windows whose edge cuts a face (negatives, to centre its map's
              # peak on the whole face): 0.15 lifted every draw on one LNet_o and sank three
              # of four on another (README), so off
              "cut_share": 0.0,
              # LNet_s starts from LNet_o's weights: over 8 paired draws on two LNet_o, calibration
              # recall 0.23-0.76 (mean 0.53) against 0.00-0.80 (0.34) from random weights (README)
              "s_init": "lnet_o",
              # LNet_o draws (seeds seed, seed + 1, ...), each with its LNet_s draws (seeds
              # from its own on), the pair finding most calibration faces kept: draws still
              # spread, LNet_s's with its LNet_o's (README)
              "o_draws": 1, "s_draws": 2,
              # LNet_o's proposals per photo that LNet_s reads (the localizer's default is 12):
              # more find the faces of group photos (val scenes of up to 8 faces: recall +6 to
              # +9 points; README, results); hard negatives are still mined from 12
              "max_proposals": 24,
              # how far (face widths) from a proposal LNet_s looks for its peak; None: the whole
              # head-shoulder window. 0.5 raised the share of val faces any find reaches, not
              # the recall at the threshold (README, seventeenth round), so it is off
              "refine_radius": None,
              # LNet_o's map of each pyramid level averaged with its mirror image's (a reading
              # choice; training reads without it). On val, framed, against without: faces
              # pasted whole 0.829 / 0.27 false per image vs 0.798 / 0.35, group scenes
              # 0.866 / 0.22 vs 0.858 / 0.32, collages +2 faces, scenes -2, calibration false
              # detections halved; about 0.05 s more an image (README, results: Localization
              # in the wild, eighteenth round)
              "flip_proposals": True,
              # both LNets' weights kept as a moving average over the steps at this decay
              # (train.common.weight_average). 0.99 lifted all four draws' calibration recall
              # (0.62, 0.73 | 0.79, 0.82 against 0.38, 0.34 | 0.76, 0.80) and the LNets' own
              # val recall on group and whole faces, but framed it read as the command on val
              # (calibration 0.869 against 0.873); 0.995: 0.836, 0.99 with 1,200 LNet_o
              # steps: 0.857, with wider LNets: draws of 0.00-0.59 (README, results:
              # Localization in the wild, twentieth round), so off
              "ema_decay": None,
              "init": None,  # a bundle whose LNets to take as they are (skips their training)
              # on a CPU that computes bf16 (as ANet's block below): bf16 autocast, channels-
              # last kernels and scenes pasted by a child process while one thread runs the
              # step make the loop about 2x faster (bench/lnet_loop.py), time spent on a second
              # LNet_o and its draws to choose from (README, results); null: float32 everywhere
              "native_bf16": {"precision": "bf16", "channels_last": True, "prefetch": "process",
                              "threads": 1, "o_draws": 2, "s_draws": 2}},
    # Scenes of val faces on held-apart backgrounds that set the box geometry and threshold
    # (at most max_false_per_image false detections there), and of test faces for the results.
    "scenes": {"count": 120, "size": [500, 375], "face_px": [30, 120], "max_faces": 4,
               "empty_share": 0.15, "max_false_per_image": 0.25, "test_count": 150,
               # scenes that measure (the test scenes here, the benches): a later paste covers
               # at most this share of an earlier face's box, as a face hidden under another's
               # hair or surroundings is no face to find. Calibration scenes keep every paste
               # as drawn: a face none can find lowers recall at every threshold alike (README)
               "test_max_hidden": 0.25,
               # share of the calibration scenes' faces pasted whole, as faces come in photos:
               # 0.5 kept the recall of val collages and cut false detections (README)
               "calibration_context_share": 0.5},
    # Options of each training job (train.api.make_config keys: epochs, lr, batch_size,
    # weight_decay, momentum, augment, similarity_weight, images_per_identity, max_steps ...).
    # Identity pre-training (the paper's step) is off by default: it needs several images per
    # identity, and celeba-mini has about 2 (README, results).
    # `--recipe '{"anet_pretrain": {"epochs": 8}}'` runs it.
    "anet_pretrain": {"epochs": 0, "batch_size": 32, "optimizer": "adamw", "lr": 0.002,
                      "weight_decay": 0.05, "schedule": "cosine", "warmup_epochs": 0.5,
                      "min_images": 2},
    "lnet_finetune": {"epochs": 3, "lr": 0.01, "batch_size": 32, "headshoulder": "lnet_o"},
    # Optimiser and schedule chosen on val by bench/celeba_recipe.py, never on test (README).
    # A quarter of the crops wild: ANet's own tag layer reached 0.8928 val accuracy against
    # 0.8917 (a tenth wild, more epochs) and 0.8865 (half wild), and found faces in val scenes
    # kept the smallest gap (README, results); a wild crop costs more to make than an aligned
    # one, so the same minutes buy more epochs. 58 epochs, between the two measured (56 and 62:
    # val AP 67.2 and 67.6): 62 and a second LNet_s draw would pass the 60 minutes (README).
    "anet_finetune": {"epochs": 58, "batch_size": 64, "optimizer": "adamw", "lr": 0.002,
                      "weight_decay": 0.05, "schedule": "cosine", "warmup_epochs": 1,
                      # share of training crops made as a localizer finds faces in photos;
                      # context_share of those paste the whole aligned crop (neck, surroundings)
                      "wild": {"share": 0.25, "face_px": [24, 64], "context_share": 0.5},
                      # in-process: batches made by a child process during the step, val
                      # scored every 8th epoch (bench/prefetch.py; README, results)
                      "prefetch": "process", "val_every": 8,
                      # each face decoded once, not once an epoch (the child process holds
                      # them: 6,370 celeba-mini faces of 89x109 take 177 MiB; bench/prefetch.py
                      # --image-cache 0 1024); a larger set decodes the rest as before
                      "image_cache_mb": 1024,
                      # in-process on a CPU that computes bf16 (AVX-512 BF16, AMX: runtime.
                      # cpu_has_native_bf16), these options replace the ones above: bf16 autocast
                      # and channels-last make a step 1.62x faster there (bench/prefetch.py
                      # --numerics), so the same minutes buy epoch_scale times the epochs (94
                      # for 58; any epochs a recipe sets scale alike). Nested val, against 58
                      # float32 epochs: accuracy point 89.45 vs 89.30, AP 69.1 vs 67.8 (58 bf16
                      # epochs: 89.35, 67.7; README, results); null: float32 everywhere
                      "native_bf16": {"precision": "bf16", "channels_last": True,
                                      "epoch_scale": 1.62}},
    # ANets trained as above from seeds seed, seed + 1, ... and read as one
    # (models.AttributeEnsemble: tag logits averaged, SVM heads on their features side by
    # side); each member costs anet_finetune's epochs again. Two of 65 bf16 epochs (epochs 40)
    # against one of 94: nested val, accuracy point 89.57 vs 89.37, balanced point 82.80 vs
    # 82.38, AP 68.79 vs 68.33; test 89.73 vs 89.77, 84.0 vs 83.6, 67.7 vs 67.2; but the whole
    # command with two took 60.2 minutes (runs/repro21), past the budget (README, results: A
    # longer ANet, nineteenth round), so one
    "anet_members": 1,
    # The command's wall-clock budget in minutes (issue 19: 60 on 2 CPU cores). ANet, trained
    # in-process, gets what is left of it after the stages before it, less minutes_after_anet
    # for the stages after it (heads, calibration, evaluation: 6.1 min on the AVX-512 EPYC,
    # runs/repro24; more on slower cores; the face head's fit adds 8.5-17), and cuts its
    # epochs to what fits (train.common.epochs_within). The AMX Xeon and the AVX-512 EPYC fit
    # all 94 bf16 epochs; a 2-core AVX2 EPYC (float32, 120 images/s: 58 epochs would take 51
    # min after 10 of LNets) does not (README, results: A longer ANet, twenty-second round).
    # null: no budget. minutes_face_head: reserved on top when frame_face_head asks for a
    # face head, so the head takes its minutes from ANet's epochs, not from the budget. Its
    # 400-scene fit added 11.2 min of calibration on the slower AVX-512 EPYC (runs/repro23) and
    # 8.5 on a faster one (runs/repro27); calibration ran 1.53x slower on the AVX2 EPYC, so
    # about 17 there (README, results: A longer ANet, twenty-third round).
    "minutes": 60, "minutes_after_anet": 10, "minutes_face_head": 17,
    # bundles whose ANets to take as they are (skips ANet's training): one, or several read as
    # one ensemble
    "anet_init": None,
    # Heads and operating points chosen on val by `bench/celeba_recipe.py --points` and
    # `--crossfit` (README, results): class-balanced SVM weights on patch-mean samples,
    # "guarded" points, C, head and points chosen on cross-fit (5-fold) scores of every val
    # face, the balanced point read off Platt's sigmoid.
    "heads": {
        "C": [0.0001, 0.001, 0.01, 0.1, 1.0],
        "class_weight": "balanced",  # n / (2 n_y) per class; C then chosen on balanced accuracy
        "fit_splits": ["val"],  # add "train" to fit on train + val features
        "holdout": 0.3,  # share of val identities held out of the SVM fit to choose C and head
        # K > 0: cross-fit instead of holding out (heads/crossfit.py): val's identities in K
        # folds, each scored by SVMs fit on the others, so C, head and points are chosen on
        # every val face; 0: the holdout share above. crossfit_final: the heads kept, "refit"
        # (chosen C on all val) or "average" (the K fold models averaged)
        "crossfit": 5,
        "crossfit_final": "refit",
        # "svm", "anet" (the fine-tuned tag layer) or "best" per attribute; "blend": the mix of
        # both with the best held-out choose_by (one linear head; reproduce.blend_heads)
        "choose": "best",
        "choose_by": "average_precision",  # "best" by held-out AP (None: the metric C is on)
        "solver": "ray",  # "ray" (Newton on Ray tasks) or "liblinear"
        "patches": False,  # one SVM sample per face (the patch mean), not per patch (paper)
        "refit": True,  # refit the chosen SVMs on all val (fit + held-out identities)
        "flip": False,  # test-time flip averaging (stored in the bundle: "predict")
        # operating points on the held-out identities (heads/points.py METHODS): "empirical",
        # "guarded" (accuracy: 0 unless clearly beaten; precision: its Wilson lower bound) or
        # "platt"
        "points": "guarded",
        # the balanced point of an attribute with fewer positives than this among the choice
        # faces is read off its Platt sigmoid, not the step function (0: never; 1,000,000:
        # every attribute, which val preferred to a guard of 20 positives)
        "balanced_platt_below": 1_000_000,
        "precisions": [0.8, 0.9, 0.95],  # precision points stored
    },
    "calibrate": {"faces": 300, "backgrounds": 300},  # val images scored for the threshold
    "localization_check": 300,  # test scenes scored for the results' localization figure
    # Found boxes re-sized to the zoom ANet reads most confidently (localizers/framing.py;
    # stored in the bundle: "predict"); chosen on val collages and scenes (README, results)
    "frame_zooms": [round(2 ** (k / 8), 6) for k in range(-4, 5)],
    # then the centre moved where ANet reads it more confidently: up/down by these fractions of
    # the box's height, then sideways by these of its width; chosen on val (README, results)
    "frame_shifts_y": [-0.2, -0.1, 0.1, 0.2],
    "frame_shifts_x": [-0.1, 0.1],
    # Framed boxes ANet reads less confidently than this quantile of the val scenes' found
    # faces are dropped (face-like texture: `localizers.framing.confidence_floor`); chosen on
    # val photos, collages and scenes (README, results); None: nothing dropped
    "frame_confidence_quantile": 0.02,
    # What that floor reads: None, ANet's attribute confidence, the threshold set before it
    # ("scenes": max_false_per_image); or a dict (keys over FACE_HEAD's defaults; {} takes
    # them all), a face head (`heads.face`), the threshold and floor then chosen together. It
    # reads as well or better on every val set, with the bundled model's networks and with the
    # command's own (runs/repro23; README, results, twenty-first and twenty-second rounds).
    # Its fit (8.5-11 minutes on 2 cores, more on AVX2) is reserved in the budget
    # ("minutes_face_head"), so it takes its minutes from ANet's epochs where the budget binds
    "frame_face_head": {},
    # The attribute network: "anet" (LNets+ANet, the paper) or "ssp-ssg" (Kalayeh et al. 2017:
    # parsing-guided, `ssp_ssg` below, in place of the ANet stages; LNets, heads, calibration
    # and evaluation unchanged). `--family` sets it.
    "family": "anet",
    "ssp_ssg": {
        "arch": {},  # SSPSSGConfig keys over the "ssp-ssg" preset (e.g. {"ssg": false})
        # part masks: a face-parsing root (CelebAMask-HQ, Helen/LaPa); else "parts": "real",
        # masks placed by each ROOT train face's own dark blobs (data/pseudo_parts.py; real
        # faces, measured better on real val faces: README), or "drawn", generated people
        # drawn with their masks (count faces of `identities` people), into DIR/work/parts
        "parsing_data": None, "parts": "real", "generated": {"count": 3000, "identities": 600},
        # faces moved by random similarities in training, so the parsing follows the face
        "parsing": {"epochs": 8, "batch_size": 32, "optimizer": "adamw", "lr": 0.003,
                    "weight_decay": 1e-4, "schedule": "cosine",
                    "move": {"scale": [0.85, 1.15], "shift": 0.1}},
        # joint: attribute tags + part masks (parsing_share of the rows, parsing_weight)
        "finetune": {"epochs": 12, "batch_size": 64, "optimizer": "adamw", "lr": 0.002,
                     "weight_decay": 0.05, "schedule": "cosine", "warmup_epochs": 1,
                     "parsing_share": 0.25, "parsing_weight": 0.5,
                     # wild crops as ANet's: trained on aligned crops only it lost 5.1 points
                     # on faces found in scenes against 0.6 for ANet (README)
                     "wild": {"share": 0.5, "face_px": [24, 64], "context_share": 0.5}},
    },
}

# --smoke-test: tiny networks, a handful of images, 2 steps per job (seconds, not minutes).
SMOKE: dict = {
    "trainer": "local",
    "wild": {"count": 40, "size": [128, 96], "max_people": 1, "min_face": 24.0,
             "backgrounds": 12},
    "anet_arch": architecture("wild-smoke")["anet"],
    "lnet_arch": architecture("wild-smoke")["lnet"],
    "lnets": {"steps_o": 2, "steps_s": 2, "batch_size": 4, "scene_size": 64, "face_px": [16, 40],
              "window_size": 48, "hard_negative_photos": 2,
              "native_bf16": {"o_draws": 1, "s_draws": 1}},
    "scenes": {"count": 4, "size": [160, 120], "face_px": [24, 60], "test_count": 4},
    "anet_pretrain": {"epochs": 1, "max_steps": 2, "batch_size": 8},
    "lnet_finetune": {"epochs": 1, "max_steps": 2, "batch_size": 4, "headshoulder": "boxes"},
    "anet_finetune": {"epochs": 1, "max_steps": 2, "batch_size": 8,
                      "native_bf16": {"epoch_scale": 1.0}},
    "heads": {"C": [0.1, 1.0], "solver": "liblinear"},
    "calibrate": {"faces": 8, "backgrounds": 8},
    "localization_check": 8,
    "frame_face_head": {"scenes": 4},
    "ssp_ssg": {"arch": architecture("ssp-ssg-smoke")["ssp_ssg"],
                "generated": {"count": 24, "identities": 6},
                "parsing": {"epochs": 1, "max_steps": 2, "batch_size": 4},
                "finetune": {"epochs": 1, "max_steps": 2, "batch_size": 8}},
}


def merge(base: dict, overrides: dict | None) -> dict:
    """``base`` with ``overrides`` applied, nested dicts merged key by key (a copy)."""
    out = copy.deepcopy(base)
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class Timer:
    """Wall time of each named stage, in order (recorded in the results)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since this timer was made (the command's start)."""
        return time.perf_counter() - self.started

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        print(f"[reproduce] {name} ...", flush=True)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 2)
            print(f"[reproduce] {name}: {self.seconds[name]:.1f} s", flush=True)


# --- stages -----------------------------------------------------------------------------------


def make_wild(root: str, work: str, recipe: dict, backgrounds: list[str] | None,
              seed: int) -> tuple[str, list[str]]:
    """WILD (ROOT's faces pasted on backgrounds, splits kept) and face-free images for the
    threshold, which the LNets never saw: every 5th given background is kept apart, or a
    separate generated set. Returns (wild root, calibration background paths)."""
    from faceattr_ray.data.paste import paste_faces
    from faceattr_ray.data.synthetic import write_backgrounds

    w = recipe["wild"]
    size = tuple(w["size"])
    if backgrounds:
        paste_on = [p for k, p in enumerate(backgrounds) if k % 5 != 4] or list(backgrounds)
        held = [p for k, p in enumerate(backgrounds) if k % 5 == 4] or list(backgrounds)
    else:
        folder = os.path.join(work, "backgrounds")
        paste_on = write_backgrounds(folder, w["backgrounds"], seed=seed, size=size)
        held = write_backgrounds(folder, recipe["calibrate"]["backgrounds"], seed=seed + 1,
                                 size=size, prefix="calibrate")
    wild = os.path.join(work, "wild")
    paste_faces(root, wild, w["count"], seed=seed, size=size, max_people=w["max_people"],
                backgrounds=paste_on, min_face=w["min_face"])
    return wild, held


def _trainer_options(recipe: dict, work: str, address: str | None) -> dict:
    trainer = recipe["trainer"]
    if trainer == "auto":
        import ray

        res = ray.cluster_resources()
        big = address is not None or res.get("GPU", 0) > 0 or res.get("CPU", 0) > 4
        trainer = "ray" if big else "local"
    if trainer not in ("ray", "local"):
        raise RecipeError(f"trainer must be auto, ray or local, not {trainer!r}")
    if trainer == "local":
        return {"local": True}
    import ray

    return {"local": False, "storage_path": os.path.join(os.path.abspath(work), "ray_results"),
            "use_gpu": ray.cluster_resources().get("GPU", 0) > 0}


def train_networks(root: str, wild: str | None, work: str, recipe: dict, timer: Timer,
                   seed: int, limit: int | None = None, address: str | None = None,
                   backgrounds: list[str] | None = None,
                   held: list[str] | None = None) -> tuple[dict, dict]:
    """The training stages. Returns ({lnet_o, lnet_s, anet}, finetune config of ANet).
    Face-tag LNets train on scenes of ROOT's train faces x ``backgrounds`` (their LNet_s draw
    chosen on calibration scenes with the ``held`` ones); AlexNet-style ones on the WILD
    folder."""
    from faceattr_ray.models import read_as_one
    from faceattr_ray.train import api

    common = {**_trainer_options(recipe, work, address), "seed": seed, "limit": limit}
    print(f"[reproduce] trainer: {'in-process' if common['local'] else 'Ray Train'}")
    anet_arch, lnet_arch = dict(recipe["anet_arch"]), dict(recipe["lnet_arch"])
    preprocess = recipe.get("preprocess") or {}
    init: dict = {}
    pre = recipe["anet_pretrain"]
    if (pre.get("epochs", 0) > 0 and recipe.get("family", "anet") == "anet"
            and not recipe.get("anet_init")):
        with timer.stage("anet_pretrain"):
            init["anet"], metrics, _ = api.pretrain_anet(
                root, **common, **pre, anet=anet_arch, preprocess=preprocess,
                run_name="anet-pretrain")
            print(f"[reproduce] identity pre-training: {_short(metrics)}")
    anet_options = for_this_cpu(with_wild_crops(recipe["anet_finetune"], recipe, backgrounds),
                                common["local"] and not common.get("use_gpu"))
    if uses_scenes(recipe) and recipe["lnets"].get("init"):
        from faceattr_ray.bundle import load_bundle

        with timer.stage("lnets"):  # an earlier run's LNets, as they are
            given = load_bundle(recipe["lnets"]["init"])
            lnets = {"lnet_o": given.lnet_o, "lnet_s": given.lnet_s}
            print(f"[reproduce] LNets from {recipe['lnets']['init']}")
    elif uses_scenes(recipe):
        with timer.stage("lnets"):
            lnets, info = train_scene_lnets(root, backgrounds, recipe, seed, limit, held)
            print(f"[reproduce] LNets: {json.dumps(info)}")
    else:
        ln = dict(recipe["lnet_finetune"])
        headshoulder = ln.pop("headshoulder", "lnet_o")
        with timer.stage("lnet_finetune"):
            lnets, metrics, _ = api.finetune(wild, nets=("lnet_o", "lnet_s"),
                                             headshoulder=headshoulder, **common, **ln,
                                             lnet=lnet_arch, anet=anet_arch, run_name="lnets")
            print(f"[reproduce] LNets: {json.dumps({k: _short(v) for k, v in metrics.items()})}")
    if recipe.get("family", "anet") == "ssp-ssg":
        net, cfg = train_ssp_ssg(root, work, recipe, common, timer, seed, backgrounds)
        return {**lnets, "anet": net}, cfg
    members = int(recipe.get("anet_members", 1))
    if members < 1:
        raise RecipeError(f"anet_members must be >= 1, not {members}")
    if recipe.get("anet_init"):
        anet, given_cfg = given_anet(recipe["anet_init"], timer)
        return {**lnets, "anet": anet}, {**common, **given_cfg}
    trained = []
    with timer.stage("anet_finetune"):
        for k in range(members):  # member k from seed + k: the same job, other draws
            budget = anet_minutes(recipe, timer, members - k) if common["local"] else None
            anets, metrics, cfg = api.finetune(root, nets=("anet",), init=init,
                                               **{**common, "seed": seed + k}, **anet_options,
                                               anet=anet_arch, preprocess=preprocess,
                                               minutes=budget,
                                               run_name="anet" if k == 0 else f"anet-{k}")
            trained.append(anets["anet"])
            who = "ANet" if members == 1 else f"ANet member {k + 1} of {members}"
            print(f"[reproduce] {who}: {_short(metrics['anet'])}")
    return {**lnets, "anet": read_as_one(trained)}, cfg


def anet_minutes(recipe: dict, timer: Timer, members_left: int = 1) -> float | None:
    """The minutes the next ANet may train in-process: the recipe's budget less the time
    spent so far and ``minutes_after_anet`` (and ``minutes_face_head`` when the recipe asks for
    a face head), shared among the members still to train; None when the recipe sets no
    budget. Never below 0 (the run then trains one epoch)."""
    if recipe.get("minutes") is None:
        return None
    after = recipe.get("minutes_after_anet", 0)
    if face_head_recipe(recipe) is not None:
        after += recipe.get("minutes_face_head", 0)
    left = recipe["minutes"] - timer.elapsed() / 60 - after
    minutes = max(left, 0.0) / max(members_left, 1)
    print(f"[reproduce] ANet's budget: {minutes:.1f} min of the recipe's {recipe['minutes']}",
          flush=True)
    return minutes


def given_anet(paths: str | list[str], timer: Timer) -> tuple:
    """The attribute network of earlier runs' bundles, as they are (``anet_init``: one
    bundle, or several read as one ensemble), in place of training it; with the attributes it
    scores and the preprocessing it was trained with (the first bundle's)."""
    from faceattr_ray.bundle import load_bundle
    from faceattr_ray.models import read_as_one

    paths = [paths] if isinstance(paths, str) else list(paths)
    with timer.stage("anet_finetune"):
        bundles = [load_bundle(p) for p in paths]
        print(f"[reproduce] ANet from {', '.join(paths)}")
    for path, b in zip(paths[1:], bundles[1:], strict=True):
        if b.attributes != bundles[0].attributes:
            raise RecipeError(f"anet_init: {path} scores other attributes than "
                              f"{paths[0]}")
    return read_as_one([b.anet for b in bundles]), {"attributes": list(bundles[0].attributes),
                  "preprocess": bundles[0].config["preprocess"]}


FAMILIES = ("anet", "ssp-ssg")


def for_this_cpu(options: dict, on_cpu: bool, who: str = "ANet trains") -> dict:
    """Training options with their "native_bf16" block resolved: where the job trains in this
    process on this CPU (``on_cpu``) and the CPU computes bf16 in hardware, the block's options
    replace the others and its ``epoch_scale`` multiplies the epochs (a faster step buys more of
    them in the same minutes); dropped otherwise (a GPU has its own autocast; Ray Train's
    workers may run on other CPUs than this one)."""
    from faceattr_ray.runtime import cpu_has_native_bf16

    options = dict(options)
    native = dict(options.pop("native_bf16", None) or {})
    if native and on_cpu and cpu_has_native_bf16():
        scale = native.pop("epoch_scale", 1.0)
        if "epochs" in options:
            native["epochs"] = max(1, round(options["epochs"] * scale))
        options.update(native)
        print(f"[reproduce] this CPU computes bf16: {who} with {json.dumps(native)}")
    return options


def with_wild_crops(options: dict, recipe: dict, backgrounds: list[str] | None) -> dict:
    """An attribute network's training options with its "wild" crops resolved: given the
    training backgrounds when scenes are in use (whether the LNets are trained here or taken
    from ``lnets.init``), dropped otherwise or at share 0."""
    options = dict(options)
    wild = options.pop("wild", None)
    if uses_scenes(recipe) and wild and wild.get("share", 0) > 0:
        options["wild"] = {**wild, "backgrounds": list(backgrounds or [])}
    return options


def train_ssp_ssg(root: str, work: str, recipe: dict, common: dict, timer: Timer,
                  seed: int, backgrounds: list[str] | None = None) -> tuple:
    """The SSP+SSG family's stages in place of ANet's: the parsing network on part masks (a
    given parsing root, else ROOT's train faces with blob-placed masks or generated people
    drawn with theirs), then the whole network jointly on ROOT's attribute tags and those
    masks. Returns (network, its job config)."""
    from faceattr_ray.data.pseudo_parts import write_pseudo_root
    from faceattr_ray.data.synthetic import write_aligned
    from faceattr_ray.train import api

    sg = recipe["ssp_ssg"]
    preprocess = recipe.get("preprocess") or {}
    parts = sg.get("parsing_data")
    if not parts:
        with timer.stage("parsing_data"):
            parts = os.path.join(work, "parts")
            if sg.get("parts", "real") == "real":
                write_pseudo_root(root, parts, "train", common.get("limit"))
            elif sg["parts"] == "drawn":
                g = sg["generated"]
                write_aligned(parts, g["count"], g["identities"], seed=seed + 17, masks=True)
            else:
                raise RecipeError(f"ssp_ssg.parts: {sg['parts']!r}; use 'real' or 'drawn'")
    with timer.stage("parsing"):
        net, metrics, _ = api.train_parsing(parts, ssp_ssg=sg.get("arch"), **common,
                                            **sg["parsing"], preprocess=preprocess,
                                            run_name="parsing")
        print(f"[reproduce] parsing: {_short(metrics)}")
    joint = with_wild_crops(sg["finetune"], recipe, backgrounds)
    with timer.stage("ssp_ssg_finetune"):
        net, metrics, cfg = api.finetune_ssp_ssg(root, init=net, **common, **joint,
                                                 parsing_data=parts, preprocess=preprocess,
                                                 run_name="ssp-ssg")
        print(f"[reproduce] SSP+SSG: {_short(metrics)}")
    return net, cfg


def _short(m: dict) -> str:
    keys = ("epoch", "loss", "train_accuracy", "val_accuracy", "images_per_s")
    return ", ".join(f"{k} {m[k]:.4g}" for k in keys if isinstance(m.get(k), (int, float)))


def aligned_patch_features(bundle, paths: list[str], batch_size: int = 64,
                           flip: bool | None = None) -> np.ndarray:
    """ANet FC vectors of every patch, (N, P, F), of whole images taken as face crops
    (aligned crops): `Predictor` with the "full" localizer, as `evaluate` frames them (with
    ``flip``, or the bundle's flip setting, the mirrored crops' P patches follow: (N, 2P, F))."""
    from faceattr_ray.data.decode import load_image
    from faceattr_ray.predictor import Predictor

    predictor = Predictor(bundle, device="cpu", localizer="full", flip=flip)
    out = []
    for start in range(0, len(paths), batch_size):
        images = [load_image(p) for p in paths[start:start + batch_size]]
        crops = predictor.face_crops(images, predictor.localize(images))
        out.append(predictor.patch_features(crops).numpy())
    cfg = bundle.anet.config
    patches = cfg.grid ** 2 * (2 if predictor.flip else 1)
    return np.concatenate(out) if out else np.zeros((0, patches, cfg.feature_dim), np.float32)


def _holdout_codes(identity: np.ndarray | None, n: int, share: float, seed: int) -> np.ndarray:
    """TRAIN / VAL code per val image: ``share`` of the identities held out (VAL), so the
    images that choose C show people the SVMs never saw."""
    from faceattr_ray.heads import TRAIN, VAL

    groups = identity if identity is not None else np.arange(n)
    if len(np.unique(groups)) < 2:  # one person only (a tiny root): hold out images instead
        groups = np.arange(n)
    ids = np.unique(groups)
    rng = np.random.default_rng([seed, 9])
    held = rng.permutation(ids)[:max(1, int(round(share * len(ids))))]
    codes = np.where(np.isin(groups, held), VAL, TRAIN).astype(np.int8)
    if (codes == TRAIN).sum() == 0:
        raise DataError(f"{n} val images are too few to hold some out of the SVM fit")
    return codes


def head_features(bundle, root: str, recipe: dict, seed: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Patch features (N, P, F), labels (N, A) in the bundle's attribute order, split codes
    and identities of the images the heads are fit on: val (TRAIN: fit; VAL: ``holdout`` of its
    identities, held out to choose C, head and operating points; with heads.crossfit every val
    image is VAL, cross-fit by identity) and, with fit_splits, train (TRAIN). With heads.flip
    the mirrored crops' patches follow (N, 2P, F). Identities are prefixed by split (a root's
    splits may reuse numbers); an image without one is its own."""
    from faceattr_ray.data.celeba import read_celeba
    from faceattr_ray.heads import TRAIN, VAL

    h = recipe["heads"]
    if "val" not in h["fit_splits"]:
        raise RecipeError("heads.fit_splits must include 'val' (C is chosen there)")
    names = list(bundle.attributes)
    xs, ys, codes, groups = [], [], [], []
    for split in h["fit_splits"]:
        data = read_celeba(root, split=split)
        cols = [list(data.names).index(n) for n in names]
        x = aligned_patch_features(bundle, list(data.paths), flip=bool(h.get("flip", False)))
        xs.append(x)
        ys.append(data.labels[:, cols])
        if split != "val":
            codes.append(np.full(len(x), TRAIN, np.int8))
        elif h.get("crossfit"):
            codes.append(np.full(len(x), VAL, np.int8))
        else:
            codes.append(_holdout_codes(data.identity, len(x), h["holdout"], seed))
        own = np.arange(len(x)) if data.identity is None else np.asarray(data.identity)
        groups.append(np.array([f"{split}:{g}" for g in own]))
    return (np.concatenate(xs), np.concatenate(ys), np.concatenate(codes),
            np.concatenate(groups))


def fit_attribute_heads(bundle, root: str, recipe: dict, seed: int) -> tuple:
    """Linear heads from val features (+ train with fit_splits). Per attribute: an SVM, C
    chosen on held-out val identities, or ANet's fine-tuned tag layer where it is better on
    those same images ("best"); operating points chosen on the same held-out images.
    Returns (LinearHeads, info for the results, heads.points.OperatingPoints)."""
    x, y, split, groups = head_features(bundle, root, recipe, seed)
    return heads_from_features(bundle, x, y, split, recipe["heads"], seed, groups)


def crossfit_folds(split: np.ndarray, groups: np.ndarray | None, k: int, seed: int
                   ) -> np.ndarray:
    """Folds for `heads.crossfit.crossfit_heads`: VAL images dealt into ``k`` folds by group
    (identity; None: each image its own), TRAIN images fit in every fold (-1), TEST left out
    (-2)."""
    from faceattr_ray.heads import TRAIN, VAL
    from faceattr_ray.heads.crossfit import identity_folds

    folds = np.where(split == TRAIN, -1, -2).astype(np.int64)
    val = split == VAL
    own = np.arange(len(split)) if groups is None else np.asarray(groups)
    folds[val] = identity_folds(own[val], k, seed)
    return folds


def heads_from_features(bundle, x: np.ndarray, y: np.ndarray, split: np.ndarray, h: dict,
                        seed: int, groups: np.ndarray | None = None) -> tuple:
    """`fit_attribute_heads` on given features (N, P, F), labels and split codes (TRAIN fit,
    VAL held out to choose C, head and points; TEST rows are left out of everything). With
    ``h["crossfit"]`` = K > 0 the VAL images are cross-fit in K folds by ``groups`` (their
    identities) instead, and every one of them has an out-of-fold score to choose on."""
    from faceattr_ray.heads import TRAIN, VAL, LinearHeads, fit_heads, linear_scores
    from faceattr_ray.heads.crossfit import crossfit_heads
    from faceattr_ray.heads.points import choose_points
    from faceattr_ray.metrics import attribute_metrics

    names = list(bundle.attributes)
    if not h["patches"]:
        x = x.mean(1)
    k = int(h.get("crossfit") or 0)
    with warnings.catch_warnings():
        # An attribute with one class in the fit gets a constant head; info counts say so.
        warnings.filterwarnings("ignore", message=".*constant head")
        if k:
            final = h.get("crossfit_final", "refit")
            crossed = crossfit_heads(x, y, names, crossfit_folds(split, groups, k, seed),
                                     C=h["C"], class_weight=h["class_weight"],
                                     solver=h["solver"], refit=final == "refit")
            svm = crossed.heads(final)
        else:
            svm = fit_heads(x, y, names, C=h["C"], class_weight=h["class_weight"], split=split,
                            solver=h["solver"], seed=seed, refit=h.get("refit", True))
    # ANet's own tag layer (what the bundle scores with before it has SVM heads), on the same
    # held-out images (it never saw val).
    anet_w, anet_b, _ = bundle.head_arrays()
    held = split == VAL
    anet_scores = linear_scores(x[held], anet_w, anet_b)
    anet_val = attribute_metrics(y[held], anet_scores, names)["attributes"]
    svm_val = svm.info["validation"]["values"] if svm.info.get("validation") else None
    # SVM or ANet's layer per attribute, on the held-out images: by the metric C was chosen on
    # (balanced accuracy with balanced weights), or by AP (threshold-free: the operating points
    # set the threshold afterwards)
    key = h.get("choose_by") or ("balanced_accuracy" if h["class_weight"] == "balanced"
                                 else "accuracy")
    if key == "average_precision" and svm.held_out is not None:
        svm_val = [attribute_metrics(svm.held_out[1], svm.held_out[0], names)["attributes"][n][
            key] or 0.0 for n in names]
    elif svm_val is not None and svm.info["validation"]["metric"] != key:
        raise RecipeError(f"heads.choose_by {key!r} needs C chosen on it too")
    choice = []
    for j, n in enumerate(names):
        a = anet_val[n][key] or 0.0
        s = svm_val[j] if svm_val is not None else -1.0
        pick = h["choose"] if h["choose"] in ("svm", "anet") else ("svm" if s >= a else "anet")
        choice.append(pick)
    use_anet = np.array([c == "anet" for c in choice])
    weight = np.where(use_anet[:, None], anet_w, svm.weight).astype(np.float32)
    bias = np.where(use_anet, anet_b, svm.bias).astype(np.float32)
    mix = None
    if h["choose"] == "blend":
        if svm.held_out is None:
            raise RecipeError("heads.choose 'blend' needs held-out SVM scores (crossfit or "
                             "holdout, and more than one C)")
        weight, bias, mix = blend_heads(anet_w, anet_b, anet_scores, svm, y[held], names,
                                        h.get("blend_grid", BLEND_GRID), key)
        choice = ["blend" if 0 < m < 1 else "svm" if m == 1 else "anet" for m in mix]
    heads = LinearHeads(names, weight, bias, info=svm.info)
    # Operating points on the held-out images, scored by heads that never saw them: the SVMs
    # before their refit (the refit keeps each C), ANet's layer as it is.
    if svm.held_out is not None:
        # the solver returns the held-out rows in order (both solvers keep it); checked, as
        # a reordering would pair scores with other faces' labels
        if not np.array_equal(svm.held_out[1], y[held].astype(np.float32), equal_nan=True):
            raise RuntimeError("held-out scores came back in another order than the images")
        held_scores = np.where(use_anet[None, :], anet_scores, svm.held_out[0])
        if mix is not None:
            held_scores = mixed_scores(anet_scores, svm.held_out[0], mix)
        where = "val identities held out of the SVM fit (scored before the refit)"
        if k:
            folds = crossed.info["crossfit"]["folds"]
            where = (f"every val image, held out of one of {folds} cross-fits by identity "
                     "(each image scored by the SVMs that never saw its identity)")
    else:  # one C: no choice was made, so no images were held out; in-sample, said so
        held_scores = linear_scores(x[held] if held.any() else x, weight, bias)
        where = "the SVM's own fit images (no held-out part: one C value)"
    points = choose_points(held_scores, y[held] if held.any() else y, names,
                           precisions=h.get("precisions", (0.8, 0.9, 0.95)),
                           method=h.get("points", "empirical"),
                           balanced_platt_below=h.get("balanced_platt_below", 0),
                           info={"chosen_on": where, "seed": seed,
                                 "holdout": None if k else h.get("holdout"),
                                 "crossfit": k, **({"crossfit_final": final} if k else {})})
    fit_rows = (split == TRAIN) | (held if k else False)
    info = {**svm.info, "choice": dict(zip(names, choice, strict=True)),
            **({"blend": dict(zip(names, map(float, mix), strict=True))} if mix is not None
               else {}),
            "val_images_fit": int(fit_rows.sum()), "val_images_held": int(held.sum()),
            "held_out_metric": key,
            "held_out_accuracy": {  # of the metric "held_out_metric" (the key is historical)
                "svm": None if svm_val is None else float(np.mean(svm_val)),
                "anet": float(np.mean([anet_val[n][key] or 0.0 for n in names])),
                "chosen": float(np.mean([
                    (svm_val[j] if c == "svm" else anet_val[n][key] or 0.0)
                    for j, (n, c) in enumerate(zip(names, choice, strict=True))]))
                if svm_val is not None else None}}
    return heads, info, points


BLEND_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


def _spread(scores: np.ndarray) -> np.ndarray:
    return scores.std(0) + 1e-6


def mixed_scores(anet: np.ndarray, svm: np.ndarray, mix: np.ndarray) -> np.ndarray:
    """(1 - m) anet / sd(anet) + m svm / sd(svm) per attribute: each score in units of its
    own spread over the same images, so the mix weighs rankings, not scales."""
    return (1 - mix) * anet / _spread(anet) + mix * svm / _spread(svm)


def blend_heads(anet_w: np.ndarray, anet_b: np.ndarray, anet_scores: np.ndarray, svm,
                y_held: np.ndarray, names: list[str], grid, key: str
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per attribute, the mix of ANet's tag layer and the SVM (`mixed_scores`) with the best
    held-out ``key`` over ``grid`` (0: the tag layer, 1: the SVM). Both heads are linear in
    the same features, so the mix is one linear head: returns its (A, F) weight, (A,) bias
    and the chosen mix (A,). Spreads are the held-out scores' (the SVM's out-of-fold ones)."""
    from faceattr_ray.metrics import attribute_metrics

    held_svm = svm.held_out[0]
    figures = []
    for m in grid:
        per = attribute_metrics(y_held, mixed_scores(anet_scores, held_svm, np.full(len(names), m)),
                                names)["attributes"]
        figures.append([per[n][key] or 0.0 for n in names])
    mix = np.asarray(grid, np.float64)[np.argmax(np.array(figures), axis=0)]
    sa, ss = _spread(anet_scores), _spread(held_svm)
    weight = (1 - mix)[:, None] * anet_w / sa[:, None] + mix[:, None] * svm.weight / ss[:, None]
    bias = (1 - mix) * anet_b / sa + mix * svm.bias / ss
    return weight.astype(np.float32), bias.astype(np.float32), mix


def store_points(bundle, points, h: dict) -> None:
    """Put the operating points and the flip setting the heads were fit with into the bundle's
    config (saved with it); its other "predict" settings stay."""
    predict = {**(bundle.config.get("predict") or {}), "flip": bool(h.get("flip", False))}
    bundle.config = {**bundle.config, "predict": predict,
                     "operating_points": points.to_config()}


def calibrate_points(model: str, root: str, recipe: dict, seed: int = 0,
                     keep_heads: bool = False, out: str | None = None) -> dict:
    """Operating points for an existing bundle, no network retrained: the heads stage of
    `reproduce` again on ROOT's val split (same identity split rule or cross-fit folds, same
    seed), which refits the SVM heads (seconds to minutes) so the points are chosen on
    identities they never saw. With
    ``keep_heads`` the bundle's heads stay and score the held-out identities; if those heads
    were fit on all of val (as `reproduce` fits them), the points are in-sample, and the
    config says so. Writes OUT (default: the bundle in place); returns the points' config."""
    from faceattr_ray.bundle import load_bundle, write_heads_bundle
    from faceattr_ray.heads import VAL, LinearHeads, linear_scores
    from faceattr_ray.heads.points import choose_points

    bundle = load_bundle(model)
    h = recipe["heads"]
    x, y, split, groups = head_features(bundle, root, recipe, seed)
    if keep_heads:
        weight, bias, _ = bundle.head_arrays()
        heads = LinearHeads(list(bundle.attributes), weight, bias)
        held = split == VAL
        xh = x[held] if h["patches"] else x[held].mean(1)
        points = choose_points(linear_scores(xh, weight, bias), y[held], heads.names,
                               precisions=h.get("precisions", (0.8, 0.9, 0.95)),
                               method=h.get("points", "empirical"),
                               balanced_platt_below=h.get("balanced_platt_below", 0),
                               info={"chosen_on": "val identities held out by the reproduce "
                                     "rule, scored by the bundle's own heads (in-sample if "
                                     "they were fit on all of val)", "seed": seed,
                                     "holdout": h["holdout"]})
        info = dict(bundle.config.get("heads_training") or {})
    else:
        heads, info, points = heads_from_features(bundle, x, y, split, h, seed, groups)
        info = {"protocol": "calibrate-points", **info}
    store_points(bundle, points, h)
    write_heads_bundle(out or model, heads, bundle, info)
    return points.to_config()


def calibration_images(wild: str, backgrounds: list[str], recipe: dict
                       ) -> tuple[list[str], list[str]]:
    """The face images (WILD's val scenes) and face-free images the threshold is set on."""
    from faceattr_ray.data.celeba import read_celeba

    c = recipe["calibrate"]
    faces = list(read_celeba(wild, split="val").paths)[:c["faces"]]
    if not faces:  # a tiny root may draw no val scene: fall back to train scenes
        faces = list(read_celeba(wild, split="train").paths)[:c["faces"]]
    return faces, backgrounds[:c["backgrounds"]]


def calibrate(model: str, wild: str, backgrounds: list[str], recipe: dict, plot: str) -> dict:
    """Threshold from the WILD val split's faces vs face-free images; stored in the bundle."""
    from faceattr_ray.bundle import load_bundle
    from faceattr_ray.calibrate import calibrate_bundle

    faces, bgs = calibration_images(wild, backgrounds, recipe)
    return calibrate_bundle(load_bundle(model), faces, bgs, plot,
                            title="Max window score: WILD val faces vs backgrounds")


def localization_check(model: str, wild: str, count: int) -> dict:
    """On WILD's test scenes: share whose dominant face is found at IoU >= 0.5 (in the results only)."""
    from faceattr_ray.bundle import load_bundle
    from faceattr_ray.crops import box_iou
    from faceattr_ray.data.celeba import read_celeba
    from faceattr_ray.data.decode import load_image
    from faceattr_ray.localizers import LNetLocalizer

    data = read_celeba(wild, split="test")
    n = min(count, len(data.paths))
    if n == 0 or data.bbox is None:
        return {"images": 0}
    localizer = LNetLocalizer.from_bundle(load_bundle(model))
    hits, found, ious = 0, 0, []
    for start in range(0, n, 16):
        images = [load_image(p) for p in data.paths[start:min(n, start + 16)]]
        for k, dets in enumerate(localizer.localize(images)):
            if not dets:
                continue
            found += 1
            iou = float(box_iou(np.array([dets[0].box]), data.bbox[start + k][None])[0, 0])
            ious.append(iou)
            hits += iou >= 0.5
    return {"images": n, "face_found": found / n, "dominant_face_iou50": hits / n,
            "mean_iou_when_found": float(np.mean(ious)) if ious else None}


# --- face-tag LNets: scenes made on the fly ---------------------------------------------------


def uses_scenes(recipe: dict) -> bool:
    """Face-tag LNets train on scenes made on the fly; AlexNet-style ones on a WILD folder."""
    return bool(recipe["lnet_arch"].get("face_tag"))


def scene_backgrounds(backgrounds: list[str] | None, work: str, recipe: dict,
                      seed: int) -> tuple[list[str], list[str], int]:
    """(train, held-apart) background photos, and how many given files were unreadable.
    Without real photos, generated clutter stands in, with a warning: LNets trained on it learn
    "real texture = face" and do not localize real photos."""
    from faceattr_ray.data.scenes import readable_backgrounds, split_backgrounds
    from faceattr_ray.data.synthetic import write_backgrounds

    skipped = 0
    if backgrounds:
        good, bad = readable_backgrounds(backgrounds)
        skipped = len(bad)
        if bad:
            print(f"[reproduce] backgrounds: {len(bad)} unreadable files skipped "
                  f"(first: {bad[0]})")
    else:
        warnings.warn("reproduce: no --backgrounds given; generated backgrounds stand in, and "
                      "LNets trained on them will not localize faces in real photos", stacklevel=2)
        good = write_backgrounds(os.path.join(work, "backgrounds"), 40, seed=seed, size=(320, 240))
    train, val = split_backgrounds(good, recipe["lnets"]["background_val_share"])
    print(f"[reproduce] backgrounds: {len(train)} for training, {len(val)} held apart")
    return train, val or train, skipped


def split_faces(root: str, split: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(N, h, w, 3) aligned crops and (N, 40) 0/1 labels of one split."""
    from faceattr_ray.data.celeba import read_celeba
    from faceattr_ray.train.lnet_scenes import load_faces

    data = read_celeba(root, split=split)
    n = len(data.paths) if limit is None else min(limit, len(data.paths))
    if n == 0:
        raise DataError(f"{root}: no {split} images to make scenes from")
    return load_faces(list(data.paths[:n])), data.labels[:n]


def validation_scenes(root: str, split: str, backgrounds: list[str], recipe: dict, count: int,
                      seed: int, context_share: float = 0.0,
                      max_hidden: float | None = None, grey_share: float | None = None) -> list:
    """Scenes of ``split``'s faces on the given (held-apart) backgrounds, photo-sized;
    ``context_share`` of the faces pasted whole (hair, neck, their own surroundings) under a
    feathered rectangle, the rest under the soft ellipse; ``max_hidden`` and ``grey_share`` as
    in `SceneMaker`."""
    from faceattr_ray.data.scenes import SceneMaker, load_background

    sc = recipe["scenes"]
    faces, labels = split_faces(root, split)
    maker = SceneMaker(faces, labels, [load_background(p, 1280) for p in backgrounds],
                       size=tuple(sc.get("size", (500, 375))),
                       face_px=tuple(sc.get("face_px", (30, 120))),
                       max_faces=sc.get("max_faces", 4), empty_share=sc.get("empty_share", 0.15),
                       max_rotation=15.0, degrade=0.5, context_share=context_share,
                       max_hidden=max_hidden, grey_share=grey_share)
    rng = np.random.default_rng([seed, 31, {"train": 0, "val": 1, "test": 2}[split]])
    return [maker(rng) for _ in range(count)]


def train_scene_lnets(root: str, backgrounds: list[str], recipe: dict, seed: int,
                      limit: int | None, held: list[str] | None = None) -> tuple[dict, dict]:
    """LNet_o and LNet_s trained on train faces x train backgrounds (train/lnet_scenes.py):
    "o_draws" LNet_o (seeds seed, seed + 1, ...), each with "s_draws" LNet_s (`train_lnets`).
    With more than one pair, the pair that finds the most faces in the calibration scenes (val
    faces x ``held`` backgrounds) at the calibration's false-detection budget is kept: LNet_s
    swings from run to run (calibration recall 0.00-0.83), and with it how good LNet_o's
    proposals and hard negatives were (README)."""
    from faceattr_ray.data.scenes import load_background
    from faceattr_ray.evaluation.localization_metrics import choose_threshold
    from faceattr_ray.localizers.pyramid import PyramidLNetLocalizer
    from faceattr_ray.models import LNetConfig
    from faceattr_ray.train.lnet_scenes import pyramid_reading, train_lnets

    faces, labels = split_faces(root, "train", limit)
    config = LNetConfig.from_dict({**recipe["lnet_arch"], "num_attributes": labels.shape[1]})
    options = for_this_cpu(recipe["lnets"], True, "the LNets train")
    images = [load_background(p) for p in backgrounds]
    pairs, info = [], {}
    for j in range(int(options.get("o_draws", 1))):
        lnet_o, draws, stage = train_lnets(faces, labels, images, config, options, seed + j,
                                           log=lambda m: print(f"[reproduce] {m}", flush=True))
        pairs += [(lnet_o, lnet_s) for lnet_s in draws]
        for key, value in stage.items():  # the seconds add up; the rest is the first stage's
            info[key] = round(info.get(key, 0) + value, 1) if key.endswith("_seconds") \
                else info.get(key, value)
    if len(pairs) > 1 and held:
        images, boxes = calibration_scenes(root, held, recipe, seed)
        max_false = recipe["scenes"].get("max_false_per_image", 0.25)
        recalls = []
        for lnet_o, lnet_s in pairs:  # read as `calibrate_scene_localizer` reads the bundle's
            localizer = PyramidLNetLocalizer(lnet_o, lnet_s, None,  # (flip: a reading choice)
                                             **pyramid_reading(recipe["lnets"], flip=False))
            _, found = calibration_detections(localizer, images, boxes)
            recalls.append(choose_threshold(localizer, images, boxes, max_false,
                                            detections=found)["recall"])
        # in order: LNet_o draw 0's LNet_s draws, then LNet_o draw 1's, ...
        info["s_draws_val_recall"] = [round(r, 4) for r in recalls]
        pairs = [pairs[int(np.argmax(recalls))]]
    return {"lnet_o": pairs[0][0], "lnet_s": pairs[0][1]}, info


def calibration_scenes(root: str, backgrounds: list[str], recipe: dict,
                       seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The scenes of val faces x held-apart backgrounds that set a localizer's box geometry
    and threshold (images, true boxes)."""
    sc = recipe["scenes"]
    scenes = validation_scenes(root, "val", backgrounds, recipe, sc["count"], seed,
                               sc.get("calibration_context_share", 0.0))
    return [s.image for s in scenes], [s.boxes for s in scenes]


def calibration_detections(localizer, images: list[np.ndarray],
                           boxes: list[np.ndarray]) -> tuple[dict, list]:
    """A pyramid localizer's box geometry, set on it from calibration scenes, and then what it
    finds there with no threshold (the detections its threshold is chosen on)."""
    from faceattr_ray.evaluation.localization_metrics import calibrate_geometry, every_detection

    geometry = calibrate_geometry(localizer, images, boxes)
    localizer.geometry = geometry["geometry"]
    return geometry, every_detection(localizer, images)


def fit_scene_face_head(bundle, localizer, root: str, backgrounds: list[str], recipe: dict,
                        seed: int) -> dict | None:
    """The bundle's face head (`heads.face`), fit on what its LNets find and ANet frames in
    generated scenes of train faces on the training ``backgrounds``: finds covering a pasted
    face are faces, finds on no pasted face are not. None (with a note) when those scenes give
    only one kind, e.g. a smoke test's networks."""
    from faceattr_ray.crops import box_iou
    from faceattr_ray.evaluation.localization_metrics import every_detection
    from faceattr_ray.heads.face import face_labels, fit_face_head
    from faceattr_ray.predictor import Predictor, bundle_frame_zooms, bundle_framer

    h = face_head_recipe(recipe)
    # grey as often as the LNets' training scenes, so grey faces are among the positives (a
    # grey copy of the astronaut's face reads about half her colour score; README, results)
    scenes = validation_scenes(root, "train", backgrounds, recipe, h["scenes"], seed,
                               recipe["scenes"].get("calibration_context_share", 0.0),
                               grey_share=recipe["lnets"].get("grey_share"))
    images = [s.image for s in scenes]
    describe = Predictor(bundle, parts="describe")
    framer = bundle_framer(bundle, localizer, describe, bundle_frame_zooms(bundle), floor=False)
    finds = every_detection(localizer, images)
    if h.get("min_score") is not None:
        finds = [[d for d in one if d.score >= h["min_score"]] for one in finds]
    crops, best = [], []
    for image, one, scene in zip(images, framer.frame_scored(images, finds), scenes,
                                 strict=True):
        for d in framer.select(one, None):
            crops.append(describe.preprocess.face_crop(image, d.box, describe.crop_side))
            ious = box_iou(np.array([d.box]), scene.boxes)
            best.append(float(ious.max()) if ious.size else 0.0)
    labels = face_labels(np.array(best))
    if (labels == 1).sum() == 0 or (labels == 0).sum() == 0:
        print(f"[reproduce] face head not fit: {int((labels == 1).sum())} faces and "
              f"{int((labels == 0).sum())} others found in {len(scenes)} train scenes; the floor "
              "reads ANet's attribute confidence")
        return None
    features = describe.mean_features(np.stack(crops))
    return {**fit_face_head(features, labels, h["C"]), "scenes": len(scenes)}


def calibrate_scene_localizer(model: str, root: str, backgrounds: list[str], recipe: dict,
                              seed: int, train_backgrounds: list[str] | None = None,
                              reading: dict | None = None) -> dict:
    """Box geometry and face threshold of the bundle's pyramid localizer, set on scenes of val
    faces x held-apart backgrounds, and stored in the bundle; with RECIPE's "frame_face_head"
    and ``train_backgrounds``, first the face head its confidence floor reads, fit on scenes of
    train faces x those backgrounds. ``reading``: `PyramidLNetLocalizer` options over the
    bundle's own (None: as the recipe trains LNets to be read, `pyramid_reading`)."""
    from faceattr_ray.bundle import load_bundle, save_bundle
    from faceattr_ray.evaluation.localization_metrics import (
        choose_threshold,
        choose_threshold_and_floor,
        confidence_floor,
        scene_scores,
    )
    from faceattr_ray.localizers import LNetLocalizer
    from faceattr_ray.predictor import bundle_frame_zooms, framed_localizer
    from faceattr_ray.train.lnet_scenes import pyramid_reading

    whole = recipe["scenes"].get("calibration_context_share", 0.0)
    images, boxes = calibration_scenes(root, backgrounds, recipe, seed)
    bundle = load_bundle(model)
    if reading is None:
        reading = pyramid_reading(recipe["lnets"])
    localizer = LNetLocalizer.from_bundle(bundle, threshold=None, **reading)
    geometry, found = calibration_detections(localizer, images, boxes)
    quantile = recipe.get("frame_confidence_quantile")
    predict = dict(bundle.config.get("predict") or {})
    predict.pop("face_head", None)
    bundle.config["predict"] = predict
    head = None
    wanted = face_head_recipe(recipe)
    if wanted and train_backgrounds and quantile is not None and bundle_frame_zooms(bundle):
        head = fit_scene_face_head(bundle, localizer, root, train_backgrounds, recipe, seed)
        if head is not None:
            bundle.config["predict"]["face_head"] = head
    # the threshold is set where annotate's boxes are: framed by ANet when the bundle frames
    # (duplicates dropped); with a face head, together with the confidence floor, else before
    # it, the floor then set on the faces found at that threshold
    framer = framed_localizer(bundle, localizer, floor=False)
    scored = None if framer is localizer else framer.frame_scored(images, found)
    if head is not None:
        chosen = choose_threshold_and_floor(scored, boxes, framer.select,
                                            wanted["max_false_per_image"], wanted["quantile"])
        floor = chosen["confidence_floor"]
        floor["reads"] = "face head"
        floor["recall"], floor["false_per_image"] = chosen["recall"], chosen["false_per_image"]
        bundle.config["predict"]["frame_min_confidence"] = floor["min_confidence"]
    else:
        framed = found if scored is None else [framer.select(one, None) for one in scored]
        chosen = choose_threshold(localizer, images, boxes,
                                  recipe["scenes"].get("max_false_per_image", 0.25),
                                  detections=framed)
        if scored is not None and quantile is not None:
            floor = confidence_floor(scored, boxes, chosen["threshold"], quantile)
            gated = [framer.select(one, floor["min_confidence"]) for one in scored]
            after = scene_scores(gated, boxes, chosen["threshold"])
            chosen["confidence_floor"] = {**floor, "quantile": quantile,
                                          "reads": "attribute confidence",
                                          "recall": after["recall_iou50"],
                                          "false_per_image": after["false_per_image"]}
            bundle.config["predict"]["frame_min_confidence"] = floor["min_confidence"]
    options = localizer.options()
    options.pop("mean"), options.pop("std")  # the bundle's preprocessing holds these
    bundle.threshold = chosen["threshold"]
    bundle.config = {**bundle.config, "localizer": {
        **(bundle.config.get("localizer") or {}), "options": options,
        "calibration": {**chosen, "paired_faces": geometry["paired"],
                        "scenes": "val faces x held-apart backgrounds",
                        "whole_faces_share": whole}}}
    save_bundle(model, bundle)
    return {**chosen, "geometry": geometry["geometry"], "paired_faces": geometry["paired"]}


def scene_localization_check(model: str, root: str, backgrounds: list[str], recipe: dict,
                             seed: int) -> dict:
    """On scenes of test faces x held-apart backgrounds: recall at IoU 0.5 and false detections
    per image at the bundle's threshold, and TPR at 0.1 and 1 false positives per image; boxes
    framed by ANet when the bundle frames (as `annotate` gives them)."""
    from faceattr_ray.bundle import load_bundle
    from faceattr_ray.evaluation.localization_metrics import scene_scores
    from faceattr_ray.localizers import LNetLocalizer
    from faceattr_ray.predictor import framed_localizer

    sc = recipe["scenes"]
    scenes = validation_scenes(root, "test", backgrounds, recipe, sc["test_count"], seed,
                               max_hidden=sc.get("test_max_hidden"))
    bundle = load_bundle(model)
    localizer = framed_localizer(bundle, LNetLocalizer.from_bundle(bundle, threshold=None,
                                                                   all_faces=True))
    detections = localizer.localize([s.image for s in scenes])
    return {"scenes": len(scenes), "faces": int(sum(len(s.boxes) for s in scenes)),
            **scene_scores(detections, [s.boxes for s in scenes], bundle.threshold)}



# --- the whole protocol -----------------------------------------------------------------------


def build_model(root: str, out: str, recipe: dict, backgrounds: list[str] | None = None,
                seed: int = 0, limit: int | None = None, address: str | None = None,
                timer: Timer | None = None) -> dict:
    """Everything up to a calibrated bundle in OUT/model (no test split used). Returns facts
    for the results: backgrounds, heads and calibration info."""
    from faceattr_ray.bundle import load_bundle, write_heads_bundle
    from faceattr_ray.train import api

    timer = timer or Timer()
    work, model, results = (os.path.join(out, d) for d in ("work", "model", "report"))
    os.makedirs(results, exist_ok=True)
    scenes = uses_scenes(recipe)
    wild = bg_train = None
    with timer.stage("data"):
        if scenes:
            bg_train, bgs, skipped = scene_backgrounds(backgrounds, work, recipe, seed)
        else:
            wild, bgs = make_wild(root, work, recipe, backgrounds, seed)
            skipped = 0
    nets, cfg = train_networks(root, wild, work, recipe, timer, seed, limit, address, bg_train,
                               bgs)
    with timer.stage("heads"):
        api.save_job_bundle(model, nets, dict(cfg, job="reproduce"))
        bundle = load_bundle(model)
        heads, heads_info, points = fit_attribute_heads(bundle, root, recipe, seed)
        store_points(bundle, points, recipe["heads"])
        for key in ("frame_zooms", "frame_shifts_y", "frame_shifts_x"):
            bundle.config["predict"][key] = list(recipe.get(key) or [])
        write_heads_bundle(model, heads, bundle, {"protocol": "reproduce", **heads_info})
        h = heads_info["held_out_accuracy"]
        print(f"[reproduce] heads on held-out val identities "
              f"({heads_info['held_out_metric']}): chosen {percent(h['chosen'])}, "
              f"SVM {percent(h['svm'])}, ANet tag layer {percent(h['anet'])}")
    with timer.stage("calibrate"):
        if scenes:
            calibration = calibrate_scene_localizer(model, root, bgs, recipe, seed,
                                                    train_backgrounds=bg_train)
            print(f"[reproduce] localizer on val scenes: threshold {calibration['threshold']:.4g}, "
                  f"recall {calibration['recall']:.3f} at IoU 0.5, "
                  f"{calibration['false_per_image']:.2f} false detections per image")
            floor = calibration.get("confidence_floor")
            if floor and floor["min_confidence"] is not None:
                print(f"[reproduce] framed boxes read below {floor['min_confidence']:.3g} on "
                      f"the {floor.get('reads', 'attribute confidence')} dropped (quantile {floor['quantile']} of {floor['faces']} found faces; "
                      f"drops {floor['others_dropped']:.0%} of the other detections there): "
                      f"recall {floor['recall']:.3f}, {floor['false_per_image']:.2f} false "
                      f"detections per image")
        else:
            calibration = calibrate(model, wild, bgs, recipe,
                                    os.path.join(results, "threshold.png"))
            print(f"[reproduce] threshold {calibration['threshold']:.4g}: face recall "
                  f"{calibration['face_recall']:.3f}, background rejection "
                  f"{calibration['background_rejection']:.3f}")
    return {"model": model, "wild": wild, "held_backgrounds": bgs, "scenes": scenes,
            "calibration_backgrounds": len(bgs), "unreadable_backgrounds": skipped,
            "trainer": "local" if cfg["local"] else "ray", "heads": heads_info,
            "calibration": calibration, "timer": timer}


def reproduce(root: str, out: str, recipe: dict, backgrounds: list[str] | None = None,
              seed: int = 0, limit: int | None = None, address: str | None = None) -> dict:
    """The protocol end to end; writes OUT/model and its results to OUT/report (report.json,
    table.md, plots); returns the results."""
    from faceattr_ray.attributes import paper_reference
    from faceattr_ray.evaluation.evaluate import evaluate_celeba
    from faceattr_ray.metrics import format_table

    start = time.perf_counter()
    built = build_model(root, out, recipe, backgrounds, seed, limit, address)
    timer: Timer = built.pop("timer")
    with timer.stage("evaluate"):
        metrics = evaluate_celeba(built["model"], root, split="test", localizer="full")
        if built["scenes"]:
            localization = scene_localization_check(built["model"], root,
                                                    built["held_backgrounds"], recipe, seed)
        else:
            localization = localization_check(built["model"], built["wild"],
                                              recipe["localization_check"])
    reference = paper_reference(metrics["attributes"])
    results = {
        "celeba_root": os.path.abspath(root), "model": built["model"], "seed": seed,
        "family": recipe.get("family", "anet"),
        "limit": limit, "recipe": recipe,
        "test": metrics, "mean_accuracy": metrics["mean"]["accuracy"],
        "majority_baseline": metrics["mean"]["majority_baseline"],
        "paper_mean_accuracy": float(np.mean(list(reference.values()))) if reference else None,
        "heads": built["heads"], "calibration": built["calibration"],
        "localization_test": localization, "trainer": built["trainer"],
        "calibration_backgrounds": built["calibration_backgrounds"],
        "stage_seconds": timer.seconds, "total_seconds": round(time.perf_counter() - start, 1),
        "machine": _machine(),
    }
    write_results(os.path.join(out, "report"), results, reference)
    print(format_table(metrics, reference=reference))
    return results


def _machine() -> dict:
    import platform

    import torch

    return {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def percent(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


# --- the results ------------------------------------------------------------------------------


def markdown_table(metrics: dict, reference: dict[str, float]) -> str:
    """Table 1 of the paper, our way: per attribute ours, the majority baseline, the paper."""
    lines = ["| attribute | ours | majority | paper |", "| --- | ---: | ---: | ---: |"]
    for name, m in metrics["attributes"].items():
        lines.append(f"| {name} | {_cell(m['accuracy'])} | {_cell(m['majority_baseline'])} | "
                     f"{_cell(reference.get(name))} |")
    mean = metrics["mean"]
    paper = np.mean([reference[n] for n in metrics["attributes"] if n in reference]) \
        if reference else None
    lines.append(f"| **mean** | **{_cell(mean['accuracy'])}** | {_cell(mean['majority_baseline'])}"
                 f" | {_cell(paper)} |")
    return "\n".join(lines)


def _cell(v) -> str:
    return "-" if v is None else f"{100 * float(v):.1f}"


def plot_accuracy(metrics: dict, reference: dict[str, float], path: str) -> None:
    """Per-attribute accuracy: ours, the majority baseline and the paper, side by side."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(metrics["attributes"])
    ours = [100 * (metrics["attributes"][n]["accuracy"] or 0) for n in names]
    majority = [100 * (metrics["attributes"][n]["majority_baseline"] or 0) for n in names]
    paper = [100 * reference.get(n, np.nan) for n in names]
    fig = Figure(figsize=(12, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(names))
    ax.bar(x - 0.27, ours, 0.27, label=f"ours ({_cell(metrics['mean']['accuracy'])})")
    ax.bar(x, majority, 0.27, label=f"majority ({_cell(metrics['mean']['majority_baseline'])})",
           color="lightgray")
    ax.bar(x + 0.27, paper, 0.27, label="paper (LNets+ANet)", color="tab:orange")
    ax.set_xticks(x, names, rotation=80, fontsize=7)
    ax.set_ylim(40, 100)
    ax.set_ylabel("test accuracy (%)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def write_results(folder: str, results: dict, reference: dict[str, float]) -> None:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "report.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    t = results["stage_seconds"]
    with open(os.path.join(folder, "table.md"), "w") as f:
        f.write(f"# reproduce ({results.get('family', 'anet')}): {results['celeba_root']}\n\n"
                f"Test split: {results['test']['images']} images. Mean accuracy "
                f"**{_cell(results['mean_accuracy'])}%** (majority baseline "
                f"{_cell(results['majority_baseline'])}%, paper on full CelebA "
                f"{_cell(results['paper_mean_accuracy'])}%). Total "
                f"{results['total_seconds'] / 60:.1f} min on {results['machine']['cpus']} CPUs; "
                f"stages (s): {', '.join(f'{k} {v:.0f}' for k, v in t.items())}.\n\n")
        points = results["test"].get("points") or {}
        if points:
            f.write("At the operating points stored in the bundle (chosen on held-out val "
                    "identities): " + "; ".join(
                        f"point {p}: accuracy {_cell(m['mean']['accuracy'])}%, balanced "
                        f"accuracy {_cell(m['mean']['balanced_accuracy'])}%"
                        for p, m in points.items())
                    + f". Mean AP {_cell(results['test']['mean'].get('average_precision'))}%."
                    "\n\n")
        f.write(markdown_table(results["test"], reference) + "\n")
    plot_accuracy(results["test"], reference, os.path.join(folder, "accuracy.png"))


# --- the recipe of a run --------------------------------------------------------------------------------------


def resolve_recipe(smoke_test: bool, overrides: str | None) -> dict:
    """RECIPE, shrunk by SMOKE for --smoke-test, with --recipe (JSON text or a file) on top."""
    recipe = merge(RECIPE, SMOKE) if smoke_test else copy.deepcopy(RECIPE)
    if overrides:
        text = overrides
        if os.path.isfile(overrides):
            with open(overrides) as f:
                text = f.read()
        try:
            recipe = merge(recipe, json.loads(text))
        except json.JSONDecodeError as e:
            raise DataError(f"--recipe: not JSON nor a JSON file ({e})") from None
    return recipe
