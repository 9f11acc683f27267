"""`faceattr-ray train lnet-pretrain | anet-pretrain | finetune`: arguments -> config -> bundle."""

from __future__ import annotations

import argparse
import json
import os

from torch import nn

from faceattr_ray.errors import BundleError, DataError
from faceattr_ray.train import api


def run(args: argparse.Namespace) -> int:
    options = _options(args)
    if not options["local"]:  # --local / --smoke-test: the same loop in-process, no Ray
        _init_ray(args)
    if args.train_command == "lnet-pretrain":
        lnet, metrics, cfg = api.pretrain_lnet(args.data, init_alexnet=args.init, **options)
        nets = {"lnet_o": lnet, "lnet_s": lnet}  # LNet+ initialises both LNets
    elif args.train_command == "anet-pretrain":
        init = _load_init(args.init, "anet") if args.init else None
        anet, metrics, cfg = api.pretrain_anet(args.data, init=init, **options)
        nets = {"anet": anet}
    elif args.train_command == "finetune":
        init = _finetune_init(args)
        nets_wanted = tuple(n.strip() for n in args.nets.split(",") if n.strip())
        nets, metrics, cfg = api.finetune(args.data, nets=nets_wanted, init=init,
                                          headshoulder=args.headshoulder, **options)
    else:  # argparse allows only the three
        raise ValueError(args.train_command)
    api.save_job_bundle(args.out, nets, cfg)
    api.write_config(args.out, cfg, metrics)
    print(f"wrote {args.out} (bundle + train_config.json)")
    print(json.dumps({"job": args.train_command, "out": args.out, "metrics": metrics},
                     default=str))
    return 0


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
        max_failures=args.max_failures, max_steps=args.max_steps, limit=args.limit,
        local=True if (args.local or args.smoke_test) else None,
        storage_path=args.storage_path or os.path.join(os.path.dirname(out), "ray_results"),
        # The default name follows the output folder, so re-running the same command resumes.
        run_name=args.run_name or f"{os.path.basename(out)}-{args.train_command}",
    )
    if args.train_command == "finetune" and args.attributes:
        options["attributes"] = [a.strip() for a in args.attributes.split(",") if a.strip()]
    return options


def _init_ray(args: argparse.Namespace) -> None:
    import ray

    if not ray.is_initialized():
        ray.init(address=args.address, num_cpus=args.num_cpus, include_dashboard=False,
                 log_to_driver=True)


def _load_init(path: str, net: str) -> nn.Module:
    """A trained network from a bundle directory, or (LNets) a torchvision AlexNet weights file."""
    if os.path.isdir(path):
        from faceattr_ray.bundle import load_bundle

        bundle = load_bundle(path)
        trained = (bundle.config.get("training") or {}).get("trained")
        found = getattr(bundle, net)
        if found is None or (trained is not None and net not in trained):
            raise BundleError(f"{path}: the bundle has no trained {net}")
        return found.train()
    if net == "anet":
        raise BundleError(f"{path}: ANet weights come from a bundle directory")
    from faceattr_ray.models import LNet, LNetConfig, load_alexnet_weights

    lnet = LNet(LNetConfig(num_classes=0))
    load_alexnet_weights(lnet, path)
    return lnet


def _finetune_init(args: argparse.Namespace) -> dict[str, nn.Module]:
    init: dict[str, nn.Module] = {}
    if args.init:  # a bundle: every network it has
        for name in api.NETS:
            try:
                init[name] = _load_init(args.init, name)
            except BundleError:
                continue
    if args.init_lnet:
        init.pop("lnet_o", None)
        init.pop("lnet_s", None)
        init["lnet"] = _load_init(args.init_lnet, "lnet_o")
    if args.init_anet:
        init["anet"] = _load_init(args.init_anet, "anet")
    return init
