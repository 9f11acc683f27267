"""FLOPs per image of each network at its default input size (torch FlopCounterMode).

    python bench/flops.py            # default LNet (AlexNet sizes), the "cpu" preset's LNet, ANet

Counts convolutions and matrix products (2 FLOPs per multiply-add), C1-C5 only for LNets (their
heads are dropped at inference). Last line: JSON with the same figures.
"""

from __future__ import annotations

import json

import torch

from faceattr_ray.models import ANet, ANetConfig, LNet, LNetConfig
from faceattr_ray.models.flops import count_flops, format_flops_table, network_flops
from faceattr_ray.presets import preset_configs


def main() -> None:
    torch.manual_seed(0)
    rows = network_flops(LNet(LNetConfig()), None, ANet(ANetConfig()))
    small = LNet(preset_configs("cpu", 40)[0])
    s = small.config.input_size
    rows.insert(1, {"network": "lnet (small preset)", "what": f"C1-C5 on {s}x{s}",
                    "flops": count_flops(small.c5, torch.zeros(1, 3, s, s))})
    rows[0]["network"] = "lnet_o / lnet_s (default)"
    print(f"setting: torch {torch.__version__} FlopCounterMode, batch 1, "
          f"ANet {ANetConfig().to_dict()}")
    print(format_flops_table(rows))
    print(json.dumps({f"{r['network']}: {r['what']}": r["flops"] for r in rows}))


if __name__ == "__main__":
    main()
