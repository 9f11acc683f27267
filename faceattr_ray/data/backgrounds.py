"""Backgrounds with no person: generated clutter, crops of real photos, non-human faces."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def make_background(
    size: tuple[int, int], rng: np.random.Generator, clutter: int | None = None
) -> Image.Image:
    """A cluttered scene: a two-colour gradient, random shapes and lines, a little noise."""
    w, h = size
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, h)[:, None]
    rows = (c0 * (1 - t) + c1 * t).astype(np.uint8)  # (h, 3): one colour per row
    img = Image.fromarray(np.ascontiguousarray(np.broadcast_to(rows[:, None], (h, w, 3))), "RGB")
    draw = ImageDraw.Draw(img)
    n = int(rng.integers(8, 30)) if clutter is None else clutter
    for _ in range(n):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        x0, y0 = rng.uniform(-0.2, 1.0) * w, rng.uniform(-0.2, 1.0) * h
        x1, y1 = x0 + rng.uniform(0.05, 0.6) * w, y0 + rng.uniform(0.05, 0.6) * h
        kind = rng.integers(5)
        if kind == 0:
            draw.rectangle([x0, y0, x1, y1], fill=colour)
        elif kind == 1:
            draw.ellipse([x0, y0, x1, y1], fill=colour)
        elif kind == 2:
            draw.line([x0, y0, x1, y1], fill=colour, width=int(rng.integers(1, 6)))
        elif kind == 3:
            pts = [
                (float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1)))
                for _ in range(int(rng.integers(3, 7)))
            ]
            draw.polygon(pts, fill=colour)
        else:  # stripes: textured surfaces
            step = int(rng.integers(3, 10))
            for x in range(int(x0), int(x1), step * 2):
                draw.rectangle([x, y0, x + step, y1], fill=colour)
    arr = np.asarray(img).astype(np.int16)
    arr += rng.integers(-8, 9, (h, w, 1), dtype=np.int16)  # sensor-like grain, same on R, G, B
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def draw_distractor(
    canvas: Image.Image, box: tuple[float, float, float, float], kind: str, rng: np.random.Generator
) -> None:
    """A non-human "face" inside ``box``: ``cat`` (ears, slit eyes, whiskers), ``smiley`` or
    ``robot`` (a square head with square eyes)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    draw = ImageDraw.Draw(canvas)
    cx = (x0 + x1) / 2
    if kind == "cat":
        fur = tuple(
            int(v)
            for v in rng.choice([(210, 120, 40), (120, 120, 120), (40, 35, 30), (230, 220, 200)])
        )
        draw.polygon(
            [(x0, y0), (x0 + 0.38 * w, y0 + 0.3 * h), (x0 + 0.05 * w, y0 + 0.5 * h)], fill=fur
        )
        draw.polygon(
            [(x1, y0), (x1 - 0.38 * w, y0 + 0.3 * h), (x1 - 0.05 * w, y0 + 0.5 * h)], fill=fur
        )
        draw.ellipse([x0, y0 + 0.2 * h, x1, y1], fill=fur)
        for s in (-1, 1):
            ex, ey = cx + s * 0.22 * w, y0 + 0.5 * h
            draw.ellipse(
                [ex - 0.1 * w, ey - 0.08 * h, ex + 0.1 * w, ey + 0.08 * h], fill=(150, 200, 40)
            )
            draw.ellipse(
                [ex - 0.02 * w, ey - 0.08 * h, ex + 0.02 * w, ey + 0.08 * h], fill=(5, 5, 5)
            )
            for k in (-1, 0, 1):
                draw.line(
                    [cx + s * 0.1 * w, y0 + 0.72 * h, cx + s * 0.55 * w, y0 + (0.7 + 0.06 * k) * h],
                    fill=(240, 240, 240),
                    width=1,
                )
        draw.polygon(
            [(cx - 0.06 * w, y0 + 0.65 * h), (cx + 0.06 * w, y0 + 0.65 * h), (cx, y0 + 0.72 * h)],
            fill=(230, 130, 150),
        )
    elif kind == "smiley":
        draw.ellipse(
            [x0, y0, x1, y1], fill=(250, 215, 40), outline=(60, 40, 0), width=max(1, int(w / 30))
        )
        for s in (-1, 1):
            draw.ellipse(
                [
                    cx + s * 0.18 * w - 0.06 * w,
                    y0 + 0.3 * h,
                    cx + s * 0.18 * w + 0.06 * w,
                    y0 + 0.45 * h,
                ],
                fill=(30, 20, 0),
            )
        draw.arc(
            [x0 + 0.2 * w, y0 + 0.3 * h, x1 - 0.2 * w, y1 - 0.18 * h],
            20,
            160,
            fill=(30, 20, 0),
            width=max(1, int(w / 20)),
        )
    else:  # robot
        metal = tuple(int(v) for v in rng.integers(100, 200, 3))
        draw.rectangle(
            [x0, y0, x1, y1], fill=metal, outline=(30, 30, 30), width=max(1, int(w / 30))
        )
        for s in (-1, 1):
            draw.rectangle(
                [
                    cx + s * 0.22 * w - 0.1 * w,
                    y0 + 0.25 * h,
                    cx + s * 0.22 * w + 0.1 * w,
                    y0 + 0.42 * h,
                ],
                fill=(240, 40, 40),
            )
        draw.rectangle(
            [x0 + 0.25 * w, y0 + 0.65 * h, x1 - 0.25 * w, y0 + 0.75 * h], fill=(30, 30, 30)
        )
        draw.line([cx, y0, cx, y0 - 0.2 * h], fill=(30, 30, 30), width=max(1, int(w / 25)))


DISTRACTOR_KINDS = ("cat", "smiley", "robot")


def background_from(path: str, size: tuple[int, int], rng) -> Image.Image:
    from faceattr_ray.data.decode import load_image

    img = Image.fromarray(load_image(path))
    w, h = size
    s = max(w / img.width, h / img.height) * rng.uniform(1.0, 1.3)
    img = img.resize((max(w, round(img.width * s)), max(h, round(img.height * s))), Image.BILINEAR)
    x = int(rng.integers(0, img.width - w + 1))
    y = int(rng.integers(0, img.height - h + 1))
    return img.crop((x, y, x + w, y + h))
