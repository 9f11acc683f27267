"""Dataset readers, input listing, image decoding and generated data.

Readers hand out paths and labels; images are decoded where the work runs (``load_image`` /
``decode_image``). Nothing here imports torch.
"""

from faceattr_ray.data.celeba import CelebA, read_celeba
from faceattr_ray.data.decode import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image, load_image
from faceattr_ray.data.lfwa import LFWA, read_lfwa, read_mat
from faceattr_ray.data.sources import (
    IMAGE_EXTENSIONS,
    is_uri,
    list_inputs,
    read_bytes,
    read_manifest,
)
from faceattr_ray.data.tables import (
    AttributeTable,
    ImageFolder,
    read_attribute_table,
    read_image_folder,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "LFWA",
    "AttributeTable",
    "CelebA",
    "ImageDecodeError",
    "ImageFolder",
    "decode_image",
    "is_uri",
    "list_inputs",
    "load_image",
    "read_attribute_table",
    "read_bytes",
    "read_celeba",
    "read_image_folder",
    "read_lfwa",
    "read_manifest",
    "read_mat",
]
