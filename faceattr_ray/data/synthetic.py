"""Generated people for tests, the demo and localization: drawn with PIL, deterministic by seed.

Each identity keeps its face geometry and colouring (skin, hair, eyes, face shape, nose, lips,
facial hair); each image varies pose (rotation, offset), scale, lighting and the per-image
attributes (glasses, smile, open mouth, hat, make-up ...). Labels use CelebA's 40 names.

Drawn (visible) attributes, 37 of 40: 5_o_Clock_Shadow, Arched_Eyebrows, Bags_Under_Eyes, Bald,
Bangs, Big_Lips, Big_Nose, Black_Hair, Blond_Hair, Blurry, Brown_Hair, Bushy_Eyebrows, Chubby,
Double_Chin, Eyeglasses, Goatee, Gray_Hair, Heavy_Makeup, Male, Mouth_Slightly_Open, Mustache,
Narrow_Eyes, No_Beard, Oval_Face, Pale_Skin, Pointy_Nose, Receding_Hairline, Rosy_Cheeks,
Sideburns, Smiling, Straight_Hair, Wavy_Hair, Wearing_Earrings, Wearing_Hat, Wearing_Lipstick,
Wearing_Necklace, Wearing_Necktie, Young. Some are drawn as the absence of another: Young = no
forehead/eye wrinkles, Straight_Hair = a smooth hair outline (not Wavy_Hair), No_Beard = neither
Mustache nor Goatee. Identity-level: Male, Pale_Skin, hair colour, Bald, Chubby, Oval_Face,
Big_Nose, Pointy_Nose, Big_Lips, Narrow_Eyes, eyebrows, Receding_Hairline, Sideburns, facial
hair; the rest vary per image.
Not drawn: Attractive and High_Cheekbones are random labels (p = 0.5), so a model cannot
learn them from these images (a useful negative control).

Layouts written (the CelebA reader reads them unchanged):
- ``write_aligned``: ``img_align_celeba/`` face crops (default 89x109, like celeba-mini),
  ``list_attr_celeba.txt``, ``identity_CelebA.txt``, ``list_eval_partition.txt`` (split by
  identity, 80/10/10).
- ``write_wild`` / ``paste_faces``: ``img_celeba/`` scenes with one or several people, the same
  three files for the dominant (largest) face, plus ``list_bbox_celeba.txt`` (face, x_1 y_1 width
  height), ``list_headshoulder_bbox.txt`` (head and shoulders, same format), ``list_faces_all.txt``
  (every person: NAME, face box, head-shoulder box, identity) and ``list_distractors.txt``
  (non-human faces: NAME, box, kind). ``read_all_faces`` reads the last two.
- ``write_backgrounds`` / ``write_distractors``: images with no human face.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from faceattr_ray.attributes import CELEBA_40
from faceattr_ray.errors import DataError

UNRENDERED = ("Attractive", "High_Cheekbones")
RENDERED = tuple(n for n in CELEBA_40 if n not in UNRENDERED)
ALIGNED_SIZE = (89, 109)  # (W, H) of celeba-mini's crops
# Where the face sits inside a CelebA aligned crop, as fractions (x1, y1, x2, y2) of W and H.
ALIGNED_FACE_REGION = (0.22, 0.33, 0.78, 0.86)
_SS = 2  # supersampling factor for anti-aliased drawing
_BUST = 1.8  # the drawn bust ends this many face heights below the face centre

SKIN = np.array(
    [
        (255, 224, 196),
        (241, 194, 160),
        (224, 172, 130),
        (198, 134, 90),
        (141, 85, 54),
        (100, 62, 42),
    ],
    dtype=np.float64,
)
HAIR = {
    "Black_Hair": (28, 22, 22),
    "Brown_Hair": (105, 62, 30),
    "Blond_Hair": (228, 196, 118),
    "Gray_Hair": (178, 178, 182),
    "red": (150, 52, 22),
}
EYE_COLOURS = [(60, 40, 25), (40, 90, 150), (70, 110, 60), (30, 30, 30)]


@dataclass
class Identity:
    """What stays the same for one person across their images."""

    index: int
    male: bool
    skin: tuple[int, int, int]
    pale: bool
    hair: str  # a HAIR key
    bald: bool
    young: bool
    face_aspect: float  # face height / width
    face_width_gain: float  # chubby faces are wider
    eye_spacing: float
    eye_colour: tuple[int, int, int]
    traits: dict[str, bool] = field(default_factory=dict)  # identity-level attributes
    clothes: tuple[int, int, int] = (80, 80, 120)


def make_identity(index: int, seed: int = 0) -> Identity:
    """The identity ``index`` of generator ``seed`` (the same arguments give the same person)."""
    rng = np.random.default_rng([seed, 7, index])
    male = bool(rng.random() < 0.45)
    pale = bool(rng.random() < 0.15)
    skin = SKIN[rng.integers(len(SKIN))] * rng.uniform(0.94, 1.04, 3)
    if pale:
        skin = skin * 0.3 + np.array([250, 236, 228]) * 0.7
    young = bool(rng.random() < 0.75)
    hair = str(
        rng.choice(["Black_Hair", "Brown_Hair", "Blond_Hair", "red"], p=[0.35, 0.3, 0.25, 0.1])
    )
    if not young and rng.random() < 0.6:
        hair = "Gray_Hair"
    bald = bool(male and rng.random() < (0.25 if not young else 0.06))
    chubby = bool(rng.random() < 0.12)
    oval = bool(rng.random() < 0.3)
    traits = {
        "Chubby": chubby,
        "Oval_Face": oval,
        "Double_Chin": bool(rng.random() < (0.5 if chubby else 0.03)),
        "Big_Nose": bool(rng.random() < 0.25),
        "Pointy_Nose": bool(rng.random() < 0.28),
        "Big_Lips": bool(rng.random() < 0.25),
        "Narrow_Eyes": bool(rng.random() < 0.12),
        "Bushy_Eyebrows": bool(rng.random() < (0.3 if male else 0.1)),
        "Arched_Eyebrows": bool(rng.random() < (0.1 if male else 0.5)),
        "Bags_Under_Eyes": bool(rng.random() < (0.35 if not young else 0.15)),
        "Receding_Hairline": bool(male and not bald and rng.random() < 0.2),
        "Sideburns": bool(male and not bald and rng.random() < 0.15),
        "Mustache": bool(male and rng.random() < 0.2),
        "Goatee": bool(male and rng.random() < 0.2),
        "Wavy_Hair": False,
        "Straight_Hair": False,
        "Bangs": bool(not bald and rng.random() < 0.22),
    }
    if not bald:  # drawn as a wavy or a smooth outline of the hair
        traits["Wavy_Hair"] = bool(rng.random() < 0.35)
        traits["Straight_Hair"] = not traits["Wavy_Hair"]
    return Identity(
        index=index,
        male=male,
        skin=tuple(int(v) for v in np.clip(skin, 0, 255)),
        pale=pale,
        hair=hair,
        bald=bald,
        young=young,
        face_aspect=float(rng.uniform(1.35, 1.5) if oval else rng.uniform(1.18, 1.3)),
        face_width_gain=float(1.12 if chubby else rng.uniform(0.94, 1.02)),
        eye_spacing=float(rng.uniform(0.19, 0.24)),
        eye_colour=EYE_COLOURS[int(rng.integers(len(EYE_COLOURS)))],
        traits=traits,
        clothes=tuple(int(v) for v in rng.integers(20, 235, 3)),
    )


def sample_attributes(identity: Identity, rng: np.random.Generator) -> dict[str, bool]:
    """All 40 CelebA attributes for one image of ``identity`` (True = present)."""
    t = identity.traits
    female = not identity.male
    a = {n: False for n in CELEBA_40}
    a.update({k: v for k, v in t.items() if k in a})
    a["Male"] = identity.male
    a["Pale_Skin"] = identity.pale
    a["Young"] = identity.young
    a["Bald"] = identity.bald
    if not identity.bald and identity.hair in HAIR and identity.hair != "red":
        a[identity.hair] = True
    if t["Bangs"] != (rng.random() < 0.1) and not identity.bald:  # a different hair-do now and then
        a["Bangs"] = True
    else:
        a["Bangs"] = False
    a["Eyeglasses"] = bool(rng.random() < (0.25 if not identity.young else 0.1))
    a["Smiling"] = bool(rng.random() < 0.5)
    a["Mouth_Slightly_Open"] = bool(rng.random() < 0.45)
    a["Wearing_Hat"] = bool(rng.random() < 0.1)
    a["Heavy_Makeup"] = bool(female and rng.random() < 0.4)
    a["Wearing_Lipstick"] = bool(female and (a["Heavy_Makeup"] or rng.random() < 0.35))
    a["Wearing_Earrings"] = bool(female and rng.random() < 0.3)
    a["Wearing_Necklace"] = bool(rng.random() < (0.2 if female else 0.03))
    a["Wearing_Necktie"] = bool(identity.male and rng.random() < 0.15)
    a["Rosy_Cheeks"] = bool(rng.random() < (0.12 if female else 0.04))
    a["Blurry"] = bool(rng.random() < 0.06)
    a["5_o_Clock_Shadow"] = bool(
        identity.male and not (t["Mustache"] or t["Goatee"]) and rng.random() < 0.3
    )
    a["No_Beard"] = not (a["Mustache"] or a["Goatee"])
    for name in UNRENDERED:
        a[name] = bool(rng.random() < 0.5)
    return a


# --- drawing one person ----------------------------------------------------------------------


def _mix(c1, c2, t: float) -> tuple[int, int, int]:
    return tuple(int(round(a * (1 - t) + b * t)) for a, b in zip(c1, c2, strict=True))


def _draw_person(
    draw: ImageDraw.ImageDraw,
    cx: float,
    cy: float,
    fw: float,
    ident: Identity,
    a: dict[str, bool],
    rng: np.random.Generator,
) -> tuple:
    """Draw a bust with its face centred at (cx, cy), face width ``fw``.

    Returns the face ellipse's half-axes and the head-shoulder box (x1, y1, x2, y2).
    """
    f = fw * ident.face_width_gain
    h = fw * ident.face_aspect
    skin = ident.skin
    hair = HAIR[ident.hair]
    dark_skin = _mix(skin, (60, 30, 20), 0.35)
    line = max(1, int(round(0.03 * f)))

    # torso, shoulders and neck
    sh = (1.45 if ident.male else 1.2) * f
    draw.ellipse([cx - sh, cy + 0.85 * h, cx + sh, cy + 3.2 * h], fill=ident.clothes)
    draw.rectangle(
        [cx - 0.2 * f, cy + 0.2 * h, cx + 0.2 * f, cy + 0.95 * h], fill=_mix(skin, dark_skin, 0.3)
    )
    if a["Wearing_Necktie"]:
        draw.polygon(
            [(cx - 0.22 * f, cy + 0.86 * h), (cx, cy + 1.05 * h), (cx + 0.22 * f, cy + 0.86 * h)],
            fill=(245, 245, 245),
        )
        draw.polygon(
            [
                (cx - 0.06 * f, cy + 0.92 * h),
                (cx + 0.06 * f, cy + 0.92 * h),
                (cx + 0.1 * f, cy + 1.6 * h),
                (cx, cy + 1.75 * h),
                (cx - 0.1 * f, cy + 1.6 * h),
            ],
            fill=(170, 20, 30),
        )
    if a["Wearing_Necklace"]:
        draw.arc(
            [cx - 0.3 * f, cy + 0.55 * h, cx + 0.3 * f, cy + 1.05 * h],
            20,
            160,
            fill=(235, 200, 60),
            width=max(1, int(0.04 * f)),
        )

    # hair behind the head: long for women, short for men
    long_hair = not ident.male and not ident.bald
    if long_hair:
        _hair_shape(draw, cx, cy - 0.1 * h, 0.66 * f, 0.62 * h, 1.0 * h, hair, a["Wavy_Hair"])
    if not ident.bald:
        _hair_shape(draw, cx, cy - 0.28 * h, 0.58 * f, 0.38 * h, 0.38 * h, hair, a["Wavy_Hair"])
    # ears
    for s in (-1, 1):
        draw.ellipse(
            [
                cx + s * 0.5 * f - 0.07 * f,
                cy - 0.12 * h,
                cx + s * 0.5 * f + 0.07 * f,
                cy + 0.12 * h,
            ],
            fill=_mix(skin, dark_skin, 0.2),
        )
    # face
    draw.ellipse([cx - f / 2, cy - h / 2, cx + f / 2, cy + h / 2], fill=skin)
    if a["Double_Chin"]:
        draw.arc(
            [cx - 0.25 * f, cy + 0.36 * h, cx + 0.25 * f, cy + 0.56 * h],
            20,
            160,
            fill=dark_skin,
            width=line,
        )
    if a["5_o_Clock_Shadow"]:
        draw.chord(
            [cx - 0.42 * f, cy - 0.2 * h, cx + 0.42 * f, cy + 0.49 * h],
            0,
            180,
            fill=_mix(skin, (55, 45, 40), 0.3),
        )
    if a["Sideburns"]:
        for s in (-1, 1):
            x0, x1 = sorted((cx + s * 0.5 * f, cx + s * 0.4 * f))
            draw.rectangle([x0, cy - 0.28 * h, x1, cy + 0.12 * h], fill=hair)
    # hair on the head (a cap of hair down to the hairline), bangs, bald sides
    if not ident.bald:
        hairline = cy - (0.42 if a["Receding_Hairline"] else 0.32) * h
        top = cy - 0.58 * h
        draw.chord(
            [cx - 0.52 * f, top, cx + 0.52 * f, top + 2 * (hairline - top)], 180, 360, fill=hair
        )
        if a["Receding_Hairline"]:  # bare temples: the cap is cut back at both sides
            for s in (-1, 1):
                draw.ellipse(
                    [
                        cx + s * 0.24 * f - 0.1 * f,
                        hairline - 0.1 * h,
                        cx + s * 0.24 * f + 0.1 * f,
                        hairline + 0.04 * h,
                    ],
                    fill=skin,
                )
        if a["Bangs"]:
            edge = cy - 0.21 * h
            draw.chord(
                [cx - 0.5 * f, top, cx + 0.5 * f, top + 2 * (edge - top)], 180, 360, fill=hair
            )
            draw.rectangle([cx - 0.4 * f, hairline, cx + 0.4 * f, edge], fill=hair)
    else:
        for s in (-1, 1):
            draw.ellipse(
                [
                    cx + s * 0.48 * f - 0.07 * f,
                    cy - 0.3 * h,
                    cx + s * 0.48 * f + 0.07 * f,
                    cy - 0.02 * h,
                ],
                fill=_mix(hair, skin, 0.3),
            )

    ey = cy - 0.08 * h
    es = ident.eye_spacing * f  # eye centre offset from the midline
    if not a["Young"]:
        for k in (0, 1):
            y = cy - (0.26 - 0.05 * k) * h
            if not (a["Bangs"] or a["Wearing_Hat"]):
                draw.line([cx - 0.16 * f, y, cx + 0.16 * f, y], fill=dark_skin, width=line)
        for s in (-1, 1):
            x = cx + s * (es + 0.15 * f)
            draw.line(
                [x, ey - 0.03 * h, x + s * 0.05 * f, ey - 0.05 * h], fill=dark_skin, width=line
            )
            draw.line(
                [x, ey + 0.03 * h, x + s * 0.05 * f, ey + 0.05 * h], fill=dark_skin, width=line
            )

    # eyebrows
    brow_colour = _mix(hair, (40, 30, 25), 0.5)
    by = cy - 0.17 * h
    bw = max(1, int(round((0.07 if a["Bushy_Eyebrows"] else 0.03) * h)))
    for s in (-1, 1):
        x0, x1 = cx + s * (es - 0.1 * f), cx + s * (es + 0.11 * f)
        if a["Arched_Eyebrows"]:
            draw.line(
                [(x0, by + 0.01 * h), (cx + s * es, by - 0.05 * h), (x1, by + 0.03 * h)],
                fill=brow_colour,
                width=bw,
                joint="curve",
            )
        else:
            draw.line([(x0, by), (x1, by + 0.01 * h)], fill=brow_colour, width=bw)

    # eyes (make-up and bags first, so the eye sits on top)
    eh = (0.022 if a["Narrow_Eyes"] else 0.045) * h
    for s in (-1, 1):
        ex = cx + s * es
        if a["Heavy_Makeup"]:
            draw.ellipse(
                [ex - 0.12 * f, ey - 0.09 * h, ex + 0.12 * f, ey + 0.02 * h], fill=(110, 60, 110)
            )
        if a["Bags_Under_Eyes"]:
            draw.arc(
                [ex - 0.09 * f, ey - 0.02 * h, ex + 0.09 * f, ey + 0.09 * h],
                20,
                160,
                fill=_mix(skin, (90, 60, 80), 0.5),
                width=line,
            )
        draw.ellipse([ex - 0.09 * f, ey - eh, ex + 0.09 * f, ey + eh], fill=(250, 250, 250))
        r = min(eh, 0.045 * f)
        draw.ellipse([ex - r, ey - r, ex + r, ey + r], fill=ident.eye_colour)
        draw.ellipse([ex - r / 2.5, ey - r / 2.5, ex + r / 2.5, ey + r / 2.5], fill=(10, 10, 10))

    # nose
    nw = (0.2 if a["Big_Nose"] else 0.12) * f
    ny = cy + (0.17 if a["Big_Nose"] else 0.12) * h
    if a["Pointy_Nose"]:
        draw.polygon(
            [(cx, ey), (cx - nw / 2, ny), (cx + nw / 2, ny)], fill=_mix(skin, dark_skin, 0.45)
        )
    else:
        draw.line([cx, ey, cx - 0.03 * f, ny - 0.03 * h], fill=dark_skin, width=line)
        draw.ellipse(
            [cx - nw / 2, ny - 0.05 * h, cx + nw / 2, ny + 0.01 * h],
            fill=_mix(skin, dark_skin, 0.5),
        )

    if a["Rosy_Cheeks"]:
        for s in (-1, 1):
            x = cx + s * 0.28 * f
            draw.ellipse(
                [x - 0.09 * f, cy + 0.02 * h, x + 0.09 * f, cy + 0.14 * h],
                fill=_mix(skin, (235, 80, 95), 0.45),
            )

    # facial hair, then the mouth
    beard = _mix(hair, (30, 25, 20), 0.4)
    my = cy + 0.28 * h
    mw = 0.34 * f
    if a["Goatee"]:
        draw.ellipse([cx - 0.12 * f, my + 0.02 * h, cx + 0.12 * f, cy + 0.5 * h], fill=beard)
    lips = (200, 25, 55) if a["Wearing_Lipstick"] else _mix(skin, (170, 70, 70), 0.45)
    lt = (0.05 if a["Big_Lips"] else 0.028) * h
    if a["Mouth_Slightly_Open"]:
        oh = 0.075 * h
        draw.ellipse([cx - mw / 2, my - oh / 2 - lt, cx + mw / 2, my + oh / 2 + lt], fill=lips)
        draw.ellipse(
            [cx - mw / 2 + lt, my - oh / 2, cx + mw / 2 - lt, my + oh / 2], fill=(45, 15, 20)
        )
        if a["Smiling"]:
            draw.rectangle(
                [cx - mw / 2 + 1.5 * lt, my - oh / 2, cx + mw / 2 - 1.5 * lt, my - oh / 6],
                fill=(245, 245, 240),
            )
    if a["Smiling"]:
        # corners up: the lower arc of an ellipse whose top is above the mouth line
        draw.arc(
            [cx - mw / 2 - 0.03 * f, my - 0.1 * h, cx + mw / 2 + 0.03 * f, my + 0.05 * h],
            15,
            165,
            fill=lips,
            width=max(1, int(round(lt))),
        )
    elif not a["Mouth_Slightly_Open"]:
        draw.ellipse([cx - mw / 2, my - lt / 2, cx + mw / 2, my + lt / 2], fill=lips)
        draw.line([cx - mw / 2, my, cx + mw / 2, my], fill=_mix(lips, (40, 10, 10), 0.5), width=1)
    if a["Mustache"]:
        draw.polygon(
            [
                (cx - 0.2 * f, my - 0.03 * h),
                (cx, my - 0.1 * h),
                (cx + 0.2 * f, my - 0.03 * h),
                (cx + 0.16 * f, my - 0.01 * h),
                (cx, my - 0.05 * h),
                (cx - 0.16 * f, my - 0.01 * h),
            ],
            fill=beard,
        )

    if a["Wearing_Earrings"]:
        for s in (-1, 1):
            x, y, r = cx + s * 0.52 * f, cy + 0.15 * h, 0.045 * f
            draw.ellipse([x - r, y - r, x + r, y + r], fill=(240, 200, 50))
    if a["Eyeglasses"]:
        frame = (
            (20, 20, 20) if rng.random() < 0.7 else tuple(int(v) for v in rng.integers(0, 160, 3))
        )
        gw = max(1, int(round(0.035 * f)))
        for s in (-1, 1):
            ex = cx + s * es
            draw.ellipse(
                [ex - 0.15 * f, ey - 0.09 * h, ex + 0.15 * f, ey + 0.08 * h],
                outline=frame,
                width=gw,
            )
            draw.line(
                [ex + s * 0.15 * f, ey - 0.02 * h, cx + s * 0.5 * f, ey - 0.04 * h],
                fill=frame,
                width=gw,
            )
        draw.line(
            [cx - es + 0.15 * f, ey - 0.02 * h, cx + es - 0.15 * f, ey - 0.02 * h],
            fill=frame,
            width=gw,
        )
    top = cy - 0.68 * h  # the hair cap (wavy outlines reach a little higher)
    if a["Wearing_Hat"]:
        hat = tuple(int(v) for v in rng.integers(10, 200, 3))
        draw.rectangle([cx - 0.47 * f, cy - 0.98 * h, cx + 0.47 * f, cy - 0.36 * h], fill=hat)
        draw.ellipse([cx - 0.78 * f, cy - 0.46 * h, cx + 0.78 * f, cy - 0.32 * h], fill=hat)
        draw.rectangle(
            [cx - 0.47 * f, cy - 0.5 * h, cx + 0.47 * f, cy - 0.42 * h],
            fill=_mix(hat, (0, 0, 0), 0.5),
        )
        top = cy - 0.98 * h
    elif ident.bald:
        top = cy - 0.52 * h
    return (f / 2, h / 2), (cx - sh, top, cx + sh, cy + _BUST * h)


def _hair_shape(draw, cx, cy, rx, ry_top, ry_bottom, colour, wavy: bool) -> None:
    """Hair falling behind the head: an outline with waves when ``wavy``."""
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    ry = np.where(np.sin(t) < 0, ry_top, ry_bottom)
    r = 1.0 + (0.06 * np.sin(9 * t) if wavy else 0.0)
    pts = list(
        zip((cx + rx * r * np.cos(t)).tolist(), (cy + ry * r * np.sin(t)).tolist(), strict=True)
    )
    draw.polygon(pts, fill=colour)


@dataclass
class Person:
    identity: int
    attributes: dict[str, bool]
    face_box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the image
    headshoulder_box: tuple[float, float, float, float]


def render_person(
    canvas: Image.Image,
    ident: Identity,
    attrs: dict[str, bool],
    center: tuple[float, float],
    face_width: float,
    angle: float,
    rng: np.random.Generator,
    light: tuple[float, float] = (1.0, 0.0),
) -> Person:
    """Draw a person onto ``canvas`` (RGB, in place): face centre, face width in canvas pixels,
    rotation in degrees (counter-clockwise), light = (gain, left-right gradient)."""
    fw = face_width * _SS
    h = fw * ident.face_aspect
    # The layer ends where the bust does (the head-shoulder box's bottom); even sizes reduce exactly.
    lcx, lcy = int(1.7 * fw) + 2, 1.05 * h + 2
    lw, lh = 2 * lcx, 2 * (int((lcy + _BUST * h) / 2) + 1)
    layer = Image.new("RGBA", (lw, lh), (0, 0, 0, 0))
    (ax, ay), hs = _draw_person(ImageDraw.Draw(layer), lcx, lcy, fw, ident, attrs, rng)
    # Anti-alias by 2x box reduction, then rotate and light the small layer (4x fewer pixels).
    layer = layer.reduce(_SS)
    lcx, lcy = lcx / _SS, lcy / _SS
    layer = layer.rotate(angle, resample=Image.BILINEAR, center=(lcx, lcy))
    gain, slope = light
    arr = np.asarray(layer).astype(np.float32)
    ramp = gain * (1.0 + slope * np.linspace(-1, 1, layer.width, dtype=np.float32))[None, :, None]
    arr[:, :, :3] *= ramp
    layer = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGBA")
    if attrs.get("Blurry"):
        layer = layer.filter(ImageFilter.GaussianBlur(max(1.0, face_width / 25)))
    ox = int(round(center[0] - lcx))
    oy = int(round(center[1] - lcy))
    canvas.paste(layer, (ox, oy), layer)

    # Boxes: rotate about the face centre (PIL's rotate is counter-clockwise, y points down).
    th = math.radians(angle)
    c, s = math.cos(th), math.sin(th)
    hx = math.sqrt((ax * c) ** 2 + (ay * s) ** 2) / _SS
    hy = math.sqrt((ax * s) ** 2 + (ay * c) ** 2) / _SS
    fx, fy = ox + lcx, oy + lcy
    face = (fx - hx, fy - hy, fx + hx, fy + hy)
    corners = [
        ((x - lcx * _SS) * c + (y - lcy * _SS) * s, -(x - lcx * _SS) * s + (y - lcy * _SS) * c)
        for x in (hs[0], hs[2])
        for y in (hs[1], hs[3])
    ]
    xs = [fx + u / _SS for u, _ in corners]
    ys = [fy + v / _SS for _, v in corners]
    hsb = (min(xs), min(ys), max(xs), max(ys))
    return Person(ident.index, attrs, face, hsb)


# --- backgrounds and non-human faces ---------------------------------------------------------


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


# --- scenes ----------------------------------------------------------------------------------


def render_aligned(
    ident: Identity, attrs: dict[str, bool], size: tuple[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, Person]:
    """A CelebA-style aligned crop (face centred, about half the width) of one person."""
    w, h = size
    canvas = make_background(size, rng, clutter=int(rng.integers(2, 8))).filter(
        ImageFilter.GaussianBlur(2)
    )
    fw = w * rng.uniform(0.46, 0.54) / ident.face_width_gain
    face_h = fw * ident.face_width_gain * ident.face_aspect
    cy = h * ALIGNED_FACE_REGION[3] - face_h / 2 + rng.uniform(-0.02, 0.02) * h
    center = (w / 2 + rng.uniform(-0.03, 0.03) * w, cy)
    person = render_person(
        canvas,
        ident,
        attrs,
        center,
        fw,
        float(rng.uniform(-6, 6)),
        rng,
        light=(float(rng.uniform(0.8, 1.15)), float(rng.uniform(-0.2, 0.2))),
    )
    return np.asarray(canvas), person


def render_scene(
    identities: list[Identity],
    size: tuple[int, int],
    rng: np.random.Generator,
    distractors: int = 0,
    min_face: float = 16.0,
    max_face: float | None = None,
    background: Image.Image | None = None,
) -> tuple[np.ndarray, list[Person], list]:
    """People (one per identity given; larger ones drawn later, in front) on a cluttered scene.

    No person's head and shoulders cover another face or a distractor. Returns the image, the
    people drawn, largest face first (one is skipped when no free spot is found) and the
    distractors as (box, kind).
    """
    w, h = size
    canvas = background.copy() if background is not None else make_background(size, rng)
    max_face = max_face or 0.4 * min(w, h)
    min_face = min(min_face, max_face)
    taken: list[tuple] = []  # faces and distractors: nothing may be drawn over them
    others: list = []
    for _ in range(distractors):
        dw = _log_uniform(rng, min_face, max_face)
        dh = dw * rng.uniform(0.9, 1.2)
        box = _free_spot(rng, size, dw, dh, lambda b: b, taken)
        if box is not None:
            kind = str(rng.choice(DISTRACTOR_KINDS))
            draw_distractor(canvas, box, kind, rng)
            taken.append(box)
            others.append((box, kind))
    widths = sorted(_log_uniform(rng, min_face, max_face) for _ in identities)
    people = []
    for ident, fw in zip(identities, widths, strict=True):
        attrs = sample_attributes(ident, rng)
        face_w = fw * ident.face_width_gain
        face_h = fw * ident.face_aspect

        def footprint(b, face_w=face_w, face_h=face_h):  # head, hat and shoulders around a face
            cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
            return (cx - 1.5 * face_w, cy - face_h, cx + 1.5 * face_w, cy + _BUST * face_h)

        box = _free_spot(rng, size, face_w, face_h, footprint, taken)
        if box is None:
            continue
        center = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        light = (float(rng.uniform(0.75, 1.2)), float(rng.uniform(-0.3, 0.3)))
        p = render_person(canvas, ident, attrs, center, fw, float(rng.uniform(-12, 12)), rng, light)
        people.append(p)
        taken.append(p.face_box)
    people.sort(key=lambda p: -(p.face_box[2] - p.face_box[0]) * (p.face_box[3] - p.face_box[1]))
    return np.asarray(canvas), people, others


def _log_uniform(rng, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _free_spot(rng, size, bw, bh, footprint, taken, tries: int = 30):
    """A box of bw x bh inside the image whose footprint(box) overlaps nothing in ``taken``."""
    w, h = size
    for _ in range(tries):
        x = rng.uniform(1, max(1.0, w - bw - 1))
        y = rng.uniform(1, max(1.0, h - bh - 1))
        box = (x, y, x + bw, y + bh)
        if all(_overlap(footprint(box), t) == 0 for t in taken):
            return box
    return None


def _overlap(a, b) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


# --- writing datasets ------------------------------------------------------------------------


def _partition_of(index: int, seed: int) -> int:
    """Identity-level split, 80/10/10, stable for a given seed."""
    u = np.random.default_rng([seed, 11, index]).random()
    return 0 if u < 0.8 else (1 if u < 0.9 else 2)


def _labels_line(name: str, attrs: dict[str, bool]) -> str:
    return name + " " + " ".join(" 1" if attrs[n] else "-1" for n in CELEBA_40)


def _box_ints(box, size) -> tuple[int, int, int, int]:
    """x1, y1, w, h as integers, clipped to the image."""
    w, h = size
    x1, y1 = max(0, int(math.floor(box[0]))), max(0, int(math.floor(box[1])))
    x2, y2 = min(w, int(math.ceil(box[2]))), min(h, int(math.ceil(box[3])))
    return x1, y1, max(0, x2 - x1), max(0, y2 - y1)


def _write_lists(out: str, rows: list[dict], with_boxes: bool, size) -> None:
    """CelebA's text files for ``rows`` (name, attrs, identity, partition, people, others)."""
    with open(os.path.join(out, "list_attr_celeba.txt"), "w") as f:
        f.write(f"{len(rows)}\n{' '.join(CELEBA_40)}\n")
        f.writelines(_labels_line(r["name"], r["attrs"]) + "\n" for r in rows)
    with open(os.path.join(out, "identity_CelebA.txt"), "w") as f:
        f.writelines(f"{r['name']} {r['identity']}\n" for r in rows)
    with open(os.path.join(out, "list_eval_partition.txt"), "w") as f:
        f.writelines(f"{r['name']} {r['partition']}\n" for r in rows)
    if not with_boxes:
        return
    for fname, key in (
        ("list_bbox_celeba.txt", "face_box"),
        ("list_headshoulder_bbox.txt", "headshoulder_box"),
    ):
        with open(os.path.join(out, fname), "w") as f:
            f.write(f"{len(rows)}\nimage_id x_1 y_1 width height\n")
            for r in rows:
                f.write(
                    r["name"]
                    + " "
                    + " ".join(str(v) for v in _box_ints(getattr(r["people"][0], key), size))
                    + "\n"
                )
    with open(os.path.join(out, "list_faces_all.txt"), "w") as f:
        f.write("image_id x_1 y_1 width height hs_x_1 hs_y_1 hs_width hs_height identity\n")
        for r in rows:
            for p in r["people"]:
                vals = _box_ints(p.face_box, size) + _box_ints(p.headshoulder_box, size)
                f.write(f"{r['name']} {' '.join(str(v) for v in vals)} {p.identity}\n")
    with open(os.path.join(out, "list_distractors.txt"), "w") as f:
        f.write("image_id x_1 y_1 width height kind\n")
        for r in rows:
            for box, kind in r.get("others", []):
                f.write(f"{r['name']} {' '.join(str(v) for v in _box_ints(box, size))} {kind}\n")


def _save(img: np.ndarray | Image.Image, path: str) -> None:
    im = img if isinstance(img, Image.Image) else Image.fromarray(img)
    im.save(path, quality=94)


def write_aligned(
    out: str, count: int, identities: int = 20, seed: int = 0, size: tuple[int, int] = ALIGNED_SIZE
) -> str:
    """Aligned face crops in CelebA layout (``img_align_celeba/``); returns ``out``."""
    _check_counts(count, identities)
    img_dir = os.path.join(out, "img_align_celeba")
    os.makedirs(img_dir, exist_ok=True)
    people = [make_identity(i, seed) for i in range(identities)]
    order = np.random.default_rng([seed, 3]).permutation(count) % identities
    rows = []
    for k in range(count):
        rng = np.random.default_rng([seed, 1, k])
        ident = people[int(order[k])]
        attrs = sample_attributes(ident, rng)
        img, _ = render_aligned(ident, attrs, size, rng)
        name = f"{k + 1:06d}.jpg"
        _save(img, os.path.join(img_dir, name))
        rows.append(
            {
                "name": name,
                "attrs": attrs,
                "identity": ident.index,
                "partition": _partition_of(ident.index, seed),
            }
        )
    _write_lists(out, rows, with_boxes=False, size=size)
    return out


def write_wild(
    out: str,
    count: int,
    identities: int = 20,
    seed: int = 0,
    size: tuple[int, int] = (256, 192),
    max_people: int = 3,
    distractor_rate: float = 0.3,
    min_face: float = 16.0,
    max_face: float | None = None,
) -> str:
    """In-the-wild scenes in CelebA layout (``img_celeba/`` plus box files); returns ``out``.

    Every image has 1..``max_people`` people from one split's identities (so splits stay
    identity-disjoint); the attribute/identity/box files describe the largest face.
    """
    _check_counts(count, identities)
    img_dir = os.path.join(out, "img_celeba")
    os.makedirs(img_dir, exist_ok=True)
    people = [make_identity(i, seed) for i in range(identities)]
    pools = {p: [i for i in people if _partition_of(i.index, seed) == p] for p in (0, 1, 2)}
    rows = []
    for k in range(count):
        rng = np.random.default_rng([seed, 2, k])
        partition = _pick_partition(rng, pools)
        pool = pools[partition]
        n = int(rng.integers(1, max_people + 1))
        chosen = [
            pool[int(i)] for i in rng.choice(len(pool), size=min(n, len(pool)), replace=False)
        ]
        nd = int(rng.random() < distractor_rate) + int(rng.random() < distractor_rate / 3)
        img, drawn, others = [], [], []
        for _ in range(5):  # retry in the rare case nobody fit
            img, drawn, others = render_scene(
                chosen, size, rng, distractors=nd, min_face=min_face, max_face=max_face
            )
            if drawn:
                break
        if not drawn:
            raise RuntimeError(f"could not place a face in a {size} image; use a larger size")
        name = f"{k + 1:06d}.jpg"
        _save(img, os.path.join(img_dir, name))
        rows.append(
            {
                "name": name,
                "attrs": drawn[0].attributes,
                "identity": drawn[0].identity,
                "partition": partition,
                "people": drawn,
                "others": others,
            }
        )
    _write_lists(out, rows, with_boxes=True, size=size)
    return out


def _check_counts(count: int, identities: int) -> None:
    if count < 0 or identities < 1:
        raise DataError(f"need count >= 0 and identities >= 1 (got {count} and {identities})")


def _pick_partition(rng, pools) -> int:
    p = int(rng.choice(3, p=[0.8, 0.1, 0.1]))
    return p if pools[p] else next(q for q in (0, 1, 2) if pools[q])


def write_backgrounds(
    out: str, count: int, seed: int = 0, size: tuple[int, int] = (256, 192), prefix: str = "bg"
) -> list[str]:
    """Cluttered images with no face of any kind; returns their paths."""
    os.makedirs(out, exist_ok=True)
    paths = []
    for k in range(count):
        path = os.path.join(out, f"{prefix}_{k + 1:06d}.jpg")
        _save(make_background(size, np.random.default_rng([seed, 4, k])), path)
        paths.append(path)
    return paths


def write_distractors(
    out: str, count: int, seed: int = 0, size: tuple[int, int] = (256, 192)
) -> list[str]:
    """Cluttered images each holding 1-3 non-human faces (cats, smileys, robots), no person."""
    os.makedirs(out, exist_ok=True)
    paths = []
    for k in range(count):
        rng = np.random.default_rng([seed, 5, k])
        img, _, _ = render_scene([], size, rng, distractors=int(rng.integers(1, 4)))
        path = os.path.join(out, f"distractor_{k + 1:06d}.jpg")
        _save(img, path)
        paths.append(path)
    return paths


def paste_faces(
    src_root: str,
    out: str,
    count: int,
    seed: int = 0,
    size: tuple[int, int] = (256, 192),
    max_people: int = 2,
    backgrounds: list[str] | None = None,
    min_face: float = 20.0,
    max_face: float | None = None,
    face_region: tuple[float, float, float, float] = ALIGNED_FACE_REGION,
) -> str:
    """Paste aligned crops from any CelebA-layout root onto backgrounds, in CelebA layout.

    Each crop is scaled, softened at its edge (an elliptical mask) and placed where it does not
    cover another face. The face box is ``face_region`` of the crop; the head-shoulder box is the
    crop. Labels, identity and split come from the source image, and faces in one image come
    from one split, so splits stay identity-disjoint.
    """
    from faceattr_ray.data.celeba import read_celeba
    from faceattr_ray.data.decode import load_image

    src = read_celeba(src_root)
    part = src.partition if src.partition is not None else np.zeros(len(src), dtype=np.int64)
    ident = src.identity if src.identity is not None else np.arange(len(src))
    by_split = {p: np.flatnonzero(part == p) for p in (0, 1, 2)}
    if not len(src):
        raise DataError(f"{src_root}: no images to paste")
    img_dir = os.path.join(out, "img_celeba")
    os.makedirs(img_dir, exist_ok=True)
    w, h = size
    max_face = max_face or 0.35 * min(w, h)
    fx0, fy0, fx1, fy1 = face_region
    rows = []
    for k in range(count):
        rng = np.random.default_rng([seed, 6, k])
        p = int(rng.choice(3, p=[0.8, 0.1, 0.1]))
        if not len(by_split[p]):
            p = next(q for q in (0, 1, 2) if len(by_split[q]))
        idx = rng.choice(
            by_split[p],
            size=min(int(rng.integers(1, max_people + 1)), len(by_split[p])),
            replace=False,
        )
        if backgrounds:
            canvas = _background_from(backgrounds[int(rng.integers(len(backgrounds)))], size, rng)
        else:
            canvas = make_background(size, rng)
        placed: list[Person] = []
        taken: list[tuple] = []
        for i in idx:
            crop = Image.fromarray(load_image(src.paths[int(i)]))
            face_w = _log_uniform(rng, min(min_face, max_face), max_face)
            scale = face_w / ((fx1 - fx0) * crop.width)
            cw, ch = max(2, round(crop.width * scale)), max(2, round(crop.height * scale))
            spot = _free_spot(rng, size, cw, ch, lambda b: b, taken)
            if spot is None:
                continue
            x, y = int(spot[0]), int(spot[1])
            crop = crop.resize((cw, ch), Image.BILINEAR)
            canvas.paste(crop, (x, y), _soft_ellipse((cw, ch)))
            face = (x + fx0 * cw, y + fy0 * ch, x + fx1 * cw, y + fy1 * ch)
            attrs = {n: bool(v > 0.5) for n, v in zip(src.names, src.labels[int(i)], strict=True)}
            placed.append(Person(int(ident[int(i)]), attrs, face, (x, y, x + cw, y + ch)))
            taken.append((x, y, x + cw, y + ch))
        if not placed:
            continue
        placed.sort(key=lambda q: -(q.face_box[2] - q.face_box[0]))
        name = f"{len(rows) + 1:06d}.jpg"
        _save(canvas, os.path.join(img_dir, name))
        rows.append(
            {
                "name": name,
                "attrs": _full_attrs(placed[0].attributes),
                "identity": placed[0].identity,
                "partition": p,
                "people": placed,
                "others": [],
            }
        )
    _write_lists(out, rows, with_boxes=True, size=size)
    return out


def _full_attrs(attrs: dict[str, bool]) -> dict[str, bool]:
    """Source labels on CelebA's 40 names (names the source lacks are written absent)."""
    return {n: bool(attrs.get(n, False)) for n in CELEBA_40}


def _soft_ellipse(size: tuple[int, int]) -> Image.Image:
    w, h = size
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).ellipse([0.04 * w, 0.02 * h, 0.96 * w, 1.1 * h], fill=255)
    return mask.filter(ImageFilter.GaussianBlur(max(1.0, 0.04 * w)))


def _background_from(path: str, size: tuple[int, int], rng) -> Image.Image:
    from faceattr_ray.data.decode import load_image

    img = Image.fromarray(load_image(path))
    w, h = size
    s = max(w / img.width, h / img.height) * rng.uniform(1.0, 1.3)
    img = img.resize((max(w, round(img.width * s)), max(h, round(img.height * s))), Image.BILINEAR)
    x = int(rng.integers(0, img.width - w + 1))
    y = int(rng.integers(0, img.height - h + 1))
    return img.crop((x, y, x + w, y + h))


def read_all_faces(root: str) -> dict[str, list[dict]]:
    """``list_faces_all.txt`` and ``list_distractors.txt`` of a generated root: for each image
    name, its people ({"face": x1,y1,x2,y2, "headshoulder": ..., "identity"}) and distractors
    ({"box", "kind"}) under the keys "faces" and "distractors"."""
    out: dict[str, dict] = {}
    path = os.path.join(root, "list_faces_all.txt")
    if not os.path.exists(path):
        raise DataError(f"missing file: {path}")
    with open(path) as f:
        for n, ln in enumerate(f.read().splitlines()[1:], start=2):
            parts = ln.split()
            if not parts:
                continue
            if len(parts) != 10:
                raise DataError(f"{path}:{n}: expected 10 fields, got {len(parts)}")
            v = [int(x) for x in parts[1:]]
            entry = out.setdefault(parts[0], {"faces": [], "distractors": []})
            entry["faces"].append(
                {
                    "face": (v[0], v[1], v[0] + v[2], v[1] + v[3]),
                    "headshoulder": (v[4], v[5], v[4] + v[6], v[5] + v[7]),
                    "identity": v[8],
                }
            )
    dpath = os.path.join(root, "list_distractors.txt")
    if os.path.exists(dpath):
        with open(dpath) as f:
            for ln in f.read().splitlines()[1:]:
                parts = ln.split()
                if len(parts) == 6:
                    v = [int(x) for x in parts[1:5]]
                    entry = out.setdefault(parts[0], {"faces": [], "distractors": []})
                    entry["distractors"].append(
                        {"box": (v[0], v[1], v[0] + v[2], v[1] + v[3]), "kind": parts[5]}
                    )
    return out
