"""Model bundles: a directory with ``config.json`` and safetensors weights.

``config.json`` holds the format name and version, the package version, attribute names, the
network configs, preprocessing (`models.Preprocess`), localizer settings (threshold, options),
the heads' array names and the sha256 of every weight file. Loading reads only JSON and safetensors, so it never unpickles code.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load_file as load_torch
from safetensors.torch import save_file as save_torch

from faceattr_ray import __version__
from faceattr_ray.errors import BundleError
from faceattr_ray.models import ANet, LNet, LNetConfig, Preprocess, SSPSSGNet, attribute_network

FORMAT_NAME = "faceattr-ray-bundle"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
NETWORKS = ("lnet_o", "lnet_s", "anet")
HEADS_FILE = "heads.safetensors"


@dataclass
class Bundle:
    path: str | None
    config: dict                       # extra settings (preprocess, localizer, ...); see save
    attributes: list[str]
    lnet_o: LNet | None
    lnet_s: LNet | None
    anet: ANet | SSPSSGNet  # the attribute network: ANet, or the SSP+SSG family (same API)
    heads: dict[str, np.ndarray] | None = None  # SVM heads: weight (A, F), bias (A,)
    threshold: float | None = None     # face/no-face threshold on the max window score
    extra_files: dict[str, str] = field(default_factory=dict)  # name -> sha256, read only

    def head_arrays(self) -> tuple[np.ndarray, np.ndarray, str]:
        """Weight (A, F) and bias (A,) that turn ANet's patch features into this bundle's
        attribute scores (`heads.linear_scores`): the SVM heads when it has them, else ANet's own
        attribute layer (linear too). The third value names which."""
        if self.heads is not None:
            return (np.asarray(self.heads["weight"], np.float32),
                    np.asarray(self.heads["bias"], np.float32), "svm heads")
        head = self.anet.attribute_head
        return (head.weight.detach().cpu().numpy(), head.bias.detach().cpu().numpy(),
                "anet attribute layer")


def default_preprocess() -> dict:
    return Preprocess().to_dict()


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_bundle(path: str | os.PathLike, bundle: Bundle) -> None:
    """Write ``bundle`` into directory ``path`` (created if needed; files overwritten)."""
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    config: dict[str, Any] = dict(bundle.config)
    config.setdefault("preprocess", default_preprocess())
    localizer = dict(config.get("localizer") or {})
    localizer["threshold"] = None if bundle.threshold is None else float(bundle.threshold)
    files: dict[str, str] = {}
    for name in NETWORKS:
        net = getattr(bundle, name)
        if net is None:
            config[name] = None
            continue
        config[name] = net.config.to_dict()
        file = f"{name}.safetensors"
        state = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
        save_torch(state, os.path.join(path, file), metadata={"network": name})
        files[file] = sha256_file(os.path.join(path, file))
    if bundle.heads is not None:
        arrays = {k: np.ascontiguousarray(v, dtype=np.float32)
                  for k, v in bundle.heads.items() if v is not None}
        save_numpy(arrays, os.path.join(path, HEADS_FILE))
        files[HEADS_FILE] = sha256_file(os.path.join(path, HEADS_FILE))
        config["heads"] = {"file": HEADS_FILE, "arrays": sorted(arrays),
                           "shape": list(arrays["weight"].shape) if "weight" in arrays else None}
    else:
        config["heads"] = None
    config.update({
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "package_version": __version__,
        "attributes": list(bundle.attributes), "localizer": localizer,
        "files": {**bundle.extra_files, **files},
    })
    tmp = os.path.join(path, CONFIG_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(config, f, indent=2)
    os.replace(tmp, os.path.join(path, CONFIG_FILE))  # config last: a bundle is whole or absent
    bundle.path = path
    bundle.config = config


def write_heads_bundle(out: str | os.PathLike, heads, base: Bundle, info: dict) -> None:
    """Save ``base`` (a loaded bundle) with ``heads`` (a `heads.LinearHeads`) and how they were
    fit (``info``) into ``out``, copying its extra files when ``out`` is another folder."""
    out = os.fspath(out)
    if base.path and os.path.abspath(base.path) != os.path.abspath(out):
        os.makedirs(out, exist_ok=True)
        for name in base.extra_files:
            shutil.copy2(os.path.join(base.path, name), os.path.join(out, name))
    base.attributes = list(heads.names)
    base.heads = heads.to_arrays()
    base.config = {**base.config, "heads_training": info}
    save_bundle(out, base)


def read_config(path: str | os.PathLike) -> dict:
    """Read and check a bundle's config.json (format and version)."""
    file = os.path.join(os.fspath(path), CONFIG_FILE)
    try:
        with open(file) as f:
            config = json.load(f)
    except FileNotFoundError:
        raise BundleError(f"{file}: not found (is {path} a model bundle?)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{file}: not valid JSON ({e})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT_NAME:
        raise BundleError(f"{file}: not a {FORMAT_NAME} config")
    if not isinstance(config.get("files"), dict):
        raise BundleError(f"{file}: 'files' (weight file hashes) is missing or not a mapping")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(f"{file}: format version {version!r} is not supported "
                          f"(this faceattr-ray reads version {FORMAT_VERSION})")
    return config


def _checked_file(root: str, name: str, config: dict) -> str:
    file = os.path.join(root, name)
    expected = (config.get("files") or {}).get(name)
    if not os.path.isfile(file):
        raise BundleError(f"{file}: missing from the bundle")
    if expected is None:
        raise BundleError(f"{file}: no sha256 for it in {CONFIG_FILE}")
    if sha256_file(file) != expected:
        raise BundleError(f"{file}: sha256 does not match {CONFIG_FILE} (corrupted or replaced)")
    return file


def _load_network(root: str, name: str, config: dict, device: str):
    cfg = config.get(name)
    if cfg is None:
        return None
    file = _checked_file(root, f"{name}.safetensors", config)
    try:
        net = (LNet(LNetConfig.from_dict(cfg)) if name.startswith("lnet")
               else attribute_network(cfg))
    except (TypeError, ValueError) as e:
        raise BundleError(f"{os.path.join(root, CONFIG_FILE)}: bad {name} config ({e})") from None
    try:
        state = load_torch(file)
    except (SafetensorError, OSError) as e:
        raise BundleError(f"{file}: unreadable safetensors ({e})") from None
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise BundleError(f"{file}: tensors do not match the {name} config "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise BundleError(f"{file}: {key} has shape {tuple(value.shape)}, the {name} config "
                              f"expects {tuple(own[key].shape)}")
    net.load_state_dict(state)
    return net.to(device).eval()


def load_bundle(path: str | os.PathLike, device: str | torch.device = "cpu") -> Bundle:
    """Load a bundle written by ``save_bundle``; models come back in eval mode on ``device``."""
    root = os.fspath(path)
    config = read_config(root)
    nets = {name: _load_network(root, name, config, device) for name in NETWORKS}
    if nets["anet"] is None:
        raise BundleError(f"{os.path.join(root, CONFIG_FILE)}: the bundle has no anet")
    attributes = list(config.get("attributes") or [])
    heads = None
    if config.get("heads"):
        file = _checked_file(root, config["heads"].get("file", HEADS_FILE), config)
        try:
            heads = load_numpy(file)
        except (SafetensorError, OSError) as e:
            raise BundleError(f"{file}: unreadable safetensors ({e})") from None
        w, b = heads.get("weight"), heads.get("bias")
        if w is None or b is None:
            raise BundleError(f"{file}: needs arrays 'weight' and 'bias'")
        a, f = len(attributes), nets["anet"].config.feature_dim
        if w.shape != (a, f) or b.shape != (a,):
            raise BundleError(f"{file}: weight {w.shape} / bias {b.shape} do not match "
                              f"{a} attributes x {f} ANet features")
    try:
        Preprocess.of(config)
    except (TypeError, ValueError) as e:
        raise BundleError(f"{os.path.join(root, CONFIG_FILE)}: bad preprocess ({e})") from None
    threshold = (config.get("localizer") or {}).get("threshold")
    ours = {f"{n}.safetensors" for n in NETWORKS} | {HEADS_FILE}
    extra = {k: v for k, v in (config.get("files") or {}).items() if k not in ours}
    return Bundle(path=root, config=config, attributes=attributes, lnet_o=nets["lnet_o"],
                  lnet_s=nets["lnet_s"], anet=nets["anet"], heads=heads,
                  threshold=None if threshold is None else float(threshold), extra_files=extra)
