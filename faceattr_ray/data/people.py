"""Generated people, drawn with PIL and deterministic by seed: identities, their attributes, one
person drawn onto a canvas.

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from faceattr_ray.attributes import CELEBA_40
from faceattr_ray.data import parts as P

UNRENDERED = ("Attractive", "High_Cheekbones")
RENDERED = tuple(n for n in CELEBA_40 if n not in UNRENDERED)
_SS = 2  # supersampling factor for anti-aliased drawing
BUST = 1.8  # the drawn bust ends this many face heights below the face centre

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


class _Draw:
    """Draws each shape on the person's colour layer and, when there is a label layer, the same
    shape filled with the current face part (``part``, one of `parts.PARTS`; None: not labelled,
    as glasses and earrings, which leave the part under them) on that layer. One drawing code
    for the image and its part masks, so the two cannot drift apart."""

    def __init__(self, colour: ImageDraw.ImageDraw, labels: ImageDraw.ImageDraw | None) -> None:
        self.colour, self.labels, self.part = colour, labels, P.BACKGROUND

    def __getattr__(self, name: str):  # ellipse, polygon, line, arc, chord, rectangle
        paint = getattr(self.colour, name)
        if self.labels is None:
            return paint
        label = getattr(self.labels, name)

        def both(*args, **kw):
            paint(*args, **kw)
            if self.part is not None:
                label(*args, **{k: (self.part if k in ("fill", "outline") else v)
                                for k, v in kw.items()})
        return both


class _Pen(NamedTuple):
    """What every part of a drawn person needs: where, how big, which person, which attributes."""

    draw: _Draw
    cx: float  # face centre
    cy: float
    f: float  # face width
    h: float  # face height
    sh: float  # half the shoulders' width
    ident: Identity
    a: dict[str, bool]  # attributes of this image
    skin: tuple
    hair: tuple
    dark_skin: tuple
    line: int  # line width of fine details
    es: float  # eye centre offset from the midline
    ey: float  # eye line


# The face part each drawing step paints by default; steps that paint several set their own.
_STEPS_PART = {"_torso": P.BACKGROUND, "_wrinkles": P.SKIN, "_eyebrows": P.BROWS,
               "_nose": P.NOSE, "_cheeks": P.SKIN}


def _draw_person(
    draw: _Draw,
    cx: float,
    cy: float,
    fw: float,
    ident: Identity,
    a: dict[str, bool],
    rng: np.random.Generator,
) -> tuple:
    """Draw a bust with its face centred at (cx, cy), face width ``fw``, back to front.

    Returns the face ellipse's half-axes and the head-shoulder box (x1, y1, x2, y2).
    """
    f = fw * ident.face_width_gain
    h = fw * ident.face_aspect
    p = _Pen(draw, cx, cy, f, h, sh=(1.45 if ident.male else 1.2) * f, ident=ident, a=a,
             skin=ident.skin, hair=HAIR[ident.hair], dark_skin=_mix(ident.skin, (60, 30, 20), 0.35),
             line=max(1, int(round(0.03 * f))), es=ident.eye_spacing * f, ey=cy - 0.08 * h)
    for step in (_torso, _head, _hair_cap, _wrinkles, _eyebrows, _eyes, _nose, _cheeks, _mouth):
        draw.part = _STEPS_PART.get(step.__name__, draw.part)
        step(p)
    draw.part = None  # glasses and earrings: the part under them keeps its label
    _accessories(p, rng)
    draw.part = P.BACKGROUND  # a hat hides the hair (CelebAMask-HQ's hat is not a face part)
    top = _hat_and_top(p, rng)
    return (f / 2, h / 2), (cx - p.sh, top, cx + p.sh, cy + BUST * h)


def _torso(p: _Pen) -> None:
    """Torso, shoulders and neck; a necktie, a necklace."""
    draw, cx, cy, f, h, sh, ident, a, skin, hair, dark_skin, line, es, ey = p
    # torso, shoulders and neck
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


def _head(p: _Pen) -> None:
    """Hair behind the head, ears, the face; double chin, stubble, sideburns."""
    draw, cx, cy, f, h, sh, ident, a, skin, hair, dark_skin, line, es, ey = p
    # hair behind the head: long for women, short for men
    long_hair = not ident.male and not ident.bald
    draw.part = P.HAIR
    if long_hair:
        _hair_shape(draw, cx, cy - 0.1 * h, 0.66 * f, 0.62 * h, 1.0 * h, hair, a["Wavy_Hair"])
    if not ident.bald:
        _hair_shape(draw, cx, cy - 0.28 * h, 0.58 * f, 0.38 * h, 0.38 * h, hair, a["Wavy_Hair"])
    # ears (skin: our seven parts have no ears)
    draw.part = P.SKIN
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
        draw.part = P.HAIR
        for s in (-1, 1):
            x0, x1 = sorted((cx + s * 0.5 * f, cx + s * 0.4 * f))
            draw.rectangle([x0, cy - 0.28 * h, x1, cy + 0.12 * h], fill=hair)


def _hair_cap(p: _Pen) -> None:
    """Hair on the head down to the hairline, bangs; bald sides."""
    draw, cx, cy, f, h, sh, ident, a, skin, hair, dark_skin, line, es, ey = p
    # hair on the head (a cap of hair down to the hairline), bangs, bald sides
    draw.part = P.HAIR
    if not ident.bald:
        hairline = cy - (0.42 if a["Receding_Hairline"] else 0.32) * h
        top = cy - 0.58 * h
        draw.chord(
            [cx - 0.52 * f, top, cx + 0.52 * f, top + 2 * (hairline - top)], 180, 360, fill=hair
        )
        if a["Receding_Hairline"]:  # bare temples: the cap is cut back at both sides
            draw.part = P.SKIN
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
            draw.part = P.HAIR
            edge = cy - 0.21 * h
            draw.chord(
                [cx - 0.5 * f, top, cx + 0.5 * f, top + 2 * (edge - top)], 180, 360, fill=hair
            )
            draw.rectangle([cx - 0.4 * f, hairline, cx + 0.4 * f, edge], fill=hair)
    else:
        draw.part = P.SKIN  # bald sides: a shadow on the skin
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


def _wrinkles(p: _Pen) -> None:
    """Forehead and eye wrinkles: the face is not Young."""
    draw, cx, cy, f, h, sh, ident, a, skin, hair, dark_skin, line, es, ey = p
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


def _eyebrows(p: _Pen) -> None:
    """Eyebrows: bushy or thin, arched or straight."""
    draw, cx, cy, f, h, sh, ident, a, skin, hair, dark_skin, line, es, ey = p
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


def _eyes(p: _Pen) -> None:
    """Eyes, make-up and bags first so the eye sits on top."""
    draw, cx, cy, f, h, sh, ident, a, skin, hair, dark_skin, line, es, ey = p
    # eyes (make-up and bags first, so the eye sits on top)
    eh = (0.022 if a["Narrow_Eyes"] else 0.045) * h
    for s in (-1, 1):
        ex = cx + s * es
        draw.part = P.SKIN  # make-up and bags lie on the skin around the eye
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
        draw.part = P.EYES
        draw.ellipse([ex - 0.09 * f, ey - eh, ex + 0.09 * f, ey + eh], fill=(250, 250, 250))
        r = min(eh, 0.045 * f)
        draw.ellipse([ex - r, ey - r, ex + r, ey + r], fill=ident.eye_colour)
        draw.ellipse([ex - r / 2.5, ey - r / 2.5, ex + r / 2.5, ey + r / 2.5], fill=(10, 10, 10))


def _nose(p: _Pen) -> None:
    """A big or small, pointy or round nose."""
    draw, cx, cy, f, h, sh, ident, a, skin, hair, dark_skin, line, es, ey = p
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


def _cheeks(p: _Pen) -> None:
    """Rosy cheeks."""
    draw, cx, cy, f, h, sh, ident, a, skin, hair, dark_skin, line, es, ey = p
    if a["Rosy_Cheeks"]:
        for s in (-1, 1):
            x = cx + s * 0.28 * f
            draw.ellipse(
                [x - 0.09 * f, cy + 0.02 * h, x + 0.09 * f, cy + 0.14 * h],
                fill=_mix(skin, (235, 80, 95), 0.45),
            )


def _mouth(p: _Pen) -> None:
    """Facial hair, then the mouth (lips, open, smiling)."""
    draw, cx, cy, f, h, sh, ident, a, skin, hair, dark_skin, line, es, ey = p
    # facial hair, then the mouth
    beard = _mix(hair, (30, 25, 20), 0.4)
    my = cy + 0.28 * h
    mw = 0.34 * f
    draw.part = P.SKIN  # facial hair lies on the skin (as CelebAMask-HQ labels beards)
    if a["Goatee"]:
        draw.ellipse([cx - 0.12 * f, my + 0.02 * h, cx + 0.12 * f, cy + 0.5 * h], fill=beard)
    lips = (200, 25, 55) if a["Wearing_Lipstick"] else _mix(skin, (170, 70, 70), 0.45)
    lt = (0.05 if a["Big_Lips"] else 0.028) * h
    draw.part = P.MOUTH
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
        draw.part = P.SKIN
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


def _accessories(p: _Pen, rng: np.random.Generator) -> None:
    """Earrings and eyeglasses (random frame colour)."""
    draw, cx, cy, f, h, sh, ident, a, skin, hair, dark_skin, line, es, ey = p
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


def _hat_and_top(p: _Pen, rng: np.random.Generator) -> float:
    """A hat (random colour); returns the top of the head-shoulder box."""
    draw, cx, cy, f, h, sh, ident, a, skin, hair, dark_skin, line, es, ey = p
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
    return top



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
    labels: Image.Image | None = None,
) -> Person:
    """Draw a person onto ``canvas`` (RGB, in place): face centre, face width in canvas pixels,
    rotation in degrees (counter-clockwise), light = (gain, left-right gradient).

    ``labels``: an "L" image of the canvas's size that receives the person's face parts
    (`parts.PARTS` indices) where the person covers the canvas, also in place. Drawing the
    labels uses no randomness, so the image is the same with or without them."""
    fw = face_width * _SS
    h = fw * ident.face_aspect
    # The layer ends where the bust does (the head-shoulder box's bottom); even sizes reduce exactly.
    lcx, lcy = int(1.7 * fw) + 2, 1.05 * h + 2
    lw, lh = 2 * lcx, 2 * (int((lcy + BUST * h) / 2) + 1)
    layer = Image.new("RGBA", (lw, lh), (0, 0, 0, 0))
    label_layer = None if labels is None else Image.new("L", (lw, lh), P.BACKGROUND)
    draw = _Draw(ImageDraw.Draw(layer),
                 None if label_layer is None else ImageDraw.Draw(label_layer))
    (ax, ay), hs = _draw_person(draw, lcx, lcy, fw, ident, attrs, rng)
    # Anti-alias by 2x box reduction, then rotate and light the small layer (4x fewer pixels).
    layer = layer.reduce(_SS)
    lcx, lcy = lcx / _SS, lcy / _SS
    layer = layer.rotate(angle, resample=Image.BILINEAR, center=(lcx, lcy))
    if label_layer is not None:  # labels are not averaged: nearest neighbour throughout
        label_layer = label_layer.resize(layer.size, Image.NEAREST)
        label_layer = label_layer.rotate(angle, resample=Image.NEAREST, center=(lcx, lcy))
    gain, slope = light
    arr = np.asarray(layer).astype(np.float32)
    ramp = gain * (1.0 + slope * np.linspace(-1, 1, layer.width, dtype=np.float32))[None, :, None]
    arr[:, :, :3] *= ramp
    layer = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGBA")
    ox = int(round(center[0] - lcx))
    oy = int(round(center[1] - lcy))
    if label_layer is not None:  # where the person is opaque before any blur
        covers = layer.getchannel("A").point(lambda v: 255 if v >= 128 else 0)
        labels.paste(label_layer, (ox, oy), covers)
    if attrs.get("Blurry"):
        layer = layer.filter(ImageFilter.GaussianBlur(max(1.0, face_width / 25)))
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
