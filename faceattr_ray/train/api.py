"""Plain-Python entry points: configure a job, run it (Ray Train or in-process), write a bundle.

The CLI, `reproduce` and the benchmarks call these; each returns trained networks, so a caller
can chain the schedule (pre-train -> fine-tune -> heads) without touching Ray details.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import uuid

from torch import nn

from faceattr_ray.errors import BundleError
from faceattr_ray.presets import architecture
from faceattr_ray.runtime import DECODE_CPUS, check_precision
from faceattr_ray.train import common

DEFAULTS: dict = {
    "epochs": 10, "batch_size": 64, "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4,
    "seed": 0, "num_workers": 1, "use_gpu": False, "max_failures": 2, "local": False,
    "storage_path": None, "run_name": None, "max_steps": None, "limit": None,
    "decode_cpus": DECODE_CPUS, "decode_batch": 32, "similarity_weight": 0.1,
    "images_per_identity": 4, "min_images": 2, "attributes": None, "image_dir": None,
    "augment": True, "shuffle": True, "lnet": {}, "anet": {},
    # in-process training: batches made while the network trains, by a "thread"
    # (common.prefetched; 0.98x ANet on 2 cores: the GIL) or a child "process"
    # (common.BatchProcess; bench/prefetch.py); False: between the steps
    "prefetch": False,
    # in-process training: score the val split every this many epochs (and after the last)
    "val_every": 1,
    # attribute training (ANet, SSP+SSG): decoded face images kept in memory, up to this many
    # MiB per process, so each is decoded once rather than once an epoch (data.decode.
    # DecodedCache; every process that makes batches holds its own); 0: off
    "image_cache_mb": 0,
    # models.Preprocess keys (mean, std, face_context, LNet reading sizes); written into the
    # bundle, so inference reads images exactly as training did
    "preprocess": {},
    # "sgd" (the paper's) or "adamw"; "constant" or "cosine" (per step, after a linear warm-up)
    "optimizer": "sgd", "schedule": "constant", "warmup_epochs": 0,
    # finetune: background-only image paths, LNet training rows with every tag absent
    "negatives": None,
    # finetune ANet: {"share", "face_px", "backgrounds": paths}: that share of training crops
    # made as a localizer finds the face in a photo (data/scenes.wild_face_window)
    "wild": None,
    # arithmetic and memory layout of the networks (runtime.PRECISIONS; "auto": autocast on a
    # GPU, float32 on a CPU) and channels-last convolutions (None: on a GPU only)
    "precision": "auto", "channels_last": None,
    # the weights a run returns (and validates, and checkpoints beside the last step's): an
    # exponential moving average over the steps at this decay (common.weight_average); None:
    # the last step's
    "ema_decay": None,
    # in-process training: a wall-clock budget in minutes; the epochs are cut to what fits,
    # read off the epochs already timed (common.epochs_within); None: no budget
    "minutes": None,
}
# --smoke-test: the "smoke" preset's networks, a handful of images, 2 steps, in-process.
SMOKE = {"epochs": 1, "max_steps": 2, "batch_size": 4, "limit": 8, "local": True,
         "use_gpu": False, **architecture("smoke")}


def make_config(job: str, data: str, smoke_test: bool = False, **options) -> dict:
    """The resolved configuration of a job (JSON-serialisable; written next to its bundle)."""
    from faceattr_ray.models import ANetConfig, LNetConfig, Preprocess

    cfg = copy.deepcopy(DEFAULTS)
    if smoke_test:
        cfg.update(copy.deepcopy(SMOKE))
    for key, value in options.items():
        if value is None and key in cfg:
            continue  # an unset CLI option keeps the default
        if key in ("lnet", "anet", "preprocess"):
            cfg[key] = {**cfg[key], **(value or {})}
        else:
            cfg[key] = value
    cfg.update(job=job, data=data, smoke_test=smoke_test)
    check_precision(cfg["precision"])
    common.check_ema_decay(cfg["ema_decay"])
    cfg["lnet"] = LNetConfig.from_dict(cfg["lnet"]).to_dict()
    cfg["anet"] = ANetConfig.from_dict(cfg["anet"]).to_dict()
    cfg["preprocess"] = Preprocess.from_dict(cfg["preprocess"]).to_dict()
    return cfg


def fit(cfg: dict, init_state: dict | None = None) -> tuple[nn.Module, dict]:
    """Run one job: in this process when cfg["local"], else on Ray Train (checkpoints, resume).

    `init_state`: weights to start from (tensors matching by name and shape are copied).
    Returns the trained model (the job's wrapper; `.net` is the network) and the last metrics.
    """
    if cfg["local"]:
        return common.fit_local(cfg, init_state=init_state)
    if cfg.get("minutes") is not None:
        raise ValueError("minutes: a time budget applies to in-process training only "
                         "(local=True); Ray Train runs its epochs as set")
    cfg = dict(cfg)
    cfg["storage_path"] = cfg["storage_path"] or os.path.join(tempfile.gettempdir(),
                                                              "faceattr_ray_results")
    # No name = a fresh run; only an explicit name resumes (never someone else's run by accident).
    cfg["run_name"] = cfg["run_name"] or f"{cfg['job']}-{uuid.uuid4().hex[:8]}"
    return common.fit_ray(cfg, init_state=init_state)


# --- the three jobs ---------------------------------------------------------------------------


def pretrain_lnet(data: str, init_alexnet: str | None = None,
                  **options) -> tuple[nn.Module, dict, dict]:
    """LNet+ on an image folder of classes, optionally from torchvision AlexNet weights (a
    state_dict file). Returns (LNet, last metrics, resolved config)."""
    from faceattr_ray.models import LNet, LNetConfig, load_alexnet_weights
    from faceattr_ray.train import lnet_pretrain

    cfg = lnet_pretrain.resolve(make_config("lnet-pretrain", data, **options))
    init_state = None
    if init_alexnet:
        lnet = LNet(LNetConfig.from_dict(cfg["lnet"]))
        load_alexnet_weights(lnet, init_alexnet)
        init_state = lnet.state_dict()
        cfg["init"] = init_alexnet
    route, metrics = fit(cfg, init_state)
    return route.net, metrics, cfg


def pretrain_anet(data: str, init: nn.Module | None = None,
                  **options) -> tuple[nn.Module, dict, dict]:
    """ANet on identities (softmax + similarity), optionally continuing from `init` (an ANet,
    whose architecture is kept). Returns (ANet, last metrics, resolved config)."""
    from faceattr_ray.train import anet_pretrain

    if init is not None:
        options["anet"] = {**init.config.to_dict(), **(options.get("anet") or {})}
    cfg = anet_pretrain.resolve(make_config("anet-pretrain", data, **options))
    wrapped, metrics = fit(cfg, None if init is None else init.state_dict())
    return wrapped.net, metrics, cfg


NETS = ("lnet_o", "lnet_s", "anet")


def finetune(data: str, nets: tuple[str, ...] = NETS, init: dict[str, nn.Module] | None = None,
             headshoulder: str = "lnet_o", **options) -> tuple[dict[str, nn.Module], dict, dict]:
    """Fine-tune `nets` with attribute tags, in the paper's order (LNet_o, then LNet_s on its
    windows, then ANet). `init` maps net names ("lnet" for both LNets, or "lnet_o", "lnet_s",
    "anet") to networks to start from; a net not fine-tuned is passed through from `init`.
    `headshoulder`: "lnet_o" (LNet_s windows from LNet_o's response map, the paper's way) or
    "boxes" (the data's head-shoulder box file; the whole image where there is none).
    Returns ({name: network}, {name: last metrics}, resolved config).
    """
    from faceattr_ray.models import AttributeEnsemble

    init = dict(init or {})
    unknown = set(nets) - set(NETS)
    if unknown:
        raise ValueError(f"finetune: unknown nets {sorted(unknown)}; use {', '.join(NETS)}")
    # A network to start from fixes its architecture; the heads follow the attribute set.
    arch = dict(options)
    for net_key, names in (("lnet", ("lnet_o", "lnet_s", "lnet")), ("anet", ("anet",))):
        given = next((init[n] for n in names if n in init), None)
        if net_key == "anet" and "anet" in nets and isinstance(given, AttributeEnsemble):
            raise ValueError("finetune: the given ANet is an ensemble of several; fine-tune "
                             "each member's bundle, then read them as one (reproduce's "
                             "anet_members or anet_init)")
        if given is not None:
            arch[net_key] = {**given.config.to_dict(), **(options.get(net_key) or {})}
    base = make_config("finetune", data, **arch)
    attributes = _attribute_names(base)
    base["attributes"] = attributes
    base["lnet"]["num_attributes"] = base["anet"]["num_attributes"] = len(attributes)
    base["lnet"]["num_classes"] = 0  # LNet+'s object classifier is not used from here on
    base["anet"]["num_identities"] = 0  # nor ANet's identity head
    base["nets"], base["headshoulder"] = list(nets), headshoulder
    out: dict[str, nn.Module] = {}
    metrics: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in NETS:
            start = init.get(name, init.get("lnet") if name.startswith("lnet") else None)
            if name not in nets:
                if start is not None:
                    out[name] = start
                continue
            cfg = dict(base, job=f"finetune-{name}")
            if base["run_name"]:
                cfg["run_name"] = f"{base['run_name']}-{name}"
            if name == "lnet_s" and headshoulder == "lnet_o" and "lnet_o" in out:
                cfg["headshoulder_boxes"] = _write_headshoulder(out["lnet_o"], cfg, scratch)
            model, metrics[name] = fit(cfg, None if start is None else start.state_dict())
            out[name] = model.net
    return out, metrics, base


# --- the SSP+SSG family (train/ssp_ssg.py) -----------------------------------------------------


def _ssp_ssg_config(job: str, data: str, arch: dict | None, **options) -> dict:
    from faceattr_ray.models import SSPSSGConfig

    cfg = make_config(job, data, **options)
    base = architecture("ssp-ssg-smoke" if cfg["smoke_test"] else "ssp-ssg")["ssp_ssg"]
    cfg["ssp_ssg"] = SSPSSGConfig.from_dict({**base, **(arch or {})}).to_dict()
    return cfg


def train_parsing(data: str, ssp_ssg: dict | None = None, init: nn.Module | None = None,
                  **options) -> tuple[nn.Module, dict, dict]:
    """The parsing network on a face-parsing root (`data.parsing` layouts). Returns a whole
    SSP+SSG network (its attribute part fresh; `init`'s when given) with the trained parsing
    network, the last metrics (pixel accuracy) and the resolved config."""
    from faceattr_ray.models import SSPSSGConfig, SSPSSGNet

    if init is not None:
        ssp_ssg = {**init.config.to_dict(), **(ssp_ssg or {})}
    cfg = _ssp_ssg_config("parsing", data, ssp_ssg, **options)
    route, metrics = fit(cfg, None if init is None else init.parsing.state_dict())
    net = init if init is not None else SSPSSGNet(SSPSSGConfig.from_dict(cfg["ssp_ssg"]))
    net.parsing.load_state_dict(route.net.state_dict())
    return net.eval(), metrics, cfg


def finetune_ssp_ssg(data: str, init: nn.Module | None = None, ssp_ssg: dict | None = None,
                     **options) -> tuple[nn.Module, dict, dict]:
    """SSP+SSG trained jointly with attribute tags (a CelebA-layout root) and, with
    ``parsing_data``, part masks (train/ssp_ssg.py). ``init``: an SSP+SSG network to start from
    (e.g. `train_parsing`'s; its architecture is kept, its heads follow the attribute set).
    Returns (network, last metrics, resolved config)."""
    if init is not None:
        ssp_ssg = {**init.config.to_dict(), **(ssp_ssg or {})}
    cfg = _ssp_ssg_config("finetune-ssp-ssg", data, ssp_ssg, **options)
    cfg["attributes"] = _attribute_names(cfg)
    cfg["ssp_ssg"]["num_attributes"] = len(cfg["attributes"])
    model, metrics = fit(cfg, None if init is None else init.state_dict())
    return model.net.eval(), metrics, cfg


def load_init(path: str, net: str) -> nn.Module:
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


def finetune_init(init: str | None = None, init_lnet: str | None = None,
                  init_anet: str | None = None) -> dict[str, nn.Module]:
    """Networks to start fine-tuning from: every trained network of the bundle ``init``, then
    LNet+ for both LNets (``init_lnet``: a bundle or a torchvision AlexNet file) and an ANet
    (``init_anet``: a bundle) on top."""
    nets: dict[str, nn.Module] = {}
    if init:  # a bundle: every network it has
        for name in NETS:
            try:
                nets[name] = load_init(init, name)
            except BundleError:
                continue
    if init_lnet:
        nets.pop("lnet_o", None)
        nets.pop("lnet_s", None)
        nets["lnet"] = load_init(init_lnet, "lnet_o")
    if init_anet:
        nets["anet"] = load_init(init_anet, "anet")
    return nets


def _attribute_names(cfg: dict) -> list[str]:
    from faceattr_ray.train.finetune import read_table

    names = list(read_table(cfg).names)
    wanted = cfg.get("attributes") or names
    missing = [n for n in wanted if n not in names]
    if missing:
        raise BundleError(f"{cfg['data']}: no attribute column(s) {', '.join(missing)}")
    return list(wanted)


def _write_headshoulder(lnet_o: nn.Module, cfg: dict, scratch: str) -> str:
    """Head-shoulder windows of the train and val images from LNet_o, as a JSON of boxes."""
    from faceattr_ray.train.finetune import headshoulder_boxes, lnet_o_rows

    paths = [r["path"] for split in ("train", "val") for r in lnet_o_rows(cfg, split)]
    boxes = headshoulder_boxes(lnet_o, paths, cfg=cfg)
    path = os.path.join(scratch, "headshoulder.json")
    with open(path, "w") as f:
        json.dump(boxes, f)
    return path


def save_job_bundle(out: str, nets: dict[str, nn.Module], cfg: dict,
                    trained: list[str] | None = None) -> None:
    """A model bundle of what a job trained. The bundle format always holds an ANet: a job that
    trains none (lnet-pretrain) stores a fresh one, marked untrained in `config["training"]`.
    A fine-tuned ANet's attribute layer becomes the bundle's linear heads, so it predicts at
    once; `faceattr-ray train heads` replaces them with SVMs (the paper's heads).
    ``trained`` overrides the list of trained networks written (e.g. ["parsing"])."""
    from faceattr_ray.bundle import Bundle, save_bundle
    from faceattr_ray.models import ANet, ANetConfig

    anet = nets.get("anet")
    trained = trained if trained is not None else sorted(n for n in nets if n in NETS)
    if anet is None:
        anet = ANet(ANetConfig.from_dict(dict(cfg["anet"], num_identities=0)))
    attributes = list(cfg.get("attributes") or [])
    heads = None
    if "anet" in nets and attributes and anet.config.num_attributes == len(attributes):
        heads = {"weight": anet.attribute_head.weight.detach().cpu().numpy(),
                 "bias": anet.attribute_head.bias.detach().cpu().numpy()}
    config = {"training": {"job": cfg["job"], "trained": trained,
                           "config_file": "train_config.json"},
              "preprocess": cfg["preprocess"]}
    save_bundle(out, Bundle(path=None, config=config, attributes=attributes,
                            lnet_o=nets.get("lnet_o"), lnet_s=nets.get("lnet_s"), anet=anet,
                            heads=heads))


def write_config(out: str, cfg: dict, metrics: dict) -> str:
    """The resolved configuration and last metrics, next to the bundle."""
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "train_config.json")
    with open(path, "w") as f:
        json.dump({"config": cfg, "metrics": metrics}, f, indent=1, default=str)
    return path
