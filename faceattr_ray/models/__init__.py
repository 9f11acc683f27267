"""The networks (LNet, ANet; the parsing-guided SSP+SSG family) and the preprocessing that
feeds them."""

from __future__ import annotations

from faceattr_ray.models.anet import ANet, ANetConfig
from faceattr_ray.models.ensemble import (
    AttributeEnsemble,
    EnsembleConfig,
    is_ensemble,
    read_as_one,
)
from faceattr_ray.models.layers import LocallySharedConv2d
from faceattr_ray.models.lnet import LNet, LNetConfig, c5_size, load_alexnet_weights, response_maps
from faceattr_ray.models.parsing import ParsingConfig, ParsingNet
from faceattr_ray.models.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocess,
    normalize,
    resize,
    to_tensor,
)
from faceattr_ray.models.ssp_ssg import SSPSSGConfig, SSPSSGNet, is_ssp_ssg, part_weights


def attribute_network(config: dict):
    """The attribute network a config describes: `SSPSSGNet` for the "ssp-ssg" family, an
    `AttributeEnsemble` of its members' networks for "ensemble", else `ANet` (a bundle's "anet"
    entry holds any of them)."""
    if is_ensemble(config):
        return AttributeEnsemble([attribute_network(m) for m in config["members"]])
    if is_ssp_ssg(config):
        return SSPSSGNet(SSPSSGConfig.from_dict(config))
    return ANet(ANetConfig.from_dict(config))


__all__ = [
    "ANet", "ANetConfig", "AttributeEnsemble", "EnsembleConfig", "IMAGENET_MEAN", "IMAGENET_STD",
    "LNet", "LNetConfig", "LocallySharedConv2d", "ParsingConfig", "ParsingNet", "Preprocess",
    "SSPSSGConfig", "SSPSSGNet", "attribute_network", "c5_size", "is_ensemble", "is_ssp_ssg",
    "load_alexnet_weights", "normalize", "part_weights", "read_as_one", "resize", "response_maps",
    "to_tensor",
]
