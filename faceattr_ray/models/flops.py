"""FLOPs per image of each network (torch's FlopCounterMode: convolutions and matmuls)."""

from __future__ import annotations

import torch

from faceattr_ray.models.anet import ANet
from faceattr_ray.models.lnet import LNet


def count_flops(fn, *inputs) -> int:
    """FLOPs of one call, counted by torch's FlopCounterMode (convolutions and matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        fn(*inputs)
    return int(counter.get_total_flops())


def network_flops(lnet_o: LNet | None, lnet_s: LNet | None, anet: ANet) -> list[dict]:
    """FLOPs per image of each network at its default input size (rows for a table)."""
    rows = []
    for name, net in (("lnet_o", lnet_o), ("lnet_s", lnet_s)):
        if net is None:
            continue
        s = net.config.input_size
        x = torch.zeros(1, 3, s, s, device=next(net.parameters()).device)
        rows.append({"network": name, "what": f"C1-C5 on {s}x{s}",
                     "flops": count_flops(net.c5, x)})
    cfg = anet.config
    dev = next(anet.parameters()).device
    p, w = cfg.patch_size, cfg.window_size
    rows.append({"network": "anet", "what": f"one {p}x{p} patch",
                 "flops": count_flops(anet, torch.zeros(1, 3, p, p, device=dev))})
    win = torch.zeros(1, 3, w, w, device=dev)
    g = cfg.grid * cfg.grid
    rows.append({"network": "anet", "what": f"{g} patches, one pass ({w}x{w} face crop)",
                 "flops": count_flops(anet.patch_features, win)})
    rows.append({"network": "anet", "what": f"{g} patches, patch by patch",
                 "flops": count_flops(anet.patch_features_naive, win)})
    return rows


def format_flops_table(rows: list[dict]) -> str:
    lines = ["| network | input | GFLOPs |", "| --- | --- | ---: |"]
    lines += [f"| {r['network']} | {r['what']} | {r['flops'] / 1e9:.3f} |" for r in rows]
    return "\n".join(lines)
