"""In-process training: batches made ahead of the step by a child process or a thread vs the
plain loop (or, with --wild-shares, one share of wild crops against another).

`reproduce` trains in-process on a small machine; making a batch there (decoding, augmenting,
pasting wild crops) runs between the steps unless ``prefetch`` makes it ahead, in a child
process or a thread. This bench runs the same fine-tuning job with each, alternated over two
rounds (a shared machine's load drifts), and prints images/s of each and the process's ratio
to the plain loop. The job is `reproduce`'s own recipe for the family (ANet, or SSP+SSG
without its parsing rows) on celeba-mini's train faces, wild crops on the real backgrounds
included.

    python bench/prefetch.py                          # ANet, 40 steps of 64 faces per setting
    python bench/prefetch.py --family ssp-ssg
    python bench/prefetch.py --smoke-test             # generated faces, tiny networks, seconds
    python bench/prefetch.py --wild-shares 0.5 0.25   # plain loop, half vs a quarter wild
    python bench/prefetch.py --wait-policies unset PASSIVE   # the child process under each
    python bench/prefetch.py --image-cache 0 1024     # child process, decoded-image cache off / on
    python bench/prefetch.py --numerics fp32 fp32-cl bf16-cl   # arithmetic and memory layout

Last line: JSON {"family", "steps", "batch_size", "process", "thread", "plain", "speedup"
(process over plain), "threads"};
with --wild-shares A B: {..., "share A", "share B", "speedup": B over A, ...}. A wild crop costs
more to make than an aligned one, so the share decides how many epochs fit a budget.
With --wait-policies A B: {..., "wait_policies": {A: .., B: ..}, "speedup": B over A}: torch's
OpenMP threads spinning (ACTIVE), sleeping (PASSIVE, what `faceattr-ray reproduce` and `train`
set unless told otherwise: `runtime.passive_thread_waits`) or as OpenMP does by default (unset: spin a while,
then sleep) while they wait; OpenMP reads the policy when torch loads, so each run is a fresh
process of this script with the child-process setting only.
With --image-cache A B: {..., "cache A MiB", "cache B MiB", "speedup": B over A}: the child
process keeping decoded faces in memory (``image_cache_mb``; 0 = off) or decoding each one every
epoch; the timed second epoch reads what the first one cached.
With --numerics A B ...: {..., A: .., B: .., "speedup": the last over the first}: the child
process setting with the networks in float32 or bf16 autocast (``precision``), "-cl" with
channels-last convolutions (``channels_last``). bf16 pays only where the CPU computes it
(AVX-512 BF16, AMX: `runtime.cpu_has_native_bf16`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from _training_data import faces_and_backgrounds

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")


SETTINGS = ("process", "thread", "plain")
NUMERICS = ("fp32", "fp32-cl", "bf16", "bf16-cl")


def compare_wait_policies(args) -> None:
    """The child-process setting under each OpenMP wait policy, one fresh process of this
    script per policy and round (the policy is read when torch loads), rounds alternated."""
    # --smoke-test: the plain loop (no child to spawn in each run): the plumbing, not the figure
    setting = "plain" if args.smoke_test else "process"
    rates: dict[str, list[float]] = {policy: [] for policy in args.wait_policies}
    for _ in range(args.rounds):
        for policy in args.wait_policies:
            command = [sys.executable, os.path.abspath(__file__), "--settings", setting,
                       "--rounds", "1", "--steps", str(args.steps), "--family", args.family,
                       "--celeba-root", args.celeba_root, "--backgrounds", args.backgrounds,
                       "--as-is"]
            env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
            if policy != "unset":
                env["OMP_WAIT_POLICY"] = policy
            proc = subprocess.run(command + (["--smoke-test"] if args.smoke_test else []),
                                  capture_output=True, text=True, check=True, env=env)
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            if result["wait_policy"] != env.get("OMP_WAIT_POLICY"):
                raise RuntimeError(f"the run for {policy} ran under {result['wait_policy']}")
            rates[policy].append(result[setting])
            steps, batch, threads = result["steps"], result["batch_size"], result["threads"]
    best = {policy: round(max(r), 2) for policy, r in rates.items()}
    first, last = args.wait_policies[0], args.wait_policies[-1]
    maker = "a child process" if setting == "process" else "the loop itself"
    print(f"setting: {args.family} fine-tuning in-process, reproduce's recipe, batches made by "
          f"{maker}, {steps} steps of {batch} faces per run, {args.rounds} round(s) "
          f"alternated (best of each), each run a fresh process with its OMP_WAIT_POLICY, "
          f"{os.cpu_count()} CPUs, torch {threads} threads")
    for policy, rate in best.items():
        print(f"OMP_WAIT_POLICY={policy}: {rate} images/s "
              f"(rounds: {', '.join(f'{r:.1f}' for r in rates[policy])})")
    print(json.dumps({"family": args.family, "steps": steps, "batch_size": batch,
                      "wait_policies": best, "speedup": round(best[last] / best[first], 3),
                      "threads": threads}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", choices=["anet", "ssp-ssg"], default="anet")
    p.add_argument("--celeba-root", default=os.path.join(SHARED, "celeba-mini"))
    p.add_argument("--backgrounds", default=os.path.join(SHARED, "backgrounds"))
    p.add_argument("--steps", type=int, default=40, help="training steps per setting and round")
    p.add_argument("--wild-shares", type=float, nargs=2, default=None, metavar=("A", "B"),
                   help="compare these shares of wild crops (plain loop) instead of prefetch")
    p.add_argument("--wait-policies", nargs="+", default=None, metavar="POLICY",
                   help="compare the child-process setting under these OMP_WAIT_POLICY values "
                        "(ACTIVE, PASSIVE, or unset: OpenMP's default), each run in a fresh "
                        "process")
    p.add_argument("--image-cache", type=float, nargs=2, default=None, metavar=("A", "B"),
                   help="compare these image_cache_mb values (child process) instead")
    p.add_argument("--numerics", nargs="+", default=None, choices=NUMERICS, metavar="NUMERICS",
                   help=f"compare these arithmetic / layout settings ({', '.join(NUMERICS)})")
    p.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS),
                   help="which loops to run (default: all three)")
    p.add_argument("--rounds", type=int, default=2, help="rounds alternating the settings")
    p.add_argument("--as-is", action="store_true",
                   help="leave OMP_WAIT_POLICY as the environment has it (--wait-policies' runs)")
    p.add_argument("--smoke-test", action="store_true",
                   help="generated faces and backgrounds, the smoke recipe, 3 steps")
    args = p.parse_args()
    if args.rounds < 1:
        p.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.wait_policies:
        return compare_wait_policies(args)

    if not args.as_is:
        from faceattr_ray.runtime import passive_thread_waits

        passive_thread_waits()  # as `faceattr-ray reproduce` runs (unless the environment says)
    import torch

    from faceattr_ray import reproduce
    from faceattr_ray.data.scenes import list_backgrounds
    from faceattr_ray.train import api

    recipe = reproduce.resolve_recipe(args.smoke_test, None)
    with tempfile.TemporaryDirectory() as tmp:
        root, backgrounds = faces_and_backgrounds(args.celeba_root, args.backgrounds, tmp,
                                                  args.smoke_test)
        if args.smoke_test:
            args.steps = 3
        listed, _ = list_backgrounds(backgrounds)
        if args.family == "anet":
            options = reproduce.for_this_cpu(
                reproduce.with_wild_crops(recipe["anet_finetune"], recipe, listed), on_cpu=True)
            arch = {"anet": recipe["anet_arch"]}
            train = api.finetune
        else:
            options = reproduce.with_wild_crops(recipe["ssp_ssg"]["finetune"], recipe, listed)
            arch = {"ssp_ssg": recipe["ssp_ssg"]["arch"] or None}
            train = api.finetune_ssp_ssg
        batch = options["batch_size"]
        # two epochs, the second measured: the first starts the child process (a few seconds
        # once per training run, not per epoch)
        options.update(epochs=2, max_steps=args.steps, limit=args.steps * batch, local=True,
                       seed=0, preprocess=recipe.get("preprocess") or {})
        if args.family == "anet":
            options["nets"] = ("anet",)
        # name -> the options each setting compared changes
        if args.wild_shares:
            settings = {f"share {share:g}": {"prefetch": False,
                                             "wild": {**options["wild"], "share": share}}
                        for share in args.wild_shares}
        elif args.image_cache:
            settings = {f"cache {mb:g} MiB": {"prefetch": "process", "image_cache_mb": mb}
                        for mb in args.image_cache}
        elif args.numerics:
            settings = {name: {"prefetch": "process", "precision": name.split("-")[0],
                               "channels_last": name.endswith("-cl")}
                        for name in args.numerics}
        else:
            settings = {mode: {"prefetch": {"plain": False}.get(mode, mode)}
                        for mode in args.settings}
        rates: dict[str, list[float]] = {name: [] for name in settings}
        for _ in range(args.rounds):
            for name, changes in settings.items():
                result = train(root, **arch, **{**options, **changes})
                metrics = result[1]["anet"] if args.family == "anet" else result[1]
                rates[name].append(metrics["images_per_s"])
    best = {name: round(max(r), 2) for name, r in rates.items()}
    threads = torch.get_num_threads()
    shares = (" vs ".join(f"{x:g}" for x in args.wild_shares) + ", plain loop"
              if args.wild_shares else f"{options.get('wild', {}).get('share', 0)}")
    if args.image_cache:
        shares += ", child process, decoded-image cache " + " vs ".join(
            f"{mb:g}" for mb in args.image_cache) + " MiB"
    if args.numerics:
        shares += ", child process, " + " vs ".join(args.numerics)
    print(f"setting: {args.family} fine-tuning in-process, reproduce's recipe (wild crops "
          f"share {shares}), {args.steps} steps of {batch} "
          f"faces per setting (after as many to warm up), {args.rounds} round(s) alternated "
          f"(best of each), {os.cpu_count()} CPUs, torch {threads} threads, OMP_WAIT_POLICY="
          f"{os.environ.get('OMP_WAIT_POLICY')}, faces from {root}")
    for name, rate in best.items():
        print(f"{name}: {rate} images/s (rounds: {', '.join(f'{r:.1f}' for r in rates[name])})")
    # speedup: the child process over the plain loop, or share B over share A
    if args.wild_shares:
        speedup = (best[f"share {args.wild_shares[1]:g}"]
                   / best[f"share {args.wild_shares[0]:g}"])
    elif args.image_cache:
        a, b_ = args.image_cache
        speedup = best[f"cache {b_:g} MiB"] / best[f"cache {a:g} MiB"]
    elif args.numerics:
        speedup = best[args.numerics[-1]] / best[args.numerics[0]]
    elif "process" in best and "plain" in best:
        speedup = best["process"] / best["plain"]
    else:
        speedup = None
    print(json.dumps({"family": args.family, "steps": args.steps, "batch_size": batch, **best,
                      "speedup": speedup if speedup is None else round(speedup, 3),
                      "threads": threads, "wait_policy": os.environ.get("OMP_WAIT_POLICY")}))


if __name__ == "__main__":
    sys.exit(main())
