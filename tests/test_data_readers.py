"""Readers: CelebA (against torchvision), LFWA .mat v5/v7.3, attribute tables, image folders,
input listing. Every malformed input gives a one-line DataError naming the file."""

from __future__ import annotations

import csv
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from faceattr_ray.attributes import CELEBA_40
from faceattr_ray.data import (
    list_inputs,
    read_attribute_table,
    read_celeba,
    read_image_folder,
    read_lfwa,
)
from faceattr_ray.errors import DataError

# --- CelebA ---------------------------------------------------------------------------------

N = 12


def write_celeba_tree(root, n: int = N, seed: int = 0) -> np.ndarray:
    """The official layout with every file torchvision wants; returns the -1/1 attribute matrix."""
    rng = np.random.default_rng(seed)
    for d in ("img_align_celeba", "img_celeba"):
        os.makedirs(root / d, exist_ok=True)
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    for name in names:
        Image.new("RGB", (8, 10), tuple(int(v) for v in rng.integers(0, 255, 3))).save(
            root / "img_align_celeba" / name
        )
    attrs = rng.choice([-1, 1], size=(n, 40))
    with open(root / "list_attr_celeba.txt", "w") as f:  # official spacing: runs of spaces
        f.write(f"{n}\n" + " ".join(CELEBA_40) + " \n")
        for name, row in zip(names, attrs, strict=True):
            f.write(name + " " + " ".join(f"{v:2d}" for v in row) + "\n")
    with open(root / "list_eval_partition.txt", "w") as f:
        f.writelines(f"{name} {i % 3}\n" for i, name in enumerate(names))
    with open(root / "identity_CelebA.txt", "w") as f:
        f.writelines(f"{name} {100 + i // 2}\n" for i, name in enumerate(names))
    with open(root / "list_bbox_celeba.txt", "w") as f:
        f.write(f"{n}\nimage_id x_1 y_1 width height\n")
        f.writelines(
            f"{name}    {10 + i}   {20 + i}  {30 + i}   {40 + i}\n" for i, name in enumerate(names)
        )
    with open(root / "list_landmarks_align_celeba.txt", "w") as f:
        f.write(
            f"{n}\nlefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x "
            "leftmouth_y rightmouth_x rightmouth_y\n"
        )
        f.writelines(
            name + "".join(f" {v:4d}" for v in rng.integers(0, 100, 10)) + "\n" for name in names
        )
    return attrs


def torchvision_celeba(root, split: str, monkeypatch):
    tvd = pytest.importorskip("torchvision.datasets")
    monkeypatch.setattr(tvd.CelebA, "_check_integrity", lambda self: True)  # md5s of the full set
    return tvd.CelebA(
        str(root),
        split=split,
        target_type=["attr", "identity", "bbox", "landmarks"],
        download=False,
    )


@pytest.mark.parametrize(
    "split, tv_split", [("train", "train"), ("val", "valid"), ("test", "test"), ("all", "all")]
)
def test_celeba_agrees_with_torchvision(tmp_path, monkeypatch, split, tv_split):
    root = tmp_path / "celeba"  # torchvision's base_folder
    write_celeba_tree(root)
    ours = read_celeba(str(root), split)
    tv = torchvision_celeba(tmp_path, tv_split, monkeypatch)
    assert ours.files == list(tv.filename)
    assert ours.names == [n for n in tv.attr_names if n]  # tv keeps the trailing-space ""
    assert np.array_equal(ours.labels, tv.attr.numpy().astype(np.float32))
    assert np.array_equal(ours.identity, tv.identity[:, 0].numpy())
    assert np.array_equal(ours.landmarks.reshape(-1, 10), tv.landmarks_align.numpy())
    assert ours.paths == [os.path.join(root, "img_align_celeba", f) for f in ours.files]
    assert all(os.path.exists(p) for p in ours.paths)
    # Boxes belong to the uncropped images: read with img_celeba, as x1, y1, x2, y2.
    assert ours.bbox is None
    wild = read_celeba(str(root), split, image_dir="img_celeba")
    xywh = tv.bbox.numpy()
    assert np.array_equal(
        wild.bbox, np.c_[xywh[:, :2], xywh[:, :2] + xywh[:, 2:]].astype(np.float32)
    )


def test_celeba_mini_agrees_with_torchvision(tmp_path, monkeypatch, celeba_mini_root):
    # torchvision also wants box and landmark files, which celeba-mini lacks: link the real
    # files and add zero-filled ones.
    root = tmp_path / "celeba"
    root.mkdir()
    for name in (
        "img_align_celeba",
        "list_attr_celeba.txt",
        "list_eval_partition.txt",
        "identity_CelebA.txt",
    ):
        (root / name).symlink_to(os.path.join(celeba_mini_root, name))
    text = (root / "list_eval_partition.txt").read_text()
    files = [ln.split()[0] for ln in text.splitlines() if ln.strip()]
    for fname, cols in (("list_bbox_celeba.txt", 4), ("list_landmarks_align_celeba.txt", 10)):
        with open(root / fname, "w") as f:
            f.write(f"{len(files)}\nheader\n")
            f.writelines(name + " 0" * cols + "\n" for name in files)
    for split, tv_split in (("train", "train"), ("val", "valid"), ("test", "test")):
        ours = read_celeba(celeba_mini_root, split)
        tv = torchvision_celeba(tmp_path, tv_split, monkeypatch)
        assert ours.files == list(tv.filename)
        assert np.array_equal(ours.labels, tv.attr.numpy().astype(np.float32))
        assert np.array_equal(ours.identity, tv.identity[:, 0].numpy())
    every = read_celeba(celeba_mini_root)
    assert len(every) == 7984 and every.names == list(CELEBA_40)
    assert Image.open(every.paths[0]).size == (89, 109)
    parts = [set(every.identity[every.partition == p]) for p in (0, 1, 2)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])


def rewrite(path, edit) -> None:
    lines = path.read_text().splitlines()
    edit(lines)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("file, edit, message", [
    ("list_attr_celeba.txt", lambda ln: ln.__setitem__(4, ln[4].rsplit(" ", 1)[0]),
     r"list_attr_celeba.txt:5: expected a name and 40 values, got 40 fields"),
    ("list_attr_celeba.txt", lambda ln: ln.__setitem__(6, ln[6][:-2] + " 2"),
     r"list_attr_celeba.txt:7: value 2 for Young is not -1 or 1"),
    ("list_attr_celeba.txt", lambda ln: ln.__setitem__(3, ln[3][:-2] + " x"),
     r"list_attr_celeba.txt:4: non-integer value"),
    ("list_attr_celeba.txt", lambda ln: ln.__setitem__(0, "13"),
     r"list_attr_celeba.txt:1: says 13 images but lists 12"),
    ("list_attr_celeba.txt", lambda ln: ln.__setitem__(0, "twelve"),
     r"list_attr_celeba.txt:1: expected the image count"),
    ("list_eval_partition.txt", lambda ln: ln.pop(5),
     r"list_eval_partition.txt: no entry for 000006.jpg"),
    ("list_eval_partition.txt", lambda ln: ln.__setitem__(2, "000003.jpg 7"),
     r"list_eval_partition.txt: split 7 for 000003.jpg"),
    ("identity_CelebA.txt", lambda ln: ln.__setitem__(1, "000002.jpg"),
     r"identity_CelebA.txt:2: expected a name and 1 values"),
])  # fmt: skip
def test_celeba_malformed_files(tmp_path, file, edit, message):
    write_celeba_tree(tmp_path)
    rewrite(tmp_path / file, edit)
    with pytest.raises(DataError, match=message):
        read_celeba(str(tmp_path))


def test_celeba_missing_pieces(tmp_path):
    with pytest.raises(DataError, match="CelebA root not found"):
        read_celeba(str(tmp_path / "nope"))
    with pytest.raises(DataError, match="no image folder"):
        read_celeba(str(tmp_path))
    write_celeba_tree(tmp_path)
    with pytest.raises(DataError, match="unknown split"):
        read_celeba(str(tmp_path), "training")
    os.remove(tmp_path / "list_eval_partition.txt")
    assert read_celeba(str(tmp_path)).partition is None  # optional for split="all"
    with pytest.raises(DataError, match="needs .*list_eval_partition.txt"):
        read_celeba(str(tmp_path), "train")
    os.remove(tmp_path / "list_attr_celeba.txt")
    with pytest.raises(DataError, match="missing file: .*list_attr_celeba.txt"):
        read_celeba(str(tmp_path))


# --- LFWA / LFWA+ ---------------------------------------------------------------------------

LFW_NAMES = [
    "AJ_Cook\\AJ_Cook_0001.jpg",
    "Aaron_Eckhart\\Aaron_Eckhart_0001.jpg",
    "Zico\\Zico_0001.jpg",
    "Zico\\Zico_0002.jpg",
    "Émilie_Dequenne\\Émilie_Dequenne_0001.jpg",
]
LFW_ATTRS = ["Male", "Smiling", "Asian"]
LFW_LABELS = np.array([[0, 1, 0], [1, 0, 0], [1, 1, 0], [1, 0, 1], [0, 0, 0]], dtype=np.float64)
TRAIN_IDX = np.array([[2], [4]])  # 1-based, a column vector as MATLAB saves it
TEST_IDX = np.array([[1], [3], [5]])


def cell(strings, shape):
    out = np.empty(shape, dtype=object)
    for i, s in enumerate(strings):
        out.flat[i] = s
    return out


def write_v5(root, key_train="indices_img_train") -> None:
    import scipy.io

    scipy.io.savemat(
        root / "lfw_att_73.mat",
        {
            "AttrName": cell(LFW_ATTRS, (1, len(LFW_ATTRS))),
            "label": LFW_LABELS,
            "name": cell(LFW_NAMES, (len(LFW_NAMES), 1)),
        },
    )
    scipy.io.savemat(
        root / "indices_train_test.mat", {key_train: TRAIN_IDX, "indices_img_test": TEST_IDX}
    )


def write_v73(root) -> None:
    """The layout MATLAB's `save -v7.3` produces: a 512-byte text header, arrays stored
    transposed, char arrays as uint16, cell arrays as references into #refs#."""
    h5py = pytest.importorskip("h5py")

    def mat_file(path):
        f = h5py.File(path, "w", userblock_size=512)
        return f

    def put_cell(f, key, strings, shape):
        refs = f.require_group("#refs#")
        ds = f.create_dataset(key, shape=shape[::-1], dtype=h5py.ref_dtype)
        flat = np.empty(int(np.prod(shape)), dtype=object)
        for i, s in enumerate(strings):
            sd = refs.create_dataset(f"{key}_{i}", data=np.array([[ord(c)] for c in s], np.uint16))
            sd.attrs["MATLAB_class"] = np.bytes_("char")
            flat[i] = sd.ref
        ds[...] = flat.reshape(shape[::-1])
        ds.attrs["MATLAB_class"] = np.bytes_("cell")

    def put_matrix(f, key, arr):
        ds = f.create_dataset(key, data=np.asarray(arr, np.float64).T)
        ds.attrs["MATLAB_class"] = np.bytes_("double")

    with mat_file(root / "lfw_att_73.mat") as f:
        put_cell(f, "AttrName", LFW_ATTRS, (1, len(LFW_ATTRS)))
        put_cell(f, "name", LFW_NAMES, (len(LFW_NAMES), 1))
        put_matrix(f, "label", LFW_LABELS)
    with mat_file(root / "indices_train_test.mat") as f:
        put_matrix(f, "indices_img_train", TRAIN_IDX)
        put_matrix(f, "indices_img_test", TEST_IDX)
    for path in ("lfw_att_73.mat", "indices_train_test.mat"):  # MATLAB's header in the userblock
        with open(root / path, "r+b") as fh:
            fh.write(
                b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 "
                b"HDF5 schema 1.00 ."
            )


@pytest.mark.parametrize("writer", [write_v5, write_v73])
def test_lfwa_reads_both_mat_versions(tmp_path, writer):
    writer(tmp_path)
    (tmp_path / "lfw").mkdir()
    every = read_lfwa(str(tmp_path), "73")
    assert every.names == LFW_ATTRS
    assert every.files == [n.replace("\\", "/") for n in LFW_NAMES]
    assert np.array_equal(every.labels, LFW_LABELS.astype(np.float32))
    assert every.paths[0] == os.path.join(tmp_path, "lfw", "AJ_Cook", "AJ_Cook_0001.jpg")
    assert every.people[every.identity[2]] == every.people[every.identity[3]] == "Zico"
    train = read_lfwa(str(tmp_path), "73", split="train")
    test = read_lfwa(str(tmp_path), "73", split="test")
    assert train.files == [every.files[1], every.files[3]]
    assert test.files == [every.files[0], every.files[2], every.files[4]]
    assert np.array_equal(train.labels, every.labels[[1, 3]])


def test_lfwa_v5_and_v73_agree(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_v5(tmp_path / "a")
    write_v73(tmp_path / "b")
    for split in ("all", "train", "test"):
        a = read_lfwa(str(tmp_path / "a"), "73", split)
        b = read_lfwa(str(tmp_path / "b"), "73", split)
        assert a.files == b.files and a.names == b.names and np.array_equal(a.labels, b.labels)


def test_lfwa_errors(tmp_path):
    import scipy.io

    with pytest.raises(DataError, match="missing file: .*lfw_att_40.mat"):
        read_lfwa(str(tmp_path))
    write_v5(tmp_path, key_train="indices_train")  # another accepted key name
    assert len(read_lfwa(str(tmp_path), "73", "train")) == 2
    scipy.io.savemat(tmp_path / "indices_train_test.mat", {"trn": TRAIN_IDX})
    with pytest.raises(
        DataError, match=r"no train indices \(looked for indices_img_train.*found trn"
    ):
        read_lfwa(str(tmp_path), "73", "train")
    scipy.io.savemat(tmp_path / "indices_train_test.mat", {"indices_img_train": TRAIN_IDX - 2})
    with pytest.raises(DataError, match="out of range 1..5 .*1-based"):
        read_lfwa(str(tmp_path), "73", "train")
    scipy.io.savemat(
        tmp_path / "lfw_att_73.mat", {"AttrName": cell(LFW_ATTRS, (1, 3)), "label": LFW_LABELS}
    )
    with pytest.raises(DataError, match=r"missing variable\(s\) name"):
        read_lfwa(str(tmp_path), "73")
    scipy.io.savemat(
        tmp_path / "lfw_att_73.mat",
        {
            "AttrName": cell(LFW_ATTRS, (1, 3)),
            "label": LFW_LABELS[:, :2],
            "name": cell(LFW_NAMES, (5, 1)),
        },
    )
    with pytest.raises(DataError, match=r"label has shape \(5, 2\), expected \(5, 3\)"):
        read_lfwa(str(tmp_path), "73")
    (tmp_path / "lfw_att_73.mat").write_bytes(b"MATLAB 5.0 MAT-file but not really" + b"\0" * 200)
    with pytest.raises(DataError, match="lfw_att_73.mat: not a readable MATLAB file"):
        read_lfwa(str(tmp_path), "73")


# --- attribute tables -----------------------------------------------------------------------

ODD_PATHS = [
    "imgs/plain.jpg",
    "imgs/with space.jpg",
    "imgs/ünïcödé 顔.jpg",
    "imgs/a,b,c.jpg",
    "123",
]


def test_attribute_table_csv_matches_pandas(tmp_path):
    pd = pytest.importorskip("pandas")
    path = tmp_path / "labels.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "Smiling", "Male", "Hat", "Glasses"])
        rows = [
            (-1, 0, "true", "yes"),
            (1, 1, "false", ""),
            (1, "", "True", "no"),
            (-1, 1, "", "1"),
            (1, 0, "FALSE", "-1"),
        ]
        for p, r in zip(ODD_PATHS, rows, strict=True):
            w.writerow([p, *r])
    table = read_attribute_table(str(path))
    ref = pd.read_csv(path, dtype={"path": str}, keep_default_na=True)
    assert table.paths == list(ref["path"]) == ODD_PATHS
    assert table.names == ["Smiling", "Male", "Hat", "Glasses"]
    nan = np.nan
    want = np.array(
        [[0, 0, 1, 1], [1, 1, 0, nan], [1, nan, 1, 0], [0, 1, nan, 1], [1, 0, 0, 0]],
        dtype=np.float32,
    )
    assert np.array_equal(table.labels, want, equal_nan=True)
    assert np.array_equal(table.labels[:, 0], (ref["Smiling"].to_numpy() > 0).astype(np.float32))
    sub = read_attribute_table(str(path), attributes=["Male"])
    assert sub.names == ["Male"] and np.array_equal(sub.labels[:, 0], want[:, 1], equal_nan=True)


def test_attribute_table_parquet(tmp_path):
    path = tmp_path / "labels.parquet"
    pq.write_table(
        pa.table(
            {
                "image": ODD_PATHS,
                "Smiling": pa.array([True, False, None, True, False]),
                "Male": pa.array([-1, 1, 1, None, -1], pa.int8()),
            }
        ),
        path,
    )
    table = read_attribute_table(str(path), path_column="image")
    assert table.paths == ODD_PATHS and table.names == ["Smiling", "Male"]
    assert np.array_equal(
        table.labels,
        np.array([[1, 0], [0, 1], [np.nan, 1], [1, np.nan], [0, 0]], np.float32),
        equal_nan=True,
    )


def test_attribute_table_errors(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("path,Smiling\na.jpg,1\nb.jpg,maybe\n")
    with pytest.raises(DataError, match=r"bad.csv:3: column 'Smiling': label 'maybe'"):
        read_attribute_table(str(path))
    path.write_text("file,Smiling\na.jpg,1\n")
    with pytest.raises(DataError, match=r"no 'path' column \(columns: file, Smiling\)"):
        read_attribute_table(str(path))
    path.write_text("path,Smiling\na.jpg,1\n,1\n")
    with pytest.raises(DataError, match=r"bad.csv:3: empty 'path'"):
        read_attribute_table(str(path))
    path.write_text("path,Smiling\na.jpg,1,7\n")
    with pytest.raises(DataError, match="bad.csv: cannot read table"):
        read_attribute_table(str(path))
    with pytest.raises(DataError, match="missing file"):
        read_attribute_table(str(tmp_path / "none.csv"))


# --- image folders and input listing --------------------------------------------------------


def touch_image(path) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", (4, 4)).save(path, "PNG")


def test_image_folder_agrees_with_torchvision(tmp_path):
    tvd = pytest.importorskip("torchvision.datasets")
    for rel in (
        "cat/b.png",
        "cat/a.JPG",
        "cat/sub/c.png",
        "cat/sub-x/d.png",
        "dog/z.jpeg",
        "dog/readme.png",
        "bird/1.webp",
    ):
        touch_image(tmp_path / rel)
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    ours = read_image_folder(str(tmp_path))
    tv = tvd.ImageFolder(str(tmp_path))
    assert ours.classes == tv.classes == ["bird", "cat", "dog"]
    assert list(zip(ours.paths, ours.targets.tolist(), strict=True)) == tv.samples
    with pytest.raises(DataError, match="no class sub-folders"):
        read_image_folder(str(tmp_path / "cat" / "sub"))


def test_list_inputs_directories_globs_and_odd_names(tmp_path):
    names = [
        "a.jpg",
        "B.JPEG",
        "sub/c.png",
        "sub/deeper/d.Png",
        "with space.jpg",
        "ünïcödé 顔.jpg",
        "a,b,c.jpg",
    ]
    for n in names:
        touch_image(tmp_path / "imgs" / n)
    (tmp_path / "imgs" / "notes.txt").write_text("skip me")
    (tmp_path / "imgs" / "broken.jpg").symlink_to(tmp_path / "gone.jpg")
    found = list_inputs([str(tmp_path / "imgs")])
    want = sorted(str(tmp_path / "imgs" / n) for n in [*names, "broken.jpg"])
    assert sorted(found) == want  # recursive, case-insensitive, broken link kept for annotate
    assert list_inputs([str(tmp_path / "imgs" / "*.jpg")]) == sorted(
        str(tmp_path / "imgs" / n)
        for n in ("a.jpg", "a,b,c.jpg", "broken.jpg", "with space.jpg", "ünïcödé 顔.jpg")
    )
    assert list_inputs([str(tmp_path / "imgs" / "**" / "*.png")]) == [
        str(tmp_path / "imgs" / "sub" / "c.png")
    ]  # case-sensitive like the shell
    # overlapping inputs: each path once
    assert len(list_inputs([str(tmp_path / "imgs"), str(tmp_path / "imgs" / "a.jpg")])) == len(want)
    with pytest.raises(DataError, match="input not found"):
        list_inputs([str(tmp_path / "missing")])


def test_list_inputs_manifests_keep_every_entry(tmp_path):
    touch_image(tmp_path / "here.jpg")
    entries = ["here.jpg", "missing.jpg", "dir with space/ünï,code.jpg", str(tmp_path / "abs.jpg")]
    want = [
        str(tmp_path / "here.jpg"),
        str(tmp_path / "missing.jpg"),
        str(tmp_path / "dir with space" / "ünï,code.jpg"),
        str(tmp_path / "abs.jpg"),
    ]
    (tmp_path / "list.txt").write_text(
        "# a comment\n" + "\n".join(entries) + "\n\n", encoding="utf-8"
    )
    assert list_inputs([str(tmp_path / "list.txt")]) == want
    with open(tmp_path / "list.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "path"])
        w.writerows([i, e] for i, e in enumerate(entries))
    assert list_inputs([str(tmp_path / "list.csv")]) == want
    pq.write_table(pa.table({"path": entries}), tmp_path / "list.parquet")
    assert list_inputs([str(tmp_path / "list.parquet")]) == want
    (tmp_path / "nopath.csv").write_text("file\na.jpg\n")
    with pytest.raises(DataError, match=r"nopath.csv:1: no 'path' column"):
        list_inputs([str(tmp_path / "nopath.csv")])


def test_list_inputs_through_pyarrow_filesystem(tmp_path):
    for n in ("x/1.jpg", "x/y/2.PNG", "x/skip.txt", "x/a b,ü.jpg"):
        if n.endswith(".txt"):
            (tmp_path / n).write_text("no")
        else:
            touch_image(tmp_path / n)
    base = (tmp_path / "x").as_uri()  # file:///...: the same code path as s3:// and gs://
    got = list_inputs([base])
    assert sorted(got) == sorted(
        f"file://{tmp_path}/x/{n}" for n in ("1.jpg", "y/2.PNG", "a b,ü.jpg")
    )
    assert list_inputs([f"file://{tmp_path}/x/*.jpg"]) == sorted(
        f"file://{tmp_path}/x/{n}" for n in ("1.jpg", "a b,ü.jpg")
    )
    (tmp_path / "x" / "m.txt").write_text("1.jpg\nnot-there.jpg\n")
    assert list_inputs([f"{base}/m.txt"]) == [f"{base}/1.jpg", f"{base}/not-there.jpg"]
    with pytest.raises(DataError, match="input not found"):
        list_inputs([f"{base}/nothing.jpg"])
    from faceattr_ray.data import read_bytes

    assert read_bytes(got[0])[:4] == b"\x89PNG"
