"""`faceattr-ray info BUNDLE`: configuration, attributes and FLOPs of a model bundle."""

from __future__ import annotations

import json


def run(args) -> int:
    from faceattr_ray.bundle import NETWORKS, load_bundle
    from faceattr_ray.models.flops import format_flops_table, network_flops

    bundle = load_bundle(args.model)
    cfg = bundle.config
    print(f"bundle: {bundle.path}  (format {cfg['format']} v{cfg['format_version']}, "
          f"written by faceattr-ray {cfg.get('package_version')})")
    for name in NETWORKS:
        print(f"{name}: {json.dumps(cfg.get(name))}")
    print(f"preprocess: {json.dumps(cfg.get('preprocess'))}")
    print(f"localizer: {json.dumps(cfg.get('localizer'))}")
    heads = cfg.get("heads")
    print(f"heads: {json.dumps(heads) if heads else 'none'}")
    print(f"attributes ({len(bundle.attributes)}): {', '.join(bundle.attributes)}")
    print(format_flops_table(network_flops(bundle.lnet_o, bundle.lnet_s, bundle.anet)))
    return 0
