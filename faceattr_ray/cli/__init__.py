"""`faceattr-ray`: one command, many subcommands; every command-line handler lives in this package.

This module holds argparse and nothing else: each subcommand names its handler as
"faceattr_ray.cli.MODULE:function". A handler turns flags into plain typed arguments of library
functions; it (and so torch and Ray) is imported only when the subcommand runs, which keeps
`faceattr-ray --help` and every `faceattr-ray SUB --help` instant. Numeric flags are checked
here, so a value out of range is a one-line error before any work starts.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from faceattr_ray.runtime import DECODE_CPUS, PRECISIONS, passive_thread_waits


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: what is wrong and where to look."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _number(kind, minimum=None, above=None, maximum=None):
    """An argparse type: ``kind`` (int or float) within the bounds, else a one-line error."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        if above is not None and not value > above:
            raise argparse.ArgumentTypeError(f"must be above {above}, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


COUNT = _number(int, minimum=1)  # sizes, counts, batch sizes
NONNEGATIVE = _number(int, minimum=0)  # epochs, seeds, failures
POSITIVE = _number(float, above=0)  # learning rates, C, CPUs per task
GPUS = _number(float, minimum=0)
FRACTION = _number(float, minimum=0, maximum=1)


# Commands whose --model is written to (calibrate updates a bundle in place): never a default.
NEEDS_OWN_MODEL = ("calibrate", "calibrate-points", "calibrate-scenes")
MODEL_HELP = ("model bundle directory, or the name of a bundled model (default: the bundled "
              "celeba-mini-wild; `faceattr-ray models` lists them)")


def _command(sub, name: str, target: str, help: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help)
    p.set_defaults(_target=target)
    return p


def _ray_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", default=None,
                   help="Ray cluster address (default: start an embedded local Ray)")
    p.add_argument("--num-cpus", type=COUNT, default=None,
                   help="CPUs for the embedded local Ray (default: all)")


# --- subcommands -------------------------------------------------------------------------------


def _add_demo(sub) -> None:
    p = _command(sub, "demo", "faceattr_ray.cli.demo:run",
                 "Annotate real photos and generated people with the bundled model on a local "
                 "Ray, print a summary, draw an overlay grid (the README's first command).")
    p.add_argument("--out", default="demo-out", help="output folder (default: demo-out)")
    p.add_argument("--images", type=NONNEGATIVE, default=6,
                   help="scenes of generated people to annotate besides the real photos")
    p.add_argument("--train", action="store_true",
                   help="train a toy model on generated faces first (fully offline smoke run) "
                        "instead of using the bundled model")
    p.add_argument("--seed", type=NONNEGATIVE, default=0)
    _ray_args(p)


def _add_annotate(sub) -> None:
    p = _command(sub, "annotate", "faceattr_ray.cli.annotate:run",
                 "Annotate images with face attributes into a Parquet table (Ray Data).")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="directories, globs, s3:// or gs:// prefixes, or a manifest "
                        "(.txt/.csv/.parquet list of paths)")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument("--output", required=True, help="output directory (local or s3://)")
    p.add_argument("--features", action="store_true",
                   help="also write ANet FC features (for `train heads`)")
    p.add_argument("--all-faces", action="store_true",
                   help="one row for every face above the threshold (default: the dominant face)")
    p.add_argument("--localizer", choices=["lnet", "cascade", "full"], default="lnet",
                   help="lnet: the LNets cascade (default); cascade: scikit-image's LBP face "
                        "cascade; full: the whole image is the face (aligned crops)")
    p.add_argument("--batch-size", type=COUNT, default=32, help="images per model batch")
    p.add_argument("--num-gpus", type=GPUS, default=None,
                   help="GPUs per model actor, fractional allowed (default: 1 if the cluster "
                        "has GPUs, else 0)")
    p.add_argument("--actors", type=COUNT, default=None,
                   help="model actors (default: one per GPU, or 1 on CPU)")
    p.add_argument("--decode-cpus", type=POSITIVE, default=DECODE_CPUS,
                   help=f"CPUs per decode task (default: {DECODE_CPUS})")
    p.add_argument("--stages", choices=["one", "split"], default="one",
                   help="one: each model actor runs the whole cascade (default, faster in "
                        "bench/annotate.py); split: LNets and ANet + heads in two actor pools")
    p.add_argument("--max-pixels", type=COUNT, default=None,
                   help="refuse images larger than this many pixels (default: 89,478,485, "
                        "PIL's own bomb limit)")
    p.add_argument("--resume", choices=["auto", "never"], default="auto",
                   help="auto: skip inputs already in OUTPUT (rerun a killed job to finish it); "
                        "never: refuse a non-empty OUTPUT")
    p.add_argument("--operating-point", default=None, metavar="POINT",
                   help="add a bool ATTR_present column per attribute: the decision at POINT, "
                        "accuracy, balanced, precision:P (e.g. precision:0.9; P as stored) or "
                        "zero (score > 0). Scores are unchanged; the footer's "
                        "faceattr_ray.operating_point names the point (a bundle without "
                        "stored points falls back to score > 0, with a note)")
    p.add_argument("--probabilities", action="store_true",
                   help="add a float ATTR_probability column: calibrated P(present) (the "
                        "bundle's Platt fit; see calibrate-points)")
    p.add_argument("--limit", type=COUNT, default=None,
                   help="annotate at most this many of the inputs not yet in OUTPUT")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="the networks' arithmetic: auto = mixed precision on a GPU (bf16 where "
                        "supported, else fp16), fp32 on CPUs")
    _ray_args(p)


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="Train networks (Ray Train) or attribute heads.",
                       description="Train networks (Ray Train) or attribute heads.")
    tsub = p.add_subparsers(dest="train_command", metavar="JOB", required=True,
                            parser_class=_Parser)
    for name, help in [
        ("lnet-pretrain", "LNet+ on an image folder of object classes (softmax, ten-crop)."),
        ("anet-pretrain", "ANet on face identities (softmax + similarity loss)."),
        ("finetune", "LNet_o, LNet_s and ANet with attribute tags (sigmoid cross-entropy)."),
        ("parsing", "The SSP+SSG family's face-parsing network on part masks (CelebAMask-HQ, "
                    "Helen/LaPa, or generated people written with `generate --masks`)."),
        ("ssp-ssg", "The SSP+SSG attribute network (Kalayeh et al. 2017) with attribute tags, "
                    "jointly with part masks from --parsing-data."),
    ]:
        tp = _command(tsub, name, "faceattr_ray.cli.train:run", help)
        _train_common_args(tp, name)
    hp = _command(tsub, "heads", "faceattr_ray.cli.train:run_heads",
                  "Fit per-attribute linear SVM heads on stored ANet features (no CNN is run).")
    hp.add_argument("--features", required=True,
                    help="Parquet file or folder with `path` and `features` (list<float32>), "
                         "optionally `patch_features` (per patch; see faceattr_ray/heads/features.py)")
    hp.add_argument("--mean-features", action="store_true",
                    help="train on `features` (patch mean) even when `patch_features` exist")
    hp.add_argument("--labels", required=True, help="attribute table (CSV/Parquet: path + columns)")
    hp.add_argument("--out", required=True, help="bundle directory to write the heads into")
    hp.add_argument("--base-model", default=None,
                    help="bundle whose networks the new heads go with (copied into --out)")
    hp.add_argument("--attributes", default=None, help="comma-separated subset of label columns")
    hp.add_argument("--solver", choices=["liblinear", "ray"], default="liblinear",
                    help="liblinear: scikit-learn LinearSVC in memory; ray: distributed, streaming")
    hp.add_argument("--C", type=POSITIVE, nargs="+", default=[0.01, 0.1, 1.0],
                    help="SVM C values; the best on the validation part is kept")
    hp.add_argument("--class-weight", choices=["none", "balanced"], default="none")
    hp.add_argument("--protocol", choices=["holdout", "lfwa-plus"], default="holdout",
                    help="lfwa-plus: train on one third, test on the rest, balanced accuracy")
    hp.add_argument("--seed", type=NONNEGATIVE, default=0)
    _ray_args(hp)


def _train_common_args(p: argparse.ArgumentParser, job: str | None = None) -> None:
    p.add_argument("--data", required=True,
                   help="training data: an image folder of classes (lnet-pretrain), a "
                        "CelebA-layout root (anet-pretrain, finetune, ssp-ssg) or a face-parsing "
                        "root (parsing)")
    p.add_argument("--out", required=True,
                   help="bundle directory to write (with train_config.json, the resolved config)")
    if job == "finetune":
        p.add_argument("--nets", default="lnet_o,lnet_s,anet",
                       help="comma-separated networks to fine-tune, in this order: lnet_o, "
                            "lnet_s, anet (default: all; e.g. `--nets anet` on a CPU)")
        p.add_argument("--init", default=None,
                       help="a bundle to start from: its trained networks initialise the nets "
                            "fine-tuned and are copied as they are for the others")
        p.add_argument("--init-lnet", default=None,
                       help="LNet+ to start both LNets from: an lnet-pretrain bundle or a "
                            "torchvision AlexNet state_dict file")
        p.add_argument("--init-anet", default=None, help="an anet-pretrain bundle")
        p.add_argument("--attributes", default=None,
                       help="comma-separated attribute subset (default: every column of the data)")
        p.add_argument("--headshoulder", choices=["lnet_o", "boxes"], default="lnet_o",
                       help="LNet_s's head-shoulder boxes: lnet_o = from the fine-tuned LNet_o's response map "
                            "(the paper); boxes = the data's list_headshoulder_bbox.txt")
    elif job in ("parsing", "ssp-ssg"):
        p.add_argument("--init", default=None,
                       help="an SSP+SSG bundle to start from (e.g. `train parsing`'s output)")
        if job == "ssp-ssg":
            p.add_argument("--parsing-data", default=None,
                           help="a face-parsing root whose masks train the part maps jointly "
                                "(default: none; the parsing network then learns from the "
                                "attribute loss alone)")
            p.add_argument("--parts", choices=["ssp,ssg", "ssp", "ssg", "none"],
                           default="ssp,ssg",
                           help="which uses of the part maps (ablations: SSP alone, SSG alone)")
            p.add_argument("--freeze-parsing", action="store_true",
                           help="keep the parsing network as --init gives it")
            p.add_argument("--attributes", default=None,
                           help="comma-separated attribute subset (default: every column)")
    else:
        p.add_argument("--init", default=None,
                       help="torchvision AlexNet state_dict file (lnet-pretrain) or a bundle "
                            "whose ANet to continue from (anet-pretrain)")
    p.add_argument("--epochs", type=NONNEGATIVE, default=None, help="epochs (default: 10)")
    p.add_argument("--batch-size", type=COUNT, default=None,
                   help="global batch size, split over the workers (default: 64)")
    p.add_argument("--lr", type=POSITIVE, default=None, help="SGD learning rate (default: 0.01)")
    p.add_argument("--num-workers", type=COUNT, default=None, help="Ray Train workers (default: 1)")
    p.add_argument("--use-gpu", action="store_true",
                   help="one GPU per worker; mixed precision and channels-last")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="the networks' arithmetic: auto (default) = mixed precision on a GPU, "
                        "fp32 on CPUs; bf16 pays on CPUs with AVX-512 BF16 or AMX")
    p.add_argument("--local", action="store_true",
                   help="run the same training loop in this process, without Ray")
    p.add_argument("--storage-path", default=None,
                   help="checkpoints (local folder or s3://); default: OUT/../ray_results")
    p.add_argument("--run-name", default=None,
                   help="run name (default: OUT's name + job); re-running with the same name "
                        "and storage path resumes from its last checkpoint")
    p.add_argument("--max-failures", type=NONNEGATIVE, default=None,
                   help="worker failures to recover from (default: 2)")
    p.add_argument("--max-steps", type=COUNT, default=None, help="cap on steps per epoch")
    p.add_argument("--limit", type=COUNT, default=None,
                   help="use only the first N images of each split (finetune)")
    p.add_argument("--config", default=None,
                   help='JSON with config overrides, e.g. {"lnet": {"channels": [...]}, '
                        '"anet": {...}, "weight_decay": 0.0005}')
    p.add_argument("--smoke-test", action="store_true",
                   help="tiny networks, a few images, 2 steps, in-process on CPU (seconds)")
    p.add_argument("--seed", type=NONNEGATIVE, default=None)
    _ray_args(p)


def _add_calibrate(sub) -> None:
    p = _command(sub, "calibrate", "faceattr_ray.cli.calibrate:run",
                 "Set the face/no-face threshold from face and background images; store it in "
                 "the bundle with its histogram plot.")
    p.add_argument("--model", required=True, help="model bundle directory (updated in place)")
    p.add_argument("--faces", required=True, nargs="+", help="images that each contain a face")
    p.add_argument("--backgrounds", required=True, nargs="+", help="images with no face")
    p.add_argument("--plot", default=None, help="histogram PNG (default: BUNDLE/threshold.png)")
    p.add_argument("--batch-size", type=COUNT, default=32, help="images per model batch")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")


def _add_calibrate_points(sub) -> None:
    p = _command(sub, "calibrate-points", "faceattr_ray.cli.calibrate:run_points",
                 "Store operating points (accuracy, balanced, precision thresholds per "
                 "attribute) and calibrated probabilities in an existing bundle, chosen on "
                 "val identities held out of the heads' fit (reproduce's rule: a held-out "
                 "share, or out-of-fold scores of every val face with heads.crossfit); no "
                 "network is retrained.")
    p.add_argument("--model", required=True, help="model bundle directory")
    p.add_argument("--celeba-root", required=True,
                   help="CelebA-layout root whose val split fits the heads and chooses the points")
    p.add_argument("--out", default=None, help="write here (default: the bundle, in place)")
    p.add_argument("--keep-heads", action="store_true",
                   help="keep the bundle's SVM heads and only choose points (in-sample if the "
                        "heads were fit on all of val, as reproduce fits them; the config says "
                        "so); default: refit the heads as reproduce does (seconds to minutes)")
    p.add_argument("--precision", type=_number(float, above=0, maximum=1), nargs="+",
                   default=None, help="precision targets to store (default: 0.8 0.9 0.95)")
    p.add_argument("--recipe", default=None,
                   help='JSON (text or file) overriding reproduce\'s RECIPE, e.g. '
                        '{"heads": {"flip": true, "points": "platt"}}')
    p.add_argument("--seed", type=NONNEGATIVE, default=0,
                   help="the identity split's seed (reproduce's --seed)")
    _ray_args(p)


def _add_calibrate_scenes(sub) -> None:
    p = _command(sub, "calibrate-scenes", "faceattr_ray.cli.calibrate:run_scenes",
                 "Calibrate an existing bundle's face-tag LNets as reproduce does: box geometry "
                 "on scenes of val faces x held-apart backgrounds, then the face threshold and "
                 "the confidence floor (first a face head for the floor to read, fit on scenes "
                 "of train faces x the training backgrounds, unless --recipe "
                 "'{\"frame_face_head\": null}'); read with the bundle's own localizer options; "
                 "no network is retrained. A bundle with a model card also gets its card's localization "
                 "figures measured again on scenes of test faces, as reproduce reports them.")
    p.add_argument("--model", required=True, help="model bundle directory")
    p.add_argument("--celeba-root", required=True,
                   help="CelebA-layout root whose train and val faces are pasted into the scenes")
    p.add_argument("--backgrounds", required=True, nargs="+",
                   help="face-free photos (folders, files or globs), split as reproduce splits "
                        "them (the same files give the same split)")
    p.add_argument("--out", default=None, help="write here (default: the bundle, in place)")
    p.add_argument("--recipe", default=None,
                   help='JSON (text or file) overriding reproduce\'s RECIPE, e.g. '
                        '{"frame_face_head": null} (no face head for the floor)')
    p.add_argument("--seed", type=NONNEGATIVE, default=0, help="the scenes' seed (reproduce's)")


def _add_localize(sub) -> None:
    p = _command(sub, "localize", "faceattr_ray.cli.localize:run",
                 "Localize faces with a bundle's LNets: per image, a PNG of LNet_o's and "
                 "LNet_s's averaged response maps with the chosen boxes, and the boxes printed.")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files, directories, globs or manifests")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument("--out", required=True, help="folder for the PNGs and boxes.jsonl")
    p.add_argument("--all-faces", action="store_true",
                   help="every face above the threshold (default: the dominant face)")
    p.add_argument("--threshold", type=float, default=None,
                   help="face score threshold (default: the bundle's calibrated one)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")


def _add_evaluate(sub) -> None:
    p = _command(sub, "evaluate", "faceattr_ray.cli.evaluate:run",
                 "Per-attribute accuracy of a bundle on a CelebA-layout root, or on a folder of "
                 "photos with face boxes and labels.")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--celeba-root", default=None, help="CelebA-layout root")
    source.add_argument("--photos", default=None,
                        help="folder of photos whose faces --labels gives (file names in "
                             "--labels are relative to it)")
    p.add_argument("--labels", default=None,
                   help='with --photos: JSON {"file.jpg": [{"box": [x1, y1, x2, y2], "Male": 1, '
                        '"Smiling": 0, ...}, ...]}; labels 1/0 or 1/-1, a missing one is unknown')
    p.add_argument("--split", choices=["train", "val", "test", "all"], default="test",
                   help="the CelebA split (with --celeba-root)")
    p.add_argument("--localizer", choices=["lnet", "cascade", "full", "boxes"], default=None,
                   help="how faces are found: lnet (the bundle's LNets; default with --photos), "
                        "cascade (LBP), full (the image is the face; default with --celeba-root: "
                        "CelebA's aligned crops are faces), boxes (with --photos: the given "
                        "boxes are the faces, so ANet is judged apart from localization)")
    p.add_argument("--iou", type=_number(float, above=0, maximum=1), default=0.5,
                   help="with --photos: overlap a detection needs to match a given box "
                        "(default 0.5)")
    p.add_argument("--limit", type=COUNT, default=None,
                   help="evaluate only the first N images (photos)")
    p.add_argument("--operating-point", default=None, metavar="POINT",
                   help="with --celeba-root: the decision rule of the table and of the JSON's "
                        "figures: accuracy, balanced, precision:P or zero (score > 0, the "
                        "default); the JSON's \"points\" has every stored point either way")
    p.add_argument("--json", default=None, help="write the metrics as JSON here")


def _add_extract_features(sub) -> None:
    p = _command(sub, "extract-features", "faceattr_ray.cli.annotate:run_extract_features",
                 "Write ANet features of images to Parquet (for `train heads`).")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument("--output", required=True)
    p.add_argument("--localizer", choices=["lnet", "cascade", "full"], default="full")
    p.add_argument("--batch-size", type=COUNT, default=16)
    _ray_args(p)


def _add_generate(sub) -> None:
    p = _command(sub, "generate", "faceattr_ray.cli.generate:run",
                 "Write generated people (CelebA layout, with boxes) or backgrounds.")
    p.add_argument("--out", required=True, help="output root")
    p.add_argument("--kind", choices=["aligned", "wild", "backgrounds", "distractors", "paste",
                                      "pseudo-parts"],
                   default="wild",
                   help="aligned: face crops (img_align_celeba/); wild: people on cluttered scenes "
                        "(img_celeba/ + face and head-shoulder boxes); backgrounds: no face; "
                        "distractors: non-human faces only; paste: real faces from --faces-from "
                        "pasted onto backgrounds (img_celeba/ + boxes); pseudo-parts: the real "
                        "aligned train faces of --faces-from (linked, not copied) with part masks "
                        "placed by each face's own dark blobs (parts/), for `train parsing`")
    p.add_argument("--count", type=NONNEGATIVE, default=100,
                   help="images to write (pseudo-parts: at most this many train faces; 0: all)")
    p.add_argument("--identities", type=COUNT, default=20)
    p.add_argument("--size", type=COUNT, nargs=2, default=None, metavar=("W", "H"),
                   help="image size (default: 89 109 for aligned, 256 192 otherwise)")
    p.add_argument("--max-people", type=COUNT, default=3, help="people per wild/paste image, 1..N")
    p.add_argument("--distractor-rate", type=FRACTION, default=0.3,
                   help="chance of a non-human face in a wild image")
    p.add_argument("--faces-from", default=None, help="CelebA-layout root to paste faces from")
    p.add_argument("--backgrounds-from", default=None,
                   help="folder/glob/manifest of background images for --kind paste "
                        "(default: generated)")
    p.add_argument("--masks", action="store_true",
                   help="aligned, wild: also write each image's face parts (background, hair, "
                        "skin, eyes, brows, nose, mouth) as parts/NAME.png, the supervision of "
                        "`train parsing`; paste: refused, pasted real faces have no known parts")
    p.add_argument("--seed", type=NONNEGATIVE, default=0)


def _add_reproduce(sub) -> None:
    p = _command(sub, "reproduce", "faceattr_ray.cli.reproduce:run",
                 "The paper's protocol end to end on a CelebA-layout root.")
    p.add_argument("--celeba-root", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--backgrounds", nargs="*", default=None,
                   help="background images for in-the-wild training (default: generated)")
    p.add_argument("--smoke-test", action="store_true", help="tiny and fast, on CPU")
    p.add_argument("--family", choices=["anet", "ssp-ssg"], default=None,
                   help="the attribute network: anet (LNets+ANet, the paper; the recipe's "
                        "default) or ssp-ssg (parsing-guided, Kalayeh et al. 2017: a parsing "
                        "network on part masks, then SSP+SSG jointly; same LNets, heads, "
                        "calibration and test split)")
    p.add_argument("--recipe", default=None,
                   help='JSON (text or file) overriding faceattr_ray/reproduce.py RECIPE, e.g. '
                        '{"anet_finetune": {"epochs": 2}}')
    p.add_argument("--trainer", choices=["auto", "ray", "local"], default=None,
                   help="Ray Train or in-process training (default: the recipe's, auto)")
    p.add_argument("--limit", type=COUNT, default=None,
                   help="train on only the first N images of each split (a quick run; the "
                        "test evaluation always uses the whole test split)")
    p.add_argument("--seed", type=NONNEGATIVE, default=0)
    _ray_args(p)


def _add_report(sub) -> None:
    p = _command(sub, "report", "faceattr_ray.cli.report:run",
                 "A self-contained HTML report of a model (and optionally an annotate output).")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument("--celeba-root", default=None)
    p.add_argument("--annotations", default=None, help="an annotate output directory")
    p.add_argument("--out", required=True)
    p.add_argument("--limit", type=COUNT, default=400, help="images to use from the root")


def _add_info(sub) -> None:
    p = _command(sub, "info", "faceattr_ray.cli.info:run",
                 "Print a model bundle's configuration, attributes and FLOPs.")
    p.add_argument("model", nargs="?", default=None, help=MODEL_HELP)


def _add_models(sub) -> None:
    _command(sub, "models", "faceattr_ray.cli.models:run",
             "List the models bundled with the package: what each was trained on, its figures.")


def get_args_parser() -> argparse.ArgumentParser:
    from faceattr_ray import __version__

    parser = _Parser(prog="faceattr-ray", description="Face attributes in the wild (LNets+ANet, ICCV 2015) on Ray.")
    parser.add_argument("--version", action="version", version=f"faceattr-ray {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                parser_class=_Parser)
    for add in (_add_demo, _add_annotate, _add_train, _add_calibrate, _add_calibrate_points,
                _add_calibrate_scenes, _add_localize,
                _add_evaluate, _add_extract_features, _add_generate, _add_reproduce, _add_report,
                _add_info, _add_models):
        add(sub)
    return parser


# Commands whose torch threads sleep while they wait (runtime.passive_thread_waits): training
# shares the cores with its batch-making child (1.12-1.21x, README); inference alone on idle
# cores runs 1-4% slower that way, and tiny models lose more, so the others keep the default.
PASSIVE_WAITS = ("reproduce", "train")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] and argv[0] in PASSIVE_WAITS:
        passive_thread_waits()  # before the handler imports torch
    args = get_args_parser().parse_args(argv)
    module_name, func_name = args._target.split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    from faceattr_ray.errors import FaceAttrError

    try:
        if "model" in vars(args) and args.command not in NEEDS_OWN_MODEL:
            from faceattr_ray.bundled import resolve_model

            args.model = resolve_model(args.model)
        result = func(args)
    except FaceAttrError as e:
        print(f"faceattr-ray {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
