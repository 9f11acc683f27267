"""FLOPs per image of each network at its default input size (torch FlopCounterMode).

    python bench/flops.py            # default LNet (AlexNet sizes), the "cpu" preset's LNet, ANet
    python bench/flops.py --smoke-test   # the "tiny" preset's networks instead of the defaults

Counts convolutions and matrix products (2 FLOPs per multiply-add), C1-C5 only for LNets (their
heads are dropped at inference). Last line: JSON with the same figures.
"""

from __future__ import annotations

import argparse
import json

import torch

from faceattr_ray.models import ANet, ANetConfig, LNet, LNetConfig
from faceattr_ray.models.flops import count_flops, format_flops_table, network_flops
from faceattr_ray.presets import preset_configs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke-test", action="store_true",
                   help="count the tiny preset's networks (the plumbing, not the figures)")
    args = p.parse_args()
    torch.manual_seed(0)
    if args.smoke_test:
        lnet_cfg, anet_cfg = preset_configs("tiny", 40)
    else:
        lnet_cfg, anet_cfg = LNetConfig(), ANetConfig()
    rows = network_flops(LNet(lnet_cfg), None, ANet(anet_cfg))
    small = LNet(preset_configs("cpu", 40)[0])
    s = small.config.input_size
    rows.insert(1, {"network": "lnet (cpu preset)", "what": f"C1-C5 on {s}x{s}",
                    "flops": count_flops(small.c5, torch.zeros(1, 3, s, s))})
    rows[0]["network"] = f"lnet_o / lnet_s ({'tiny preset' if args.smoke_test else 'default'})"
    print(f"setting: torch {torch.__version__} FlopCounterMode, batch 1, "
          f"ANet {anet_cfg.to_dict()}")
    print(format_flops_table(rows))
    print(json.dumps({f"{r['network']}: {r['what']}": r["flops"] for r in rows}))


if __name__ == "__main__":
    main()
