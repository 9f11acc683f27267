"""Face-parsing readers on tiny trees made here: CelebAMask-HQ (per-part PNGs, 19 classes),
Helen/LaPa (one label PNG per image, 11 classes) and generated people; each mapped to our 7."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from faceattr_ray.data import parsing
from faceattr_ray.data import parts as P
from faceattr_ray.data.synthetic import write_aligned
from faceattr_ray.errors import DataError


def _save(path, array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _celebamask_tree(root, n: int = 12):
    """n images 16x16, masks 8x8 (half size, as in the dataset): skin square, glasses over the
    eyes row, eyes, lips, hair top row, a hat corner over the hair."""
    for i in range(n):
        _save(root / parsing.CELEBAMASK_IMAGES / f"{i}.jpg", np.full((16, 16, 3), i, np.uint8))
        folder = root / parsing.CELEBAMASK_MASKS / str(i // 2000)
        masks = {name: np.zeros((8, 8), np.uint8) for name in
                 ("skin", "eye_g", "l_eye", "u_lip", "hair", "hat", "neck")}
        masks["skin"][1:7, 1:7] = 255
        masks["eye_g"][2:4, 1:7] = 255
        masks["l_eye"][3, 2] = 255
        masks["u_lip"][5, 3:5] = 255
        masks["hair"][0, :] = 255
        masks["hat"][0, 0] = 255
        masks["neck"][7, 3] = 255
        if i == 0:
            masks["skin"] = np.stack([masks["skin"]] * 3, -1)  # some are saved as RGB
        for name, m in masks.items():
            _save(folder / f"{i:05d}_{name}.png", m)


def test_celebamask_hq_maps_19_classes_onto_our_7(tmp_path):
    _celebamask_tree(tmp_path)
    assert parsing.detect_layout(str(tmp_path)) == "celebamask-hq"
    rows = parsing.parsing_rows(str(tmp_path), "all")
    assert [int(r["path"].split("/")[-1][:-4]) for r in rows] == list(range(12))
    train, val = (parsing.parsing_rows(str(tmp_path), s) for s in ("train", "val"))
    assert len(train) + len(val) + len(parsing.parsing_rows(str(tmp_path), "test")) == 12
    assert not {r["path"] for r in train} & {r["path"] for r in val}
    mask = parsing.load_mask(rows[0])
    assert mask.shape == (8, 8)
    assert mask[3, 2] == P.EYES  # eye over the glasses
    assert mask[2, 5] == P.SKIN  # glasses relabel nothing
    assert mask[5, 3] == mask[5, 4] == P.MOUTH
    assert mask[0, 3] == P.HAIR and mask[0, 0] == P.BACKGROUND  # the hat hides the hair
    assert mask[7, 3] == P.BACKGROUND  # neck
    assert mask[4, 4] == P.SKIN and mask[7, 7] == P.BACKGROUND
    image, resized = parsing.load_pair(rows[0], 4)
    assert image.shape == (4, 4, 3) and set(np.unique(resized)) <= set(range(P.NUM_PARTS))


def test_lapa_and_helen_label_pngs(tmp_path):
    label = np.array([[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 1]], np.uint8)
    for split in ("train", "val"):
        for k in range(3):
            _save(tmp_path / split / "images" / f"{split}{k}.jpg", np.zeros((2, 6, 3), np.uint8))
            _save(tmp_path / split / "labels" / f"{split}{k}.png", label)
    _save(tmp_path / "train" / "images" / "unlabelled.jpg", np.zeros((2, 6, 3), np.uint8))
    assert parsing.detect_layout(str(tmp_path)) == "lapa"
    rows = parsing.parsing_rows(str(tmp_path), "train")
    assert [r["path"].split("/")[-1] for r in rows] == ["train0.jpg", "train1.jpg", "train2.jpg"]
    assert len(parsing.parsing_rows(str(tmp_path), "val")) == 3
    mask = parsing.load_mask(rows[0])
    expected = [[P.BACKGROUND, P.SKIN, P.BROWS, P.BROWS, P.EYES, P.EYES],
                [P.NOSE, P.MOUTH, P.MOUTH, P.MOUTH, P.HAIR, P.SKIN]]
    assert mask.tolist() == expected
    _save(tmp_path / "train" / "labels" / "train1.png", np.full((2, 6), 11, np.uint8))
    with pytest.raises(DataError, match="11 classes"):
        parsing.load_mask(rows[1])


def test_helen_single_folder_and_generated_and_errors(tmp_path):
    helen = tmp_path / "helen"
    for k in range(10):
        _save(helen / "images" / f"{k:03d}.jpg", np.zeros((4, 4, 3), np.uint8))
        _save(helen / "labels" / f"{k:03d}.png", np.full((4, 4), 10, np.uint8))
    rows = parsing.parsing_rows(str(helen), "train")
    assert len(rows) == 8 and parsing.load_mask(rows[0]).max() == P.HAIR
    gen = tmp_path / "gen"
    write_aligned(str(gen), 10, 5, seed=0, masks=True)
    assert parsing.detect_layout(str(gen)) == "generated"
    rows = parsing.parsing_rows(str(gen), "all")
    assert len(rows) == 10 and parsing.load_mask(rows[0]).max() < P.NUM_PARTS
    with pytest.raises(DataError, match="not a face-parsing root"):
        parsing.parsing_rows(str(tmp_path / "gen" / "img_align_celeba"))
    with pytest.raises(DataError, match="unknown split"):
        parsing.parsing_rows(str(gen), "dev")
