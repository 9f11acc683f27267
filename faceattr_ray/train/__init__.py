"""Training (paper sections 2.1, 2.2) on Ray Train, with the same step logic runnable in-process.

    from faceattr_ray.train import pretrain_lnet, pretrain_anet, finetune, save_job_bundle
    lnet, metrics, cfg = pretrain_lnet("imagenet_folder/", epochs=10, num_workers=4, use_gpu=True)
    anet, metrics, cfg = pretrain_anet("celeba/", local=True, epochs=2)     # no Ray
    nets, metrics, cfg = finetune("celeba/", init={"lnet": lnet, "anet": anet})
    save_job_bundle("bundle/", nets, cfg)

Each accepts the config keys of `api.DEFAULTS` as keyword options (`local=True` runs without
Ray; `smoke_test=True` is tiny). Importing this package does not import Ray.
"""

from faceattr_ray.train.api import (
    DEFAULTS,
    NETS,
    finetune,
    fit,
    make_config,
    pretrain_anet,
    pretrain_lnet,
    save_job_bundle,
    write_config,
)
from faceattr_ray.train.losses import masked_bce, similarity_loss

__all__ = [
    "DEFAULTS", "NETS", "finetune", "fit", "make_config", "masked_bce", "pretrain_anet",
    "pretrain_lnet", "save_job_bundle", "similarity_loss", "write_config",
]
