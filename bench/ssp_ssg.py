"""SSP+SSG vs ANet vs SSP alone vs SSG alone (and the same trunk with neither), side by side on
one CelebA-layout root, at one small budget: the same train subset, epochs, optimiser and
schedule for every model, each scored by its own fine-tuned tag layer on the whole test split
(`evaluate_celeba`, aligned faces taken whole, as `reproduce` evaluates).

ANet is the recipe's ("wild" preset, batch norm) without wild crops; the SSP+SSG variants start
from one parsing bundle (`train parsing`) and train jointly with its part masks
(``--parsing-data``, ``parsing_share`` of the rows). Same process, one after another, on a
shared, noisy machine: times are wall clock and only roughly comparable.

    python bench/ssp_ssg.py --parsing runs/parsing --parsing-data runs/gen --limit 1500 --epochs 3
    python bench/ssp_ssg.py --smoke-test     # seconds: generated faces, tiny networks

Prints a line per model as it finishes, a table, and last a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "celeba-mini")
MODELS = {  # name -> (family, ssp, ssg)
    "ssp+ssg": ("ssp-ssg", True, True),
    "anet": ("anet", None, None),
    "ssp": ("ssp-ssg", True, False),
    "ssg": ("ssp-ssg", False, True),
    "neither": ("ssp-ssg", False, False),
}


def train_one(name: str, root: str, parsing, args, common: dict, out: str) -> dict:
    from faceattr_ray.evaluation.evaluate import evaluate_celeba
    from faceattr_ray.presets import architecture
    from faceattr_ray.train import api

    family, ssp, ssg = MODELS[name]
    start = time.perf_counter()
    if family == "anet":
        arch = architecture("wild-smoke" if args.smoke_test else "wild")["anet"]
        nets, metrics, cfg = api.finetune(root, nets=("anet",), anet=arch, **common)
        net, metrics = nets["anet"], metrics["anet"]
    else:
        net, metrics, cfg = api.finetune_ssp_ssg(
            root, init=parsing, ssp_ssg={"ssp": ssp, "ssg": ssg},
            parsing_data=args.parsing_data, parsing_share=args.parsing_share,
            parsing_weight=args.parsing_weight, **common)
    train_s = time.perf_counter() - start
    api.save_job_bundle(out, {"anet": net}, dict(cfg, job=f"bench-{name}"))
    test = evaluate_celeba(out, root, split="test", localizer="full")
    params = sum(p.numel() for p in net.parameters())
    return {"model": name, "train_s": round(train_s, 3), "params": int(params),
            "mean_accuracy": test["mean"]["accuracy"],
            "mean_balanced_accuracy": test["mean"]["balanced_accuracy"],
            "majority_baseline": test["mean"]["majority_baseline"], "test_images": test["images"],
            "last_train_metrics": {k: metrics.get(k) for k in ("loss", "val_accuracy")}}


def main(argv: list[str] | None = None) -> dict:
    from faceattr_ray.bundle import load_bundle

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--celeba-root", default=DATA)
    p.add_argument("--parsing", help="a `train parsing` bundle (the SSP+SSG variants' start)")
    p.add_argument("--parsing-data", help="the part-mask root trained jointly")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--limit", type=int, default=1500, help="first N images of train (and val)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.002)
    p.add_argument("--parsing-share", type=float, default=0.25)
    p.add_argument("--parsing-weight", type=float, default=0.5)
    p.add_argument("--out", default=None, help="where the bundles go (default: a temp folder)")
    p.add_argument("--smoke-test", action="store_true")
    args = p.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix="ssp_ssg_bench_")
    if args.smoke_test:
        from faceattr_ray.data.synthetic import write_aligned
        from faceattr_ray.train import api

        root = write_aligned(os.path.join(out, "gen"), 60, 15, seed=1, masks=True)
        args.celeba_root = args.parsing_data = root
        args.limit, args.epochs, args.batch_size = 16, 1, 8
        parsing, _, _ = api.train_parsing(root, smoke_test=True)
    elif any(MODELS[m][0] == "ssp-ssg" for m in args.models):
        parsing = load_bundle(args.parsing).anet.train()
    else:
        parsing = None
    common = {"epochs": args.epochs, "batch_size": args.batch_size, "optimizer": "adamw",
              "lr": args.lr, "weight_decay": 0.05, "schedule": "cosine", "warmup_epochs": 0.5,
              "local": True, "limit": args.limit, "seed": 0, "smoke_test": args.smoke_test}
    setting = {k: v for k, v in common.items() if k != "local"}
    setting.update(parsing=args.parsing, parsing_data=args.parsing_data,
                   parsing_share=args.parsing_share, parsing_weight=args.parsing_weight,
                   root=os.path.abspath(args.celeba_root))
    print(f"setting: {json.dumps(setting)}", flush=True)
    rows = []
    for name in args.models:
        r = train_one(name, args.celeba_root, parsing, args, common, os.path.join(out, name))
        rows.append(r)
        print(json.dumps(r), flush=True)
    anet = next((r for r in rows if r["model"] == "anet"), None)
    print(f"{'model':<9} {'mean acc':>9} {'bal acc':>8} {'train s':>8} {'params':>8}"
          + ("  acc vs anet" if anet else ""))
    for r in rows:
        line = (f"{r['model']:<9} {100 * r['mean_accuracy']:9.2f} "
                f"{100 * r['mean_balanced_accuracy']:8.2f} {r['train_s']:8.0f} {r['params']:8d}")
        if anet:
            line += f"  {r['mean_accuracy'] - anet['mean_accuracy']:+.4f}"
        print(line)
    print(f"majority baseline {100 * rows[0]['majority_baseline']:.2f}; shared 2-core machine "
          "under other load: times are rough")
    result = {"setting": setting, "models": rows, "out": out}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
