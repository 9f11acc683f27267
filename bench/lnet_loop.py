"""The LNets' training loop on scenes (`train/lnet_scenes.py`): its arithmetic and who pastes
the scenes, side by side.

`reproduce` trains LNet_o on whole scenes and LNet_s on head-shoulder windows, pasted on the
fly from celeba-mini's train faces and the real backgrounds. Pasting a batch takes about as long
as a float32 step, so a faster step only pays if the pasting keeps up. This bench runs the loop
with each setting, alternated over rounds (a shared machine's load drifts), and prints the
steady inputs/s of each (the first ``--warmup`` steps untimed: a child process starts there):

- ``fp32``: float32, scenes pasted by a thread (RECIPE on CPUs without native bf16);
- ``bf16-cl``: bf16 autocast and channels-last kernels, scenes still pasted by a thread;
- ``bf16-cl-process``: the same, scenes pasted by a child process while one torch thread runs
  the step (RECIPE's ``lnets.native_bf16`` block, on CPUs that compute bf16).

    python bench/lnet_loop.py                      # 200 steps of 32 per stage and setting
    python bench/lnet_loop.py --stages o --rounds 1
    python bench/lnet_loop.py --smoke-test         # generated faces, a tiny LNet, seconds

Last line: JSON {"stages": {stage: {setting: inputs/s}}, "speedup": {stage: the last setting
over the first}, "steps", "batch_size", "native_bf16"}. bf16 pays only where the CPU computes
it (AVX-512 BF16, AMX: `runtime.cpu_has_native_bf16`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

from _training_data import faces_and_backgrounds

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")

# name -> SceneTrainConfig options
SETTINGS = {
    "fp32": {},
    "bf16-cl": {"precision": "bf16", "channels_last": True},
    "bf16-cl-process": {"precision": "bf16", "channels_last": True, "prefetch": "process",
                        "threads": 1},
}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--celeba-root", default=os.path.join(SHARED, "celeba-mini"))
    p.add_argument("--backgrounds", default=os.path.join(SHARED, "backgrounds"))
    p.add_argument("--stages", nargs="+", choices=["o", "s"], default=["o", "s"])
    p.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    p.add_argument("--steps", type=int, default=200, help="steps per stage, setting and round")
    p.add_argument("--warmup", type=int, default=40, help="first steps not timed")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--smoke-test", action="store_true",
                   help="generated faces and backgrounds, the smoke LNet, 6 steps")
    return p


def steady_rate(marks: list[tuple[float, int]], batch: int) -> float:
    """Inputs/s between the first and the last (time, steps done) mark."""
    (t1, n1), (t2, n2) = marks[0], marks[-1]
    return (n2 - n1) * batch / max(t2 - t1, 1e-9)


def main(args: argparse.Namespace) -> None:
    from faceattr_ray.runtime import passive_thread_waits

    passive_thread_waits()  # as `faceattr-ray reproduce` runs (unless the environment says)
    import numpy as np
    import torch

    from faceattr_ray import reproduce
    from faceattr_ray.data.scenes import SceneMaker, list_backgrounds, load_background
    from faceattr_ray.models import LNetConfig
    from faceattr_ray.runtime import cpu_has_native_bf16
    from faceattr_ray.train import lnet_scenes

    recipe = reproduce.resolve_recipe(args.smoke_test, None)
    r = recipe["lnets"]
    if args.smoke_test:
        args.steps, args.warmup = 6, 2
    with tempfile.TemporaryDirectory() as tmp:
        root, backgrounds = faces_and_backgrounds(args.celeba_root, args.backgrounds, tmp,
                                                  args.smoke_test)
        faces, labels = reproduce.split_faces(root, "train", None)
        listed, _ = list_backgrounds(backgrounds)
        maker = SceneMaker(faces, labels, [load_background(p) for p in listed],
                           size=(r["scene_size"], r["scene_size"]), face_px=tuple(r["face_px"]))
    config = LNetConfig.from_dict({**recipe["lnet_arch"], "num_attributes": labels.shape[1]})
    # LNet_s reads LNet_o's false proposals as a fifth of its inputs (windows cut from the
    # photos once, before the loop): stand-ins here, windows of the backgrounds
    rng, side = np.random.default_rng(0), r["window_size"]
    hard = np.stack([maker.background(rng, (side, side)) for _ in range(64)])
    rates: dict[str, dict[str, list[float]]] = {
        stage: {name: [] for name in args.settings} for stage in args.stages}
    for round_ in range(args.rounds):
        for stage in args.stages:
            for name in args.settings:
                cfg = lnet_scenes.SceneTrainConfig(
                    stage=stage, steps=args.steps, batch_size=r["batch_size"], lr=r["lr"],
                    weight_decay=r["weight_decay"], scene_size=r["scene_size"],
                    face_px=tuple(r["face_px"]), window_size=r["window_size"], seed=round_,
                    log_every=1, **SETTINGS[name])  # a line every step: the steady rate
                marks: list[tuple[float, int]] = []

                def log(message: str, marks=marks) -> None:
                    done = int(message.split(" step ")[1].split("/")[0])
                    if done > args.warmup or done == args.steps:
                        marks.append((time.perf_counter(), done))

                lnet_scenes.train_lnet(maker, cfg, config, log=log, hard_negatives=hard)
                rates[stage][name].append(steady_rate(marks, r["batch_size"]))
    best = {stage: {name: round(max(v), 1) for name, v in by.items()} for stage, by in rates.items()}
    first, last = args.settings[0], args.settings[-1]
    print(f"setting: reproduce's LNet loop (RECIPE lnets, {config.channels} channels), "
          f"{args.steps} steps of {r['batch_size']} per stage and setting (the first "
          f"{args.warmup} untimed), {args.rounds} round(s) alternated (best of each), "
          f"{os.cpu_count()} CPUs, torch {torch.get_num_threads()} threads, native bf16 "
          f"{cpu_has_native_bf16()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
          f"faces from {root}")
    for stage, by in best.items():
        for name, rate in by.items():
            print(f"lnet_{stage} {name}: {rate} inputs/s (rounds: "
                  f"{', '.join(f'{x:.1f}' for x in rates[stage][name])})")
    print(json.dumps({"stages": best,
                      "speedup": {stage: round(by[last] / by[first], 3)
                                  for stage, by in best.items()},
                      "steps": args.steps, "batch_size": r["batch_size"],
                      "native_bf16": cpu_has_native_bf16()}))


if __name__ == "__main__":
    try:
        main(get_args_parser().parse_args())
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"bench/lnet_loop.py: {e}")
