"""Face-part masks of generated people: drawn with the image, in the right places, and the image
is the same with or without them; pasted real faces get none."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from faceattr_ray.cli import main
from faceattr_ray.data import synthetic as syn
from faceattr_ray.data.parts import BROWS, EYES, HAIR, MOUTH, NOSE, NUM_PARTS, SKIN


def _centroid_y(mask: np.ndarray, part: int) -> float:
    return float(np.nonzero(mask == part)[0].mean())


def test_aligned_masks_place_the_parts_and_leave_the_image_unchanged(tmp_path):
    syn.write_aligned(str(tmp_path / "m"), 8, 4, seed=2, masks=True)
    syn.write_aligned(str(tmp_path / "p"), 8, 4, seed=2)
    assert not (tmp_path / "p" / syn.PARTS_DIR).exists()
    for k in range(1, 9):
        name = f"{k:06d}"
        with_masks = np.asarray(Image.open(tmp_path / "m" / "img_align_celeba" / f"{name}.jpg"))
        without = np.asarray(Image.open(tmp_path / "p" / "img_align_celeba" / f"{name}.jpg"))
        assert np.array_equal(with_masks, without)
        mask = np.asarray(Image.open(tmp_path / "m" / syn.PARTS_DIR / f"{name}.png"))
        assert mask.shape == with_masks.shape[:2] and mask.max() < NUM_PARTS
        for part in (SKIN, EYES, BROWS, NOSE, MOUTH):
            assert (mask == part).sum() > 0, (name, part)
        # top to bottom as on a face
        assert (_centroid_y(mask, BROWS) < _centroid_y(mask, EYES) < _centroid_y(mask, NOSE)
                < _centroid_y(mask, MOUTH))
        eyes_x = np.nonzero(mask == EYES)[1]
        w = mask.shape[1]
        assert eyes_x.min() < w / 2 < eyes_x.max()  # two eyes, either side of the midline
        # labelled pixels look like their part: the eyes hold the pupils, darker than any skin
        skin = with_masks[mask == SKIN].astype(float).sum(1)
        assert with_masks[mask == EYES].astype(float).sum(1).min() < np.percentile(skin, 5)


def test_wild_masks_cover_every_person(tmp_path):
    syn.write_wild(str(tmp_path), 4, 6, seed=1, max_people=3, masks=True)
    people = syn.read_all_faces(str(tmp_path))
    for name, info in people.items():
        mask = np.asarray(Image.open(tmp_path / syn.PARTS_DIR / (name[:-4] + ".png")))
        for face in info["faces"]:
            x1, y1, x2, y2 = face["face"]
            cx, cy = int((x1 + x2) / 2), int((y1 + y2) / 2)
            centre = mask[cy - 1:cy + 2, cx - 1:cx + 2]
            assert np.isin(centre, (SKIN, NOSE, EYES, MOUTH, BROWS, HAIR)).any(), name


def test_generate_masks_cli_and_paste_refuses(tmp_path, capsys):
    out = tmp_path / "gen"
    assert main(["generate", "--kind", "aligned", "--count", "3", "--identities", "2",
                 "--masks", "--out", str(out)]) == 0
    assert len(list((out / syn.PARTS_DIR).glob("*.png"))) == 3
    rc = main(["generate", "--kind", "paste", "--faces-from", str(out), "--count", "1",
               "--masks", "--out", str(tmp_path / "paste")])
    assert rc != 0 and "never drawn" in capsys.readouterr().err


def test_generate_pseudo_parts_masks_every_train_face_and_links_the_images(tmp_path, capsys):
    from faceattr_ray.data.celeba import read_celeba

    root = syn.write_aligned(str(tmp_path / "root"), 12, 4, seed=1)
    out = tmp_path / "pseudo"
    assert main(["generate", "--kind", "pseudo-parts", "--faces-from", root, "--count", "0",
                 "--out", str(out)]) == 0
    train = [os.path.basename(str(p)) for p in read_celeba(root, split="train").paths]
    masks = sorted(p.name for p in (out / syn.PARTS_DIR).glob("*.png"))
    assert masks and masks == sorted(os.path.splitext(n)[0] + ".png" for n in train)
    assert (out / "list_attr_celeba.txt").is_symlink()  # the root is linked, not copied
    for name in masks:
        mask = np.asarray(Image.open(out / syn.PARTS_DIR / name))
        assert mask.shape == (syn.ALIGNED_SIZE[1], syn.ALIGNED_SIZE[0])
        assert {EYES, NOSE, MOUTH} <= set(np.unique(mask).tolist()) and mask.max() < NUM_PARTS
    assert main(["generate", "--kind", "pseudo-parts", "--out", str(tmp_path / "x")]) == 2
    assert "needs --faces-from" in capsys.readouterr().err
