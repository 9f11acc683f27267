"""Generated people: deterministic, boxes where the faces are, attributes visible, and written in
a layout the CelebA reader reads back."""

from __future__ import annotations

import dataclasses
import filecmp
import os

import numpy as np
import pytest
from PIL import Image

from faceattr_ray.attributes import CELEBA_40
from faceattr_ray.cli import main
from faceattr_ray.data import backgrounds, paste, people, read_celeba
from faceattr_ray.data import synthetic as syn


def plain(size=(160, 160), colour=(128, 128, 128)) -> Image.Image:
    return Image.new("RGB", size, colour)


def draw(ident, attrs, angle=0.0, seed=0, size=(160, 160), center=(80, 60), face_width=40):
    canvas = plain(size)
    person = people.render_person(canvas, ident, attrs, center, face_width, angle,
                               np.random.default_rng(seed))
    return np.asarray(canvas).astype(int), person


def person_of(index=0, **changes):
    """A non-bald woman with hair (so every hair attribute shows), changed as asked."""
    ident = next(i for i in (people.make_identity(k, 3) for k in range(200))
                 if not i.male and not i.bald and i.hair != "Gray_Hair")
    return dataclasses.replace(ident, **changes)


def neutral(ident) -> dict[str, bool]:
    a = {n: False for n in CELEBA_40}
    a.update(Young=True, No_Beard=True, Straight_Hair=True)
    return a


def test_labels_cover_celeba_40_and_are_consistent():
    assert len(people.RENDERED) >= 15 and set(people.RENDERED) | set(people.UNRENDERED) == set(CELEBA_40)
    rng = np.random.default_rng(0)
    for k in range(300):
        ident = people.make_identity(k, 0)
        a = people.sample_attributes(ident, rng)
        assert list(a) == list(CELEBA_40)
        assert a["No_Beard"] == (not (a["Mustache"] or a["Goatee"]))
        assert sum(a[h] for h in ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")) <= 1
        assert not (a["Bald"] and (a["Bangs"] or a["Black_Hair"] or a["Wavy_Hair"]))
        assert a["Male"] == ident.male and not (a["Male"] and a["Wearing_Lipstick"])
    same = [people.make_identity(7, 0) for _ in range(2)]
    assert same[0] == same[1] and people.make_identity(7, 1) != same[0]


def test_person_stays_inside_its_boxes():
    ident = person_of()
    a = neutral(ident) | {"Wearing_Hat": True}
    for angle in (-12.0, 0.0, 12.0):
        img, p = draw(ident, a, angle=angle)
        changed = (img != 128).any(axis=2)
        x1, y1, x2, y2 = (int(round(v)) for v in p.headshoulder_box)
        inside = np.zeros_like(changed)
        inside[max(0, y1 - 2):y2 + 2, max(0, x1 - 2):x2 + 2] = True
        assert changed[~inside].mean() < 0.01  # nothing drawn outside the head-shoulder box
        fx1, fy1, fx2, fy2 = (int(round(v)) for v in p.face_box)
        assert changed[fy1:fy2, fx1:fx2].mean() > 0.95  # the face box is all face
        skin = np.all(np.abs(img - np.array(ident.skin)) < 4, axis=2)
        ys, xs = np.nonzero(skin[:, :])
        # the face box is tight around the skin-coloured face (ears and neck aside)
        mid = (ys > fy1) & (ys < fy2)
        assert abs(xs[mid].min() - fx1) <= 6 and abs(xs[mid].max() - fx2) <= 6


@pytest.mark.parametrize("name", [
    "Eyeglasses", "Smiling", "Mouth_Slightly_Open", "Bangs", "Mustache", "Goatee", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Earrings", "Wearing_Necklace", "Wearing_Necktie", "Rosy_Cheeks",
    "Heavy_Makeup", "Arched_Eyebrows", "Bushy_Eyebrows", "Narrow_Eyes", "Big_Nose", "Pointy_Nose",
    "Big_Lips", "Double_Chin", "Bags_Under_Eyes", "5_o_Clock_Shadow", "Sideburns",
    "Receding_Hairline", "Wavy_Hair", "Blurry",
])  # fmt: skip
def test_each_attribute_changes_pixels(name):
    ident = person_of()
    a = neutral(ident)
    off, p = draw(ident, a)
    on, _ = draw(ident, a | {name: True})
    assert (np.abs(on - off).sum(axis=2) > 30).sum() >= 4, name


def test_young_and_identity_level_attributes_change_pixels():
    ident = person_of()
    a = neutral(ident)
    base, _ = draw(ident, a)
    assert (draw(ident, a | {"Young": False})[0] != base).any()  # wrinkles
    for change in ({"male": True}, {"pale": True, "skin": (250, 236, 228)}, {"bald": True},
                   {"hair": "Blond_Hair" if ident.hair != "Blond_Hair" else "Black_Hair"},
                   {"face_width_gain": 1.12}, {"face_aspect": ident.face_aspect + 0.15}):
        assert (draw(dataclasses.replace(ident, **change), a)[0] != base).any(), change


def test_eyeglasses_change_the_eye_region_only():
    ident = person_of()
    a = neutral(ident)
    off, p = draw(ident, a)
    on, _ = draw(ident, a | {"Eyeglasses": True})
    ys, xs = np.nonzero(np.abs(on - off).sum(axis=2) > 30)
    fx1, fy1, fx2, fy2 = p.face_box
    eye_y = (fy1 + fy2) / 2 - 0.08 * (fy2 - fy1)
    assert len(ys) > 20
    assert np.all(np.abs(ys - eye_y) < 0.2 * (fy2 - fy1))  # a band around the eyes
    assert xs.min() >= fx1 - 3 and xs.max() <= fx2 + 3  # frames and arms reach the ears


def test_write_aligned_is_deterministic_and_readable(tmp_path):
    a = syn.write_aligned(str(tmp_path / "a"), 24, identities=8, seed=5)
    b = syn.write_aligned(str(tmp_path / "b"), 24, identities=8, seed=5)
    c = syn.write_aligned(str(tmp_path / "c"), 24, identities=8, seed=6)
    names = sorted(os.listdir(os.path.join(a, "img_align_celeba")))
    assert len(names) == 24
    match, mismatch, errors = filecmp.cmpfiles(a, b, ["list_attr_celeba.txt", "identity_CelebA.txt",
                                                      "list_eval_partition.txt"], shallow=False)
    assert len(match) == 3
    for n in names:
        assert filecmp.cmp(os.path.join(a, "img_align_celeba", n),
                           os.path.join(b, "img_align_celeba", n), shallow=False)
    assert not filecmp.cmp(os.path.join(a, "img_align_celeba", names[0]),
                           os.path.join(c, "img_align_celeba", names[0]), shallow=False)
    ds = read_celeba(a)
    assert len(ds) == 24 and ds.names == list(CELEBA_40)
    assert Image.open(ds.paths[0]).size == syn.ALIGNED_SIZE
    parts = {}
    for ident, part in zip(ds.identity, ds.partition, strict=True):
        assert parts.setdefault(int(ident), int(part)) == part  # split by identity
    assert ds.labels.std(axis=0)[CELEBA_40.index("Smiling")] > 0  # labels vary


def test_write_wild_boxes_inside_and_readable(tmp_path):
    root = syn.write_wild(str(tmp_path / "w"), 16, identities=10, seed=1, size=(200, 150),
                          max_people=3, distractor_rate=0.6)
    ds = read_celeba(root)
    assert os.path.basename(ds.image_dir) == "img_celeba" and len(ds) == 16
    assert ds.bbox is not None and ds.headshoulder is not None
    allf = syn.read_all_faces(root)
    assert sum(len(v["faces"]) for v in allf.values()) > 16  # several people per image
    assert sum(len(v["distractors"]) for v in allf.values()) > 0
    for i, name in enumerate(ds.files):
        w, h = Image.open(ds.paths[i]).size
        assert (w, h) == (200, 150)
        x1, y1, x2, y2 = ds.bbox[i]
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        # the dominant face is the largest listed, and the same box
        faces = allf[name]["faces"]
        assert tuple(ds.bbox[i]) == faces[0]["face"]
        areas = [(f["face"][2] - f["face"][0]) * (f["face"][3] - f["face"][1]) for f in faces]
        assert areas[0] == max(areas)
        hx1, hy1, hx2, hy2 = ds.headshoulder[i]
        assert hx1 <= x1 and hy1 <= y1 and hx2 >= x2  # head-shoulder box holds the face
        for d in allf[name]["distractors"]:  # non-human faces never overlap a person's face
            for f in faces:
                assert syn._overlap(d["box"], f["face"]) == 0
    again = syn.write_wild(str(tmp_path / "w2"), 16, identities=10, seed=1, size=(200, 150),
                           max_people=3, distractor_rate=0.6)
    assert filecmp.cmp(os.path.join(root, "list_faces_all.txt"),
                       os.path.join(again, "list_faces_all.txt"), shallow=False)


def test_backgrounds_and_distractors(tmp_path):
    bgs = syn.write_backgrounds(str(tmp_path / "bg"), 3, seed=0, size=(64, 48))
    ds = syn.write_distractors(str(tmp_path / "d"), 3, seed=0, size=(96, 96))
    for p in bgs + ds:
        assert Image.open(p).size in ((64, 48), (96, 96))
    arr = np.asarray(Image.open(bgs[0]))
    assert arr.std() > 10  # cluttered, not flat
    cat = plain((64, 64))
    backgrounds.draw_distractor(cat, (8, 8, 56, 56), "cat", np.random.default_rng(0))
    assert (np.asarray(cat) != 128).any()


def test_paste_faces_keeps_source_labels_and_boxes(tmp_path):
    src = syn.write_aligned(str(tmp_path / "src"), 12, identities=4, seed=2)
    root = paste.paste_faces(src, str(tmp_path / "p"), 8, seed=0, size=(160, 120), max_people=2)
    ds, source = read_celeba(root), read_celeba(src)
    assert len(ds) == 8
    by_identity_split = dict(zip(source.identity.tolist(), source.partition.tolist(), strict=True))
    allf = syn.read_all_faces(root)
    for i, name in enumerate(ds.files):
        x1, y1, x2, y2 = ds.bbox[i]
        assert 0 <= x1 < x2 <= 160 and 0 <= y1 < y2 <= 120
        assert by_identity_split[int(ds.identity[i])] == ds.partition[i]  # splits by identity
        # the dominant face's labels are one of that identity's source label rows
        rows = source.labels[source.identity == ds.identity[i]]
        assert any(np.array_equal(r, ds.labels[i]) for r in rows)
        assert len(allf[name]["faces"]) in (1, 2)


def test_generate_command(tmp_path, capsys):
    assert main(["generate", "--kind", "aligned", "--out", str(tmp_path / "a"), "--count", "4",
                 "--identities", "2"]) == 0
    assert len(read_celeba(str(tmp_path / "a"))) == 4
    assert main(["generate", "--kind", "wild", "--out", str(tmp_path / "w"), "--count", "3",
                 "--size", "128", "96"]) == 0
    assert read_celeba(str(tmp_path / "w")).bbox.shape == (3, 4)
    assert main(["generate", "--kind", "paste", "--out", str(tmp_path / "p"), "--count", "2"]) == 2
    assert "--faces-from" in capsys.readouterr().err


def test_paste_real_celeba_mini_faces(tmp_path, celeba_mini_root):
    root = paste.paste_faces(celeba_mini_root, str(tmp_path / "real"), 4, seed=1, size=(224, 168))
    ds = read_celeba(root)
    mini = read_celeba(celeba_mini_root)
    assert len(ds) == 4 and ds.bbox is not None
    for i in range(len(ds)):
        rows = mini.labels[mini.identity == ds.identity[i]]
        assert any(np.array_equal(r, ds.labels[i]) for r in rows)
        x1, y1, x2, y2 = ds.bbox[i]
        face = np.asarray(Image.open(ds.paths[i]))[int(y1):int(y2), int(x1):int(x2)]
        assert face.size and face.std() > 5  # a real face landed in the box
