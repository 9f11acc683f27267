"""`faceattr-ray train lnet-pretrain | anet-pretrain | finetune | parsing | ssp-ssg | heads`:
flags -> the library."""

from __future__ import annotations

import argparse
import json
import os

from faceattr_ray.errors import DataError


def run(args: argparse.Namespace) -> int:
    """The three network jobs: flags -> `train.api` config options -> a bundle in --out."""
    from faceattr_ray.runtime import init_ray
    from faceattr_ray.train import api

    options = _options(args)
    if not options["local"]:  # --local / --smoke-test: the same loop in-process, no Ray
        init_ray(args.address, args.num_cpus)
    if args.train_command == "lnet-pretrain":
        lnet, metrics, cfg = api.pretrain_lnet(args.data, init_alexnet=args.init, **options)
        nets = {"lnet_o": lnet, "lnet_s": lnet}  # LNet+ initialises both LNets
    elif args.train_command == "anet-pretrain":
        init = api.load_init(args.init, "anet") if args.init else None
        anet, metrics, cfg = api.pretrain_anet(args.data, init=init, **options)
        nets = {"anet": anet}
    elif args.train_command == "finetune":
        init = api.finetune_init(args.init, args.init_lnet, args.init_anet)
        nets_wanted = tuple(n.strip() for n in args.nets.split(",") if n.strip())
        nets, metrics, cfg = api.finetune(args.data, nets=nets_wanted, init=init,
                                          headshoulder=args.headshoulder, **options)
    elif args.train_command in ("parsing", "ssp-ssg"):
        return _run_ssp_ssg(args, options)
    else:  # argparse allows only these
        raise ValueError(args.train_command)
    api.save_job_bundle(args.out, nets, cfg)
    api.write_config(args.out, cfg, metrics)
    print(f"wrote {args.out} (bundle + train_config.json)")
    print(json.dumps({"job": args.train_command, "out": args.out, "metrics": metrics},
                     default=str))
    return 0


def _run_ssp_ssg(args: argparse.Namespace, options: dict) -> int:
    """`train parsing` and `train ssp-ssg`: an SSP+SSG bundle in --out."""
    from faceattr_ray.train import api

    init = _ssp_ssg_init(args.init) if args.init else None
    if args.train_command == "parsing":
        net, metrics, cfg = api.train_parsing(args.data, init=init, **options)
        trained = ["parsing"] if init is None else None
    else:
        parts = args.parts.split(",")
        net, metrics, cfg = api.finetune_ssp_ssg(
            args.data, init=init, ssp_ssg={"ssp": "ssp" in parts, "ssg": "ssg" in parts},
            parsing_data=args.parsing_data, freeze_parsing=args.freeze_parsing, **options)
        trained = None
    api.save_job_bundle(args.out, {"anet": net}, cfg, trained=trained)
    api.write_config(args.out, cfg, metrics)
    print(f"wrote {args.out} (SSP+SSG bundle + train_config.json)")
    print(json.dumps({"job": args.train_command, "out": args.out, "metrics": metrics},
                     default=str))
    return 0


def _ssp_ssg_init(path: str):
    from faceattr_ray.bundle import load_bundle
    from faceattr_ray.models import SSPSSGNet

    net = load_bundle(path).anet
    if not isinstance(net, SSPSSGNet):
        raise DataError(f"--init {path}: not an SSP+SSG bundle (its attribute network is ANet)")
    return net.train()


def _options(args: argparse.Namespace) -> dict:
    """CLI flags -> `api.make_config` options (None = keep the default or the smoke-test's)."""
    overrides: dict = {}
    if args.config:
        try:
            with open(args.config) as f:
                overrides = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"{args.config}: cannot read the JSON config: {e}") from None
    out = os.path.abspath(args.out)
    options = dict(overrides)
    options.update(
        smoke_test=args.smoke_test, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, num_workers=args.num_workers, use_gpu=args.use_gpu or None,
        precision=args.precision,
        max_failures=args.max_failures, max_steps=args.max_steps, limit=args.limit,
        local=True if (args.local or args.smoke_test) else None,
        storage_path=args.storage_path or os.path.join(os.path.dirname(out), "ray_results"),
        # The default name follows the output folder, so re-running the same command resumes.
        run_name=args.run_name or f"{os.path.basename(out)}-{args.train_command}",
    )
    if args.train_command in ("finetune", "ssp-ssg") and args.attributes:
        options["attributes"] = [a.strip() for a in args.attributes.split(",") if a.strip()]
    return options


def run_heads(args: argparse.Namespace) -> int:
    """`train heads`: SVM heads from stored features (`train.heads.train_heads`), printed."""
    from faceattr_ray.metrics import format_table
    from faceattr_ray.runtime import init_ray
    from faceattr_ray.train.heads import train_heads

    if args.solver == "ray":
        init_ray(args.address, args.num_cpus, log_to_driver=False)
    result = train_heads(
        args.features, args.labels, args.out, base_model=args.base_model,
        attributes=args.attributes.split(",") if args.attributes else None,
        mean_features=args.mean_features, solver=args.solver, C=args.C,
        class_weight=None if args.class_weight == "none" else args.class_weight,
        protocol=args.protocol, seed=args.seed)
    heads, join, test = result["heads"], result["join"], result["test"]
    _print_join(join, args.features, args.labels)
    print(f"fit {len(heads.names)} heads on {result['images']} images with features "
          f"(solver {args.solver}, C chosen from {sorted(args.C)})")
    if test is not None:
        print(f"LFWA+ protocol: trained on one third ({test['train_images']} images), "
              f"tested on the rest ({test['images']} images)")
        print(format_table(test))
        print(f"mean balanced accuracy: {100 * (test['mean']['balanced_accuracy'] or 0):.2f}")
    else:
        _print_choice(heads)
    print(f"heads written to {args.out}")
    return 0


def _print_join(r: dict, features: str, labels: str) -> None:
    print(f"features {features}: {r['feature_rows_usable']} usable rows "
          f"({r['duplicate_paths_dropped']} duplicated paths dropped)")
    print(f"labels {labels}: {r['label_rows']} rows")
    print(f"matched {r['matched']} ({r['matched_by_basename']} by file name), unmatched: "
          f"{r['unmatched_features']} feature rows, {r['unmatched_labels']} label rows")
    if r["labels_missing"]:
        missing = ", ".join(f"{n} {c}" for n, c in r["labels_missing"].items())
        print(f"labels missing among matched: {missing}")


def _print_choice(heads) -> None:
    info = heads.info
    val = info.get("validation")
    width = max(len(n) for n in heads.names)
    header = f"{'attribute'.ljust(width)}  {'C':>8}  {'pos':>7}  {'neg':>7}"
    if val:
        header += f"  {'val ' + val['metric']:>22}"
    print(header)
    for j, name in enumerate(heads.names):
        line = (f"{name.ljust(width)}  {info['C'][j]:>8g}  {info['train_positives'][j]:>7}  "
                f"{info['train_negatives'][j]:>7}")
        if val:
            line += f"  {100 * val['values'][j]:>22.1f}"
        print(line)
