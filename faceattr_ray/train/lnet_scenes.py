"""Train the LNets on scenes made on the fly (data/scenes.py), from image-level tags only.

LNet_o sees whole scenes: real background crops with 0-3 pasted faces. LNet_s sees head-shoulder
windows: a square around a face about 2.5 face widths wide (LNet_o's proposals at inference);
its negatives are windows of the same backgrounds, LNet_o's false proposals, windows inside a
face, and (``cut_share``; off in `reproduce`'s recipe, README) windows of that size whose edge
cuts a face, meant to make its map peak where the whole face is (the localizer reads the
face's centre off that peak). With the recipe's ``"s_init": "lnet_o"`` LNet_s starts from
LNet_o's weights, a start whose map already peaks on faces (the paper starts both LNets from
object-class pre-training instead). Both learn one bit "a face is present" and the 40
attribute tags (an attribute is present if any face in the input has it; no attribute loss on
an input without a face). No loss reads a box: LNet_s's windows are cut where the faces were
pasted, as the paper cuts head-shoulder windows for it, and each window still teaches one bit;
the boxes that come with each scene otherwise only measure localization on the validation
scenes.

A plain loop (nanoGPT style): a new batch of scenes every step, AdamW, cosine schedule. It runs
in-process or as the loop of a Ray Train worker (`fit_ray`), which shards the steps' seeds.
Each step's scenes come from its own seed, so a thread or a child process can paste them ahead
of the step and the weights stay those of a plain loop; on a CPU that computes bf16, `reproduce`
runs the step in bf16 with channels-last kernels and has a child process paste (bench/lnet_loop.py).
"""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from faceattr_ray.data.scenes import Scene, SceneMaker, image_tags
from faceattr_ray.errors import RecipeError
from faceattr_ray.models import IMAGENET_MEAN, IMAGENET_STD, LNet, LNetConfig, to_tensor
from faceattr_ray.runtime import check_precision, to_channels_last
from faceattr_ray.train.common import autocast, check_ema_decay, kept, prefetched, weight_average

STAGES = ("o", "s")
PREFETCH = ("thread", "process")


@dataclass
class SceneTrainConfig:
    stage: str = "o"                  # "o": whole scenes; "s": head-shoulder windows
    steps: int = 1500
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup: int = 50
    scene_size: int = 128             # LNet_o's training scenes (square)
    face_px: tuple = (22, 64)         # pasted faces' tight-box width in LNet_o scenes
    window_size: int = 96             # LNet_s's input
    window_faces: float = 2.5         # LNet_s: window side / face width (jittered)
    cut_share: float = 0.0            # LNet_s: share of negatives whose edge cuts a face
    attribute_weight: float = 0.5     # attribute tags' share of the loss next to the face tag
    seed: int = 0
    threads: int = 0                  # torch threads (0 = leave as is)
    log_every: int = 100              # steps between progress lines
    # "bf16": autocast, for CPUs that compute bf16 (runtime.cpu_has_native_bf16); channels_last:
    # NHWC convolutions. With prefetch "process" and 1 thread, the loop runs 1.73x (LNet_o) and
    # 1.39x (LNet_s) faster on an AMX Xeon (bench/lnet_loop.py)
    precision: str = "fp32"
    channels_last: bool = False
    # who makes the next step's inputs while this step trains: "thread" or "process" (a child
    # process; a thread cannot keep up with a bf16 step: scene making holds the GIL, README)
    prefetch: str = "thread"
    # the weights kept: an exponential moving average over the steps at this decay (None: the
    # last step's)
    ema_decay: float | None = None

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, not {self.stage!r}")
        if check_precision(self.precision) == "auto":
            raise ValueError('precision "auto" is for jobs that pick a device; LNets on scenes '
                             'train on the CPU: "fp32" or "bf16"')
        if self.prefetch not in PREFETCH:
            raise ValueError(f"prefetch must be one of {PREFETCH}, not {self.prefetch!r}")
        check_ema_decay(self.ema_decay)
        self.face_px = tuple(self.face_px)


def load_faces(paths: list[str]) -> np.ndarray:
    """(N, h, w, 3) uint8 aligned crops, all resized to the first one's size."""
    first = Image.open(paths[0])
    size = first.size
    out = np.empty((len(paths), size[1], size[0], 3), np.uint8)
    for i, p in enumerate(paths):
        with Image.open(p) as im:
            im = im.convert("RGB")
            out[i] = np.asarray(im if im.size == size else im.resize(size, Image.BILINEAR))
    return out


def head_shoulder_window(scene: Scene, k: int, rng: np.random.Generator, out: int,
                         faces: float = 2.5, jitter: float = 0.25, spread: float = 1.25) -> np.ndarray:
    """A square window around face ``k`` of a scene, ``faces`` face widths wide (times up to
    ``spread`` either way), its centre off by up to ``jitter`` face widths."""
    x1, y1, x2, y2 = scene.boxes[k]
    fw = max(x2 - x1, y2 - y1)
    side = fw * faces * math.exp(rng.uniform(-math.log(spread), math.log(spread)))
    cx = (x1 + x2) / 2 + rng.uniform(-jitter, jitter) * fw
    cy = (y1 + y2) / 2 + rng.uniform(-jitter, jitter) * fw
    return crop_window(scene.image, (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2), out)


def crop_window(image: np.ndarray, box, out: int) -> np.ndarray:
    from faceattr_ray.crops import crop_resize

    return crop_resize(image, box, (out, out))


def face_cut_window(maker: SceneMaker, rng: np.random.Generator, out: int,
                    faces: float = 2.5, spread: float = 1.25, tries: int = 20) -> np.ndarray:
    """A head-shoulder-sized window whose edge cuts a face: 25-60% of the face's width (or
    height) inside, at most 65% of its box. A negative for LNet_s, meant to push its map's
    peak off parts of a face (hair and brow, a chin) onto the whole face, where the localizer
    reads the centre; it did so for one LNet_o and not for another (README). The face is pasted
    on a canvas 6.5-7.5 face widths wide and the window kept inside it, so no edge padding
    tells these windows apart; after ``tries`` misses, a window of a face-free photo."""
    i = int(rng.integers(len(maker.faces)))
    image, box = maker.portrait(maker.faces[i], rng, (0.3 * out, 0.5 * out), (6.5, 7.5))
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    fw, fh = x2 - x1, y2 - y1
    for _ in range(tries):
        side = fw * faces * math.exp(rng.uniform(-math.log(spread), math.log(spread)))
        inside = rng.uniform(0.25, 0.6)
        cx = (x1 + x2) / 2 + rng.uniform(-0.25, 0.25) * fw
        cy = (y1 + y2) / 2 + rng.uniform(-0.25, 0.25) * fw
        edge = int(rng.integers(4))  # the window lies left of, right of, above, below the face
        if edge == 0:
            wx, wy = x2 - inside * fw - side, cy - side / 2
        elif edge == 1:
            wx, wy = x1 + inside * fw, cy - side / 2
        elif edge == 2:
            wx, wy = cx - side / 2, y2 - inside * fh - side
        else:
            wx, wy = cx - side / 2, y1 + inside * fh
        if wx < 0 or wy < 0 or wx + side > w or wy + side > h:
            continue
        ix = max(0.0, min(x2, wx + side) - max(x1, wx))
        iy = max(0.0, min(y2, wy + side) - max(y1, wy))
        if ix * iy / (fw * fh) <= 0.65:
            return crop_window(image, (wx, wy, wx + side, wy + side), out)
    return maker.degraded(maker.background(rng, (out, out)), rng)


def random_window(scene: Scene, rng: np.random.Generator, out: int) -> np.ndarray:
    h, w = scene.image.shape[:2]
    side = rng.uniform(0.3, 1.0) * min(h, w)
    x, y = rng.uniform(0, w - side), rng.uniform(0, h - side)
    return crop_window(scene.image, (x, y, x + side, y + side), out)


class SceneBatches:
    """Batches of (images uint8 (B, S, S, 3), face tag (B,), attribute tags (B, A), NaN = none)."""

    def __init__(self, maker: SceneMaker, cfg: SceneTrainConfig, num_attributes: int,
                 hard_negatives: np.ndarray | None = None) -> None:
        self.maker, self.cfg, self.a = maker, cfg, num_attributes
        self.hard = hard_negatives if hard_negatives is not None and len(hard_negatives) else None

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, float, np.ndarray]:
        if self.cfg.stage == "o":
            scene = self.maker(rng)
            face, tags = image_tags(scene, self.a)
            return scene.image, face, tags
        none = np.full(self.a, np.nan, np.float32)
        out = self.cfg.window_size
        if self.cfg.cut_share and rng.random() < self.cfg.cut_share:
            return face_cut_window(self.maker, rng, out, self.cfg.window_faces), 0.0, none
        u = rng.random()
        if self.hard is not None and u > 0.8:
            # LNet_o's own false proposals on face-free photos (the paper trains LNet_s on
            # LNet_o's windows): the negatives that matter most.
            img = self.hard[int(rng.integers(len(self.hard)))]
            return (img[:, ::-1] if rng.random() < 0.5 else img).copy(), 0.0, none
        if u < 0.75:
            i = int(rng.integers(len(self.maker.faces)))
            image, box = self.maker.portrait(self.maker.faces[i], rng, (0.3 * out, 0.5 * out))
            scene = Scene(image, box[None], self.maker.labels[i][None], np.array([i]))
            if u < 0.5:
                img = head_shoulder_window(scene, 0, rng, out, self.cfg.window_faces)
                return img, 1.0, scene.labels[0]
            # Not a head-shoulder view: a window inside a face (an eye, a cheek), which LNet_o
            # proposes when it reads a face part at too fine a scale.
            zoom = rng.uniform(0.6, 1.3)
            return head_shoulder_window(scene, 0, rng, out, zoom, jitter=0.4), 0.0, none
        # A window of a face-free photo (same backgrounds, same degradations).
        empty = self.maker.background(rng, (out, out))
        return self.maker.degraded(empty, rng), 0.0, none

    def batch(self, rng: np.random.Generator, n: int):
        items = [self.sample(rng) for _ in range(n)]
        images = np.stack([i[0] for i in items])
        face = np.array([i[1] for i in items], np.float32)
        tags = np.stack([i[2] for i in items]).astype(np.float32)
        return images, face, tags


_CHILD_BATCHES: SceneBatches | None = None


def _start_child(batches: SceneBatches) -> None:
    global _CHILD_BATCHES
    torch.set_num_threads(1)  # it pastes scenes; the parent's threads run the network
    _CHILD_BATCHES = batches


def _child_batch(seed: list[int], n: int):
    return _CHILD_BATCHES.batch(np.random.default_rng(seed), n)


def batches_in_process(batches: SceneBatches, seeds: list[list[int]], n: int,
                       depth: int = 2) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``batches.batch(default_rng(seed), n)`` for each seed, in order, made by a child process
    up to ``depth`` ahead: the same inputs a plain loop makes (each step has its own seed), made
    on the other core. An error in the child is raised here."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")  # no fork of a process with torch threads
    with ProcessPoolExecutor(1, mp_context=ctx, initializer=_start_child,
                             initargs=(batches,)) as pool:
        todo = iter(seeds)
        pending = deque(pool.submit(_child_batch, s, n) for s in itertools.islice(todo, depth))
        try:
            while pending:
                item = pending.popleft().result()
                if (seed := next(todo, None)) is not None:
                    pending.append(pool.submit(_child_batch, seed, n))
                yield item
        finally:
            for f in pending:
                f.cancel()


def tag_loss(logits: torch.Tensor, face: torch.Tensor, tags: torch.Tensor,
             attribute_weight: float) -> torch.Tensor:
    """BCE on the face tag (column 0) plus ``attribute_weight`` x BCE on the known attribute
    tags (NaN entries, i.e. inputs without a face, contribute nothing)."""
    loss = F.binary_cross_entropy_with_logits(logits[:, 0], face)
    known = ~torch.isnan(tags)
    if known.any():
        attr = F.binary_cross_entropy_with_logits(logits[:, 1:][known], tags[known])
        loss = loss + attribute_weight * attr
    return loss


def lr_at(step: int, cfg: SceneTrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def mine_hard_negatives(localizer, backgrounds: list[np.ndarray], window_size: int) -> np.ndarray:
    """Head-shoulder windows of every proposal LNet_o makes on face-free photos, at each zoom
    LNet_s will read: (N, S, S, 3) uint8."""
    out = []
    for image in backgrounds:
        for cx, cy, fw, _ in localizer.proposals(image):
            for z in localizer.zooms:
                half = fw * z * localizer.window_faces / 2
                out.append(crop_window(image, (cx - half, cy - half, cx + half, cy + half),
                                       window_size))
    return np.stack(out) if out else np.zeros((0, window_size, window_size, 3), np.uint8)


def train_lnet(maker: SceneMaker, cfg: SceneTrainConfig, lnet_config: LNetConfig | None = None,
               log: Callable[[str], None] = print, hard_negatives: np.ndarray | None = None,
               rank: int = 0, world_size: int = 1, init: LNet | None = None) -> LNet:
    """Train one LNet on fresh scenes for ``cfg.steps`` steps; returns it in eval mode.
    ``init``: an LNet of the same shape whose weights it starts from (a copy; it stays as is).
    ``cfg.threads`` holds for these steps only."""
    previous = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _train_steps(maker, cfg, lnet_config, log, hard_negatives, rank, world_size, init)
    finally:
        torch.set_num_threads(previous)


def _train_steps(maker: SceneMaker, cfg: SceneTrainConfig, lnet_config: LNetConfig | None,
                 log: Callable[[str], None], hard_negatives: np.ndarray | None, rank: int,
                 world_size: int, init: LNet | None) -> LNet:
    num_attributes = maker.labels.shape[1]
    if lnet_config is None:
        from faceattr_ray.presets import architecture

        lnet_config = LNetConfig.from_dict({**architecture("wild")["lnet"],
                                            "num_attributes": num_attributes})
    torch.manual_seed(cfg.seed)
    model = LNet(lnet_config)
    if init is not None:
        model.load_state_dict(init.state_dict())
    if cfg.channels_last:
        to_channels_last(model)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    average = weight_average(model, cfg.ema_decay)
    batches = SceneBatches(maker, cfg, num_attributes, hard_negatives)
    per_rank = cfg.batch_size // world_size
    t0, seen, running = time.perf_counter(), 0, None

    seeds = [[cfg.seed, step, rank] for step in range(cfg.steps)]
    # Inputs for the next step are made while this step trains.
    if cfg.prefetch == "process":
        scenes = batches_in_process(batches, seeds, per_rank)
    else:
        scenes = prefetched((batches.batch(np.random.default_rng(s), per_rank) for s in seeds),
                            depth=1)
    for step, (images, face, tags) in enumerate(scenes):
        x = to_tensor(images, None, IMAGENET_MEAN, IMAGENET_STD)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        with autocast(torch.device("cpu"), {"precision": cfg.precision}):
            logits = model(x)
        loss = tag_loss(logits.float(), torch.from_numpy(face), torch.from_numpy(tags),
                        cfg.attribute_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if average is not None:
            average.update_parameters(model)
        seen += len(images)
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if rank == 0 and (step % cfg.log_every == 0 or step == cfg.steps - 1):
            rate = seen / (time.perf_counter() - t0)
            log(f"lnet_{cfg.stage} step {step + 1}/{cfg.steps} loss {running:.4f} "
                f"({rate:.0f} inputs/s)")
    model = kept(model, average)
    for param in model.parameters():  # the kernels back in NCHW, as every reader expects
        param.data = param.data.contiguous()
    return model.eval()


# LNet_o's proposals per face-free photo that LNet_s's hard negatives are mined from (the
# recipe was chosen with these; reading photos may take more: "max_proposals").
MINING_PROPOSALS = 12


def pyramid_reading(recipe: dict, flip: bool = True) -> dict:
    """How a pyramid localizer reads LNets trained by ``recipe`` (`reproduce.RECIPE["lnets"]`):
    the face width their scenes centre on (the geometric mean of "face_px"), LNet_s's
    head-shoulder window and, when the recipe says, how many proposals LNet_s reads, how far
    from a proposal it looks (``refine_radius``) and, unless ``flip`` is False, whether LNet_o
    also reads the mirror image (``flip_proposals``: a reading choice, so the steps of training
    that read proposals, hard negatives and the draw choice, read without it);
    `PyramidLNetLocalizer` keywords."""
    reading = {"canonical": float(np.sqrt(np.prod(recipe["face_px"]))),
               "window_size": recipe["window_size"]}
    if recipe.get("max_proposals") is not None:
        reading["max_proposals"] = int(recipe["max_proposals"])
    if recipe.get("refine_radius") is not None:
        reading["refine_radius"] = float(recipe["refine_radius"])
    if flip and recipe.get("flip_proposals"):
        reading["flip_proposals"] = True
    return reading


def train_lnets(faces: np.ndarray, labels: np.ndarray, backgrounds: list[np.ndarray],
                lnet_config: LNetConfig, recipe: dict, seed: int = 0,
                log: Callable[[str], None] = print) -> tuple[LNet, list[LNet], dict]:
    """LNet_o on whole scenes, then LNet_s on head-shoulder windows with LNet_o's false
    proposals on the backgrounds as hard negatives. ``recipe``: `reproduce.RECIPE["lnets"]`;
    its "s_draws" LNet_s are trained (seeds seed, seed + 1, ...: the first is the one a single
    draw gives), from LNet_o's weights when "s_init" is "lnet_o", and all returned, for the
    caller to choose on validation scenes."""
    from faceattr_ray.localizers.pyramid import PyramidLNetLocalizer

    r = recipe
    if r.get("s_init") not in (None, "lnet_o"):
        raise RecipeError(f'lnets "s_init" must be "lnet_o" or null, not {r["s_init"]!r}')
    maker = SceneMaker(faces, labels, backgrounds, size=(r["scene_size"], r["scene_size"]),
                       face_px=tuple(r["face_px"]), context_share=r.get("context_share", 0.0),
                       distractors=r.get("distractors", 0), grey_share=r.get("grey_share"))
    common = {"batch_size": r["batch_size"], "lr": r["lr"], "weight_decay": r["weight_decay"],
              "window_size": r["window_size"], "seed": seed,
              "precision": r.get("precision", "fp32"), "channels_last": r.get("channels_last", False),
              "prefetch": r.get("prefetch", "thread"), "threads": r.get("threads", 0),
              "ema_decay": r.get("ema_decay")}
    t0 = time.perf_counter()
    lnet_o = train_lnet(maker, SceneTrainConfig(stage="o", steps=r["steps_o"], **common),
                        lnet_config, log)
    t1 = time.perf_counter()
    proposer = PyramidLNetLocalizer(lnet_o, None,
                                    **{**pyramid_reading(r, flip=False),
                                       "max_proposals": MINING_PROPOSALS})
    hard = mine_hard_negatives(proposer, backgrounds[:r.get("hard_negative_photos")],
                               r["window_size"])
    log(f"lnet_s: {len(hard)} hard negatives (LNet_o's proposals on {len(backgrounds)} "
        f"face-free photos)")
    # "s_init": "lnet_o" starts each LNet_s from LNet_o's weights, whose map already peaks
    # on faces at the windows' scale; None from random weights.
    init = lnet_o if r.get("s_init") == "lnet_o" else None
    draws = [train_lnet(maker, SceneTrainConfig(stage="s", steps=r["steps_s"],
                                                cut_share=r.get("cut_share", 0.0),
                                                **{**common, "seed": seed + k}),
                        lnet_config, log, hard_negatives=hard, init=init)
             for k in range(int(r.get("s_draws", 1)))]
    info = {"lnet_o_seconds": round(t1 - t0, 1), "lnet_s_seconds": round(time.perf_counter() - t1, 1),
            "hard_negatives": int(len(hard)), "faces": int(len(faces)),
            "backgrounds": int(len(backgrounds))}
    return lnet_o, draws, info
