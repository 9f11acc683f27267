"""Training: the step logic without Ray (fast), and Ray Train's DDP, resume and restart (slow).

Tiny data is written by the tests themselves (a CelebA-layout root whose attributes and
identities are visible in the pixels, and an image folder of classes), so no /work/shared is
needed. Each Ray Train fit costs ~50 s of start-up on a 2-core machine: there are two.
"""

from __future__ import annotations

import importlib
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from faceattr_ray.errors import RecipeError
from faceattr_ray.train import api
from faceattr_ray.train.losses import masked_bce, similarity_loss

ATTRS = ["Red_Top", "Blue_Left", "Bright"]


def write_celeba(root: str, n: int = 24, size: int = 72, identities: int = 6,
                 seed: int = 0) -> str:
    """A CelebA-layout root: each attribute and each identity leaves a mark in the pixels."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "img_align_celeba"), exist_ok=True)
    ident_colour = rng.integers(0, 255, size=(identities, 3))
    attr_lines, id_lines, part_lines = [], [], []
    for i in range(n):
        name = f"{i + 1:06d}.jpg"
        ident = i % identities
        labels = rng.integers(0, 2, size=len(ATTRS))
        img = rng.integers(0, 60, size=(size, size, 3)).astype(np.uint8)
        img[size // 3:, size // 3:2 * size // 3] = ident_colour[ident]
        if labels[0]:
            img[: size // 4, :, 0] = 230
        if labels[1]:
            img[:, : size // 4, 2] = 230
        if labels[2]:
            img = np.clip(img.astype(int) + 80, 0, 255).astype(np.uint8)
        Image.fromarray(img).save(os.path.join(root, "img_align_celeba", name), quality=95)
        attr_lines.append(name + " " + " ".join("1" if v else "-1" for v in labels))
        id_lines.append(f"{name} {ident + 1}")
        part_lines.append(f"{name} {0 if i < n * 3 // 4 else 1}")
    with open(os.path.join(root, "list_attr_celeba.txt"), "w") as f:
        f.write(f"{n}\n{' '.join(ATTRS)}\n" + "\n".join(attr_lines) + "\n")
    with open(os.path.join(root, "identity_CelebA.txt"), "w") as f:
        f.write("\n".join(id_lines) + "\n")
    with open(os.path.join(root, "list_eval_partition.txt"), "w") as f:
        f.write("\n".join(part_lines) + "\n")
    return root


def write_image_folder(root: str, classes: int = 3, per_class: int = 8, size: int = 80) -> str:
    rng = np.random.default_rng(1)
    for c in range(classes):
        os.makedirs(os.path.join(root, f"class{c}"), exist_ok=True)
        for i in range(per_class):
            img = rng.integers(0, 50, size=(size, size + 10, 3)).astype(np.uint8)
            img[..., c] += 150
            Image.fromarray(img).save(os.path.join(root, f"class{c}", f"{i}.png"))
    return root


# --- no Ray -----------------------------------------------------------------------------------


def test_similarity_loss_matches_pairwise_definition():
    torch.manual_seed(0)
    f = torch.randn(10, 5, requires_grad=True)
    ids = torch.tensor([0, 1, 0, 2, 1, 0, 3, 3, 4, 0])
    pairs = [(i, j) for i in range(10) for j in range(i + 1, 10) if ids[i] == ids[j]]
    expected = sum(((f[i] - f[j]) ** 2).sum() for i, j in pairs) / len(pairs)
    got = similarity_loss(f, ids)
    assert torch.allclose(got, expected, rtol=1e-5)
    got.backward()
    assert torch.isfinite(f.grad).all()
    # No identity repeats: nothing to pull together.
    assert float(similarity_loss(f.detach(), torch.arange(10))) == 0.0


def test_masked_bce_ignores_unknown_labels():
    logits = torch.tensor([[2.0, -1.0, 5.0], [-3.0, 1.0, 0.5]])
    labels = torch.tensor([[1.0, float("nan"), 0.0], [0.0, 1.0, float("nan")]])
    loss, stats = masked_bce(logits, labels)
    known = ~torch.isnan(labels)
    ref = torch.nn.functional.binary_cross_entropy_with_logits(logits[known], labels[known])
    assert torch.allclose(loss, ref)
    assert stats["count"] == 4 and stats["correct"] == 3  # the 5.0 vs 0 is wrong
    # smoothed: the targets 1 and 0 become 0.95 and 0.05; accuracy still counts the tags
    smooth, smooth_stats = masked_bce(logits, labels, smoothing=0.1)
    ref = torch.nn.functional.binary_cross_entropy_with_logits(
        logits[known], labels[known] * 0.9 + 0.05)
    assert torch.allclose(smooth, ref) and smooth > loss
    assert smooth_stats["correct"] == 3


def test_ten_crop_covers_centre_corners_and_flips():
    from faceattr_ray.train.lnet_pretrain import ten_crop

    image = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    crops = [ten_crop(image, 4, i) for i in range(10)]
    assert all(c.shape == (4, 4, 3) for c in crops)
    assert (crops[1] == image[:4, :4]).all() and (crops[4] == image[2:, 4:]).all()
    assert (crops[0] == image[1:5, 2:6]).all()
    for i in range(5):
        assert (crops[i + 5] == crops[i][:, ::-1]).all()
    assert len({c.tobytes() for c in crops}) == 10


def test_cosine_schedule_warms_up_then_decays_to_zero():
    from faceattr_ray.train.common import lr_factor

    cfg = {"epochs": 10, "schedule": "cosine", "warmup_epochs": 1}
    assert lr_factor(cfg, 0.05) == pytest.approx(0.5)  # half-way through the warm-up epoch
    assert lr_factor(cfg, 0.1) == pytest.approx(1.0)
    assert lr_factor(cfg, 0.55) == pytest.approx(0.5)
    assert lr_factor(cfg, 1.0) == pytest.approx(0.0, abs=1e-9)
    assert lr_factor({"epochs": 10}, 0.7) == 1.0  # the default stays constant
    with pytest.raises(ValueError, match="schedule"):
        lr_factor({"epochs": 1, "schedule": "step"}, 0.5)


def test_aligned_crops_are_jittered_when_training_only(tmp_path):
    """``jitter`` zooms, turns and recolours aligned training crops (mildly: still the same
    face), never a validation or evaluation crop, nor a face found with a box."""
    from faceattr_ray.data.face_jitter import jitter_aligned
    from faceattr_ray.train.finetune import training_crop

    image = np.asarray(Image.open(os.path.join(write_celeba(str(tmp_path)), "img_align_celeba",
                                               "000001.jpg")))
    cfg = {"preprocess": {}, "jitter": {"scale": 0.08, "degrees": 10, "brightness": 0.2,
                                        "contrast": 0.2, "saturation": 0.15}}
    aligned, found = np.full(4, np.nan), [4.0, 4.0, 60.0, 60.0]
    plain = training_crop(image, aligned, {"preprocess": {}}, 48, True, np.random.default_rng(0))
    rng = np.random.default_rng(0)
    assert (training_crop(image, aligned, cfg, 48, False, rng) == plain).all()
    assert (training_crop(image, found, cfg, 48, True, rng)
            == training_crop(image, found, {"preprocess": {}}, 48, True, rng)).all()
    jittered = [training_crop(image, aligned, cfg, 48, True, rng) for _ in range(8)]
    gaps = [np.abs(j.astype(float) - plain).mean() for j in jittered]
    assert min(gaps) > 1.0 and max(gaps) < 40.0 and len({round(g, 3) for g in gaps}) == 8
    assert (jitter_aligned(plain, {}, rng) == plain).all()  # no jitter asked: the crop itself


def test_local_finetune_learns_attributes(tmp_path):
    """The shared step logic, in-process: ANet fine-tuning on visible attributes gets better."""
    root = write_celeba(str(tmp_path / "celeba"), n=48)
    nets, metrics, cfg = api.finetune(
        root, nets=("anet",), local=True, epochs=6, batch_size=16, lr=0.05, seed=0,
        anet={"patch_size": 64, "grid": 2, "channels": [8, 16, 16, 16], "feature_dim": 32})
    assert cfg["attributes"] == ATTRS
    assert metrics["anet"]["val_accuracy"] > 0.6
    assert nets["anet"].config.num_attributes == 3


def test_ema_decay_returns_the_moving_average_of_the_runs_weights(tmp_path):
    """With ``ema_decay`` d the run returns (and validates) the exponential moving average of
    its weights after each step, batch-norm statistics included: e_1 = w_1, e_k = d e_(k-1) +
    (1 - d) w_k, where w_k are the weights a plain run of k steps ends at (constant rate, no
    shuffling, one step an epoch); a decay outside (0, 1) is refused before anything trains, with
    an error the CLI prints as one line (`--config` carries the key)."""
    root = write_celeba(str(tmp_path / "celeba"), n=24)
    common = dict(nets=("anet",), local=True, batch_size=32, lr=0.05, seed=1, augment=False,
                  shuffle=False, anet={"patch_size": 64, "grid": 2, "channels": [4, 8, 8, 8],
                                       "feature_dim": 16, "batch_norm": True})
    plain = [api.finetune(root, epochs=k, **common)[0]["anet"].state_dict() for k in (1, 2, 3)]
    averaged = api.finetune(root, epochs=3, ema_decay=0.6, **common)[0]["anet"].state_dict()
    floats = [k for k, v in averaged.items() if v.is_floating_point()]
    assert any("running_mean" in k for k in floats)  # batch norm is there, and averaged
    changed = 0
    for key in floats:
        want = (0.6 * (0.6 * plain[0][key] + 0.4 * plain[1][key]) + 0.4 * plain[2][key])
        assert torch.allclose(averaged[key], want, atol=1e-6, rtol=1e-5), key
        changed += not torch.allclose(averaged[key], plain[2][key], atol=1e-6)
    assert changed > len(floats) // 2  # the average is not the last step's weights
    for bad in (1.0, 0.0, -0.5, "0.9"):
        with pytest.raises(RecipeError, match="ema_decay must lie strictly between 0 and 1"):
            api.finetune(root, epochs=1, ema_decay=bad, **common)


@pytest.mark.parametrize(("mode", "max_steps"), [("thread", None), ("thread", 3),
                                                 ("process", None), ("process", 3)])
def test_prefetched_batches_train_exactly_as_the_plain_loop(tmp_path, mode, max_steps):
    """Batches made ahead of the step (``prefetch``: a thread or a child process) give the
    very weights the plain loop gives: same batches, same order, the same random augmentation
    draws over epochs, also when max_steps ends an epoch early (no batch is made beyond it);
    val scored every other epoch and decoded faces kept in memory (``image_cache_mb``, read
    from the second epoch on) change no weight."""
    root = write_celeba(str(tmp_path / "celeba"), n=24)
    runs = [api.finetune(root, nets=("anet",), local=True, epochs=3, batch_size=4, lr=0.05,
                         seed=1, max_steps=max_steps, prefetch=prefetch, val_every=every,
                         image_cache_mb=cache_mb,
                         anet={"patch_size": 64, "grid": 2, "channels": [4, 8, 8, 8],
                               "feature_dim": 16})
            for prefetch, every, cache_mb in ((mode, 2, 16), (False, 1, 0))]
    (ahead, metrics, cfg), (plain, plain_metrics, _) = runs
    assert cfg["prefetch"] == mode and cfg["augment"] is True  # augmentation draws random
    for key, value in plain["anet"].state_dict().items():
        assert torch.equal(ahead["anet"].state_dict()[key], value), key
    # the last epoch is always scored
    assert metrics["anet"]["val_accuracy"] == plain_metrics["anet"]["val_accuracy"]


def test_channels_last_and_bf16_training_follow_the_float32_run(tmp_path, monkeypatch):
    """The GPU path's layout and arithmetic, run on a CPU (where `reproduce` uses them when the
    chip computes bf16). ANet's locally shared filter banks have rank-5 weights, which
    ``Module.to(memory_format=channels_last)`` refuses: channels-last training converts the
    convolution kernels only and ends at the NCHW run's weights; bf16 runs ANet's training
    passes under bf16 autocast (the others under none) and ends at a loss within 5% of
    float32's; an unknown precision is refused before anything trains."""
    from faceattr_ray.models import ANet

    autocast_seen: list = []
    forward = ANet.forward

    def spy(self, patches):
        if self.training:
            autocast_seen.append(torch.get_autocast_dtype("cpu")
                                 if torch.is_autocast_enabled("cpu") else None)
        return forward(self, patches)

    monkeypatch.setattr(ANet, "forward", spy)
    root = write_celeba(str(tmp_path / "celeba"), n=24)
    common = dict(nets=("anet",), local=True, epochs=2, batch_size=4, lr=0.05, seed=1,
                  augment=False, shuffle=False,
                  anet={"patch_size": 64, "grid": 2, "channels": [4, 8, 8, 8], "feature_dim": 16})
    runs, autocast = {}, {}
    for name, options in (("fp32", {}), ("nhwc", {"channels_last": True}),
                          ("bf16", {"precision": "bf16", "channels_last": True})):
        autocast_seen.clear()
        runs[name] = api.finetune(root, **common, **options)
        autocast[name] = set(autocast_seen)
    assert autocast == {"fp32": {None}, "nhwc": {None}, "bf16": {torch.bfloat16}}
    nhwc = runs["nhwc"][0]["anet"]
    kernels = [w for w in nhwc.parameters() if w.dim() == 4]
    assert kernels and all(w.is_contiguous(memory_format=torch.channels_last) for w in kernels)
    assert any(w.dim() == 5 for w in nhwc.parameters())  # the filter banks trained too
    fp32 = runs["fp32"][0]["anet"].state_dict()
    for key, value in nhwc.state_dict().items():
        assert torch.allclose(value, fp32[key], atol=1e-4, rtol=1e-3), key
    assert runs["bf16"][2]["precision"] == "bf16"
    loss, bf16_loss = runs["fp32"][1]["anet"]["loss"], runs["bf16"][1]["anet"]["loss"]
    assert abs(bf16_loss - loss) <= 0.05 * loss
    with pytest.raises(ValueError, match="precision must be one of"):
        api.finetune(root, **common, precision="fp8")


@pytest.mark.parametrize(("command", "given", "expected"), [
    ("reproduce", None, "PASSIVE"), ("train", "ACTIVE", "ACTIVE"), ("annotate", None, None)])
def test_training_commands_let_torch_threads_sleep_unless_the_environment_says(command, given,
                                                                               expected):
    """`faceattr-ray reproduce` and `train` set OMP_WAIT_POLICY=PASSIVE before their handler
    loads torch (a spinning OpenMP thread holds a core the batch-making child needs:
    bench/prefetch.py --wait-policies); a policy the user set stays; inference commands keep
    OpenMP's default; in a process that has loaded torch nothing changes."""
    import subprocess
    import sys

    from faceattr_ray.runtime import passive_thread_waits

    code = ("import os, sys\n"
            "from faceattr_ray.cli import main\n"
            "try:\n"
            f"    main([{command!r}, '--no-such-flag'])\n"
            "except SystemExit:\n"
            "    pass\n"
            "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given:
        env["OMP_WAIT_POLICY"] = given
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True, timeout=120).stdout.strip().splitlines()[-1]
    assert out == f"{expected} False"
    before = os.environ.get("OMP_WAIT_POLICY")
    assert passive_thread_waits() is False  # torch is loaded here
    assert os.environ.get("OMP_WAIT_POLICY") == before


def test_batch_process_raises_the_makers_error(tmp_path):
    """A batch that cannot be made (a corrupt training image) stops training with its error,
    named, rather than hanging on a queue."""
    root = write_celeba(str(tmp_path / "celeba"), n=12)
    first = sorted(os.listdir(os.path.join(root, "img_align_celeba")))[0]
    with open(os.path.join(root, "img_align_celeba", first), "wb") as f:
        f.write(b"not a jpeg")
    with pytest.raises(RuntimeError, match="making a batch failed"):
        api.finetune(root, nets=("anet",), local=True, epochs=1, batch_size=4, seed=1,
                     prefetch="process", shuffle=False,
                     anet={"patch_size": 64, "grid": 2, "channels": [4, 8, 8, 8],
                           "feature_dim": 16})


def test_prefetched_raises_the_makers_error_and_stops_when_the_loop_stops():
    import threading

    from faceattr_ray.train.common import prefetched

    def broken():
        yield {"image": 1}
        raise OSError("truncated file x.jpg")

    it = prefetched(broken())
    assert next(it) == {"image": 1}
    with pytest.raises(OSError, match="truncated"):
        next(it)
    made = []

    def endless():
        for k in range(10**6):
            made.append(k)
            yield k

    it = prefetched(endless(), depth=2)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()  # the loop stopped early (max_steps, an error): the thread ends too
    assert not any(t.name.startswith("batch-prefetch") for t in threading.enumerate())
    assert len(made) <= 3 + 2 + 2  # what was taken, the queue, one in hand


def test_negatives_join_the_lnet_training_rows_with_every_tag_absent(tmp_path):
    """Background-only images: train rows of both LNets (LNet_s with LNet_o's saved window),
    never validation rows, never ANet's (it needs a face box)."""
    jobs = importlib.import_module("faceattr_ray.train.finetune")  # the package exports a function of that name

    root = write_celeba(str(tmp_path / "celeba"), n=8)
    negatives = [str(tmp_path / f"bg{i}.jpg") for i in range(3)]
    boxes = tmp_path / "hs.json"
    boxes.write_text(json.dumps({negatives[0]: [1.0, 2.0, 30.0, 40.0]}))
    cfg = api.make_config("finetune", root, negatives=negatives, headshoulder_boxes=str(boxes),
                          attributes=None)
    train = jobs.lnet_o_rows(cfg, "train")
    assert [r["path"] for r in train[-3:]] == negatives and len(train) == 6 + 3
    assert all(not r["label"].any() and len(r["label"]) == len(ATTRS) for r in train[-3:])
    assert len(jobs.lnet_o_rows(cfg, "val")) == 2
    s_rows = jobs.lnet_s_rows(cfg, "train")[-3:]
    assert s_rows[0]["box"] == [1.0, 2.0, 30.0, 40.0]
    assert all(np.isnan(r["box"]).all() for r in s_rows[1:])  # no window: the whole image
    assert all(r["path"] not in negatives for r in jobs.anet_rows(cfg, "train"))


@pytest.mark.parametrize("job", ["lnet-pretrain", "anet-pretrain", "finetune"])
def test_cli_smoke_test_writes_a_bundle_that_loads_and_predicts(tmp_path, job):
    from faceattr_ray.bundle import load_bundle
    from faceattr_ray.cli import main
    from faceattr_ray.data.synthetic import write_wild

    if job == "lnet-pretrain":
        data = write_image_folder(str(tmp_path / "folder"))
    else:  # people in scenes, with face and head-shoulder boxes
        data = write_wild(str(tmp_path / "wild"), count=24, identities=6)
    out = str(tmp_path / "bundle")
    # the fine-tuning job under bf16 autocast (`--precision`; the others at the default)
    precision = "bf16" if job == "finetune" else "auto"
    assert main(["train", job, "--data", data, "--out", out, "--smoke-test",
                 "--precision", precision]) == 0
    bundle = load_bundle(out)
    with open(os.path.join(out, "train_config.json")) as f:
        written = json.load(f)
    assert written["config"]["job"] in (job, "finetune") and written["config"]["smoke_test"]
    assert written["config"]["precision"] == precision
    x = torch.zeros(2, 3, 99, 99)
    if job == "lnet-pretrain":
        assert bundle.lnet_o.classify(x).shape == (2, 3)
    elif job == "anet-pretrain":
        w = bundle.anet.config.window_size
        assert bundle.anet.patch_features(torch.zeros(2, 3, w, w)).shape[:2] == (2, 4)
    else:
        assert len(bundle.attributes) >= 15 and bundle.config["training"]["trained"] == [
            "anet", "lnet_o", "lnet_s"]
        assert bundle.lnet_o.response_map(x).dim() == 3 and bundle.lnet_s is not None
        w = bundle.anet.config.window_size
        features = bundle.anet.patch_features(torch.zeros(1, 3, w, w)).mean(1)
        scores = features.detach().numpy() @ bundle.heads["weight"].T + bundle.heads["bias"]
        assert scores.shape == (1, len(bundle.attributes)) and np.isfinite(scores).all()


# --- Ray Train (slow) ------------------------------------------------------------------------
# DDP really averages, a killed worker is restarted from its checkpoint, a re-run resumes.
#
# Two Ray fits on one deterministic setting (no shuffle, no augmentation, one step per epoch
# because the global batch is the whole training split, ANet which has no dropout), compared with
# the same setting run in this process (no Ray, cheap):
#   C: 2 workers (gloo), 2 epochs, run name "two"; the worker process exits at the start of
#      epoch 1 on its first attempt -> FailureConfig restarts it from the epoch-0 checkpoint;
#   D: 1 worker, 3 epochs, run name "two" again -> resumes at epoch 2 from C's last checkpoint.
# If DDP averages the gradients and every resume restores model + optimizer (SGD momentum), C
# ends where 2 uninterrupted local epochs end, and D where 3 do. Each Ray fit costs ~50 s of
# start-up here (controller, workers, Ray Data actors: a process and a torch import each), so
# there are only two.

ANET = {"patch_size": 64, "grid": 2, "channels": [4, 8, 8, 8], "feature_dim": 16}


@pytest.fixture(scope="module")
def runs(local_ray, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train_ray")
    root = write_celeba(str(tmp / "celeba"), n=16)  # 12 train, 4 val images
    # every run keeps a weight average (ema_decay): a resume must restore it too, beside the
    # weights and the optimizer, to end where the uninterrupted run ends
    common = dict(nets=("anet",), batch_size=12, lr=0.05, seed=3, augment=False, shuffle=False,
                  anet=ANET, ema_decay=0.5)
    ray_only = dict(storage_path=str(tmp / "results"), max_failures=1)
    out = {}
    marker = str(tmp / "crashed")
    out["C"] = api.finetune(root, epochs=2, num_workers=2, run_name="two",
                            crash_marker=marker, crash_epoch=1, **common, **ray_only)
    out["D"] = api.finetune(root, epochs=3, num_workers=1, run_name="two", **common, **ray_only)
    for epochs in (2, 3):
        out[f"local{epochs}"] = api.finetune(root, epochs=epochs, local=True, **common)
    # Epoch 2 from C's weights with a fresh optimizer (momentum lost): where a resume that
    # restored only the weights would end.
    out["fresh"] = api.finetune(root, epochs=1, local=True, init={"anet": out["C"][0]["anet"]},
                                **common)
    out["marker"] = marker
    return out


def _weights(result) -> dict[str, torch.Tensor]:
    nets, _, _ = result
    return nets["anet"].state_dict()


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4) for k in a)


@pytest.mark.slow
def test_two_ddp_workers_match_one_local_run(runs):
    """Same global batch and seed: 2 gloo workers (each on half the batch, one of them killed
    and restarted mid-way) end where one uninterrupted process does."""
    c, local = runs["C"][1]["anet"], runs["local2"][1]["anet"]
    assert c["epoch"] == local["epoch"] == 1
    assert abs(c["loss"] - local["loss"]) < 1e-4 * max(1.0, abs(local["loss"]))
    assert _same(_weights(runs["C"]), _weights(runs["local2"]))


@pytest.mark.slow
def test_killed_worker_is_restarted_and_the_run_completes(runs):
    assert os.path.exists(runs["marker"])  # the worker did exit once
    c = runs["C"][1]["anet"]
    assert c["epoch"] == 1
    assert c["start_epoch"] == 1  # the restarted attempt resumed from the epoch-0 checkpoint
    assert c["images"] == 12  # both workers' images count towards the epoch


@pytest.mark.slow
def test_rerun_with_the_same_name_resumes(runs):
    d = runs["D"][1]["anet"]
    assert d["epoch"] == 2 and d["start_epoch"] == 2  # only epoch 2 ran in the second fit
    # Resumed, not restarted: D's one epoch went on from C's weights, its optimizer state *and*
    # its weight average, so it ends where one uninterrupted 3-epoch run ends (on another worker
    # count, too).
    assert _same(_weights(runs["D"]), _weights(runs["local3"]))
    # The comparison can fail: the same epoch with the momentum lost ends elsewhere.
    assert not _same(_weights(runs["D"]), _weights(runs["fresh"]))


def test_epochs_within_reads_the_pace_after_the_first_epoch_and_never_stops_early():
    from faceattr_ray.train.common import epochs_within

    # 100 s left after 2 epochs of 30 s and 10 s: the first (start-up) is not the pace, 10 is
    assert epochs_within(100.0, 2, [30.0, 10.0], 58) == 12
    assert epochs_within(100.0, 1, [30.0], 58) == 4  # only the first timed: it is the pace
    assert epochs_within(1e6, 3, [5.0, 5.0, 5.0], 58) == 58  # time to spare: the plan stands
    # no time left: one more epoch (validated as the last), never a run cut before it starts
    assert epochs_within(-50.0, 3, [5.0, 5.0, 5.0], 58) == 4
    assert epochs_within(9.9, 3, [5.0, 5.0, 9.0, 5.0], 58) == 4  # median 5 of the later ones


def test_a_time_budget_cuts_the_epochs_and_the_schedule_follows_the_new_count(tmp_path):
    """In-process training with ``minutes``: a run that fits its budget ends at the weights
    of a run without one, bit for bit; a run whose budget is spent after the first epoch
    trains one more and stops there, at the very weights of a run planned for those two
    epochs (with one warm-up epoch the first epoch's rates do not depend on the count, and
    the cosine then ends at 0 on the new last step); Ray Train refuses a budget."""
    root = write_celeba(str(tmp_path / "celeba"), n=24)
    common = dict(nets=("anet",), local=True, batch_size=8, lr=0.05, seed=1, shuffle=True,
                  schedule="cosine", warmup_epochs=1,
                  anet={"patch_size": 64, "grid": 2, "channels": [4, 8, 8, 8], "feature_dim": 16})

    def run(**kw):
        nets, metrics, _ = api.finetune(root, **common, **kw)
        return nets["anet"].state_dict(), metrics["anet"]

    planned4, _ = run(epochs=4)
    roomy, roomy_metrics = run(epochs=4, minutes=1000.0)
    cut, cut_metrics = run(epochs=4, minutes=1e-9)
    planned2, _ = run(epochs=2)
    assert (roomy_metrics["epochs_planned"], roomy_metrics["epochs_run"]) == (4, 4)
    assert (cut_metrics["epochs_planned"], cut_metrics["epochs_run"]) == (4, 2)
    assert "val_accuracy" in cut_metrics  # the cut run's last epoch is validated
    for key, value in planned4.items():
        assert torch.equal(roomy[key], value), key
    for key, value in planned2.items():
        assert torch.equal(cut[key], value), key
    assert any(not torch.equal(planned4[k], planned2[k]) for k in planned4)
    with pytest.raises(ValueError, match="in-process training only"):
        api.finetune(root, **{**common, "local": False}, epochs=1, minutes=5.0)
