"""Labelled faces whose ground truth we know: real photos moved by landmark-driven warps.

No affect dataset can be downloaded here, and the heads need labels, so this module makes them.
It starts from real, near-neutral face photographs that ship inside installed packages, finds their
478 MediaPipe landmarks once, and moves groups of landmarks by known amounts — AU-like controls
such as lip-corner pull (AU12) or brow lower (AU4) — with a smooth displacement field. The labels
follow from the intensities alone:

* AU occurrence: intensity ≥ ``AU_THRESHOLD``;
* expression: the most specific FACS prototype (EMFACS-style AU sets in ``PROTOTYPES``) whose AUs
  are all active, ``neutral`` when none is active;
* valence/arousal: the expression's direction on Russell's circumplex (``CIRCUMPLEX_DEG``) times the
  mean intensity of its AUs (neutral sits at the origin).

What it is not: real expressions. A warp moves skin; it cannot wrinkle a nose (AU9), show teeth
or raise cheeks (AU6). "Subjects" are the packaged photos plus identity-level morphs of them
(landmark geometry, skin tone, lighting, scale): morphs of one photograph are not independent
people, which flatters subject-exclusive evaluation; upsampled ``lfw_subset`` faces (25 × 25 px
originals) are distinct photos but blurry. ``astronaut`` smiles in its photo, so it is not a base:
labels are relative to the base face, which must be near-neutral (checked by its blendshapes).

Measured responses of the face model on the Hopper subjects (tests/test_face.py asserts each,
with its tolerance): lip-corner pull raises ``mouthSmile*``; inner / outer brow raise
``browInnerUp`` / ``browOuterUp*``; brow lower ``browDown*``; jaw drop ``jawOpen``. Others land on
neighbouring blendshapes: MediaPipe reads an upper-lid raise (AU5) as gaze up (``eyeLookUp*``), an
upper-lip raise (AU10) as ``mouthShrugLower``, a lip-corner depress (AU15) as ``mouthPucker`` /
``mouthRollLower``, and lid tightening (AU7) only in ``eyeSquintRight`` (the left eye's score sits
near 0.6 behind Hopper's glasses). Blurry ``lfw`` subjects respond far less cleanly.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib import cbook
from PIL import Image
from scipy import ndimage
from skimage import data

from stages.training.faithfulness_structures import GENERATOR_PROTOTYPES

AU_THRESHOLD = 0.25
CANVAS = 256  # generated images are CANVAS × CANVAS RGB

# -- landmark groups (MediaPipe face mesh indices) --------------------------------------------
BROW_INNER = (107, 66, 55, 65, 336, 296, 285, 295)
BROW_OUTER = (70, 63, 46, 53, 300, 293, 276, 283)
BROW_MID = (105, 52, 334, 282)
UPPER_LIDS = (159, 158, 160, 161, 157, 386, 385, 387, 388, 384)
LOWER_LIDS = (145, 144, 153, 163, 154, 374, 373, 380, 390, 381)
MOUTH_CORNERS = (61, 291)
UPPER_LIP = (0, 37, 39, 40, 267, 269, 270, 13, 82, 312)
LOWER_JAW = (17, 84, 181, 91, 314, 405, 321, 14, 87, 178, 317, 402, 152, 148, 176, 377, 400, 175, 199)
# Points that stay put: the face outline above the jaw, the nose, the eye corners.
ANCHORS = (
    10,
    338,
    297,
    332,
    284,
    251,
    389,
    356,
    454,
    323,
    361,
    132,
    93,
    234,
    127,
    162,
    21,
    54,
    103,
    67,
    109,
    1,
    4,
    168,
    6,
    197,
    195,
    33,
    133,
    362,
    263,
)


@dataclass(frozen=True)
class Control:
    """An AU-like control: ``points`` move by (outward, down) × inter-ocular distance × intensity."""

    au: int
    points: tuple[int, ...]
    move: tuple[float, float]
    sigma: float = 0.12  # spread of the displacement, in inter-ocular distances


CONTROLS: dict[str, Control] = {
    "brow_inner_raise": Control(1, BROW_INNER + BROW_MID, (0.0, -0.14)),
    "brow_outer_raise": Control(2, BROW_OUTER + BROW_MID, (0.0, -0.14)),
    "brow_lower": Control(4, BROW_INNER + BROW_OUTER + BROW_MID, (-0.05, 0.12)),
    "upper_lid_raise": Control(5, UPPER_LIDS, (0.0, -0.12), sigma=0.08),
    "lid_tighten": Control(7, LOWER_LIDS, (0.0, -0.08), sigma=0.08),
    "upper_lip_raise": Control(10, UPPER_LIP, (0.0, -0.08), sigma=0.1),
    "lip_corner_pull": Control(12, MOUTH_CORNERS, (0.12, -0.10)),
    "lip_corner_depress": Control(15, MOUTH_CORNERS, (0.0, 0.15)),
    "jaw_drop": Control(26, LOWER_JAW, (0.0, 0.24)),
}
CONTROL_BY_AU = {c.au: name for name, c in CONTROLS.items()}
AUS = tuple(sorted(CONTROL_BY_AU))
# Eye closure (AU43) is painted, not warped: a lid cannot be slid over the eyeball by moving skin
# (a warp that lowers the upper lid onto a pinned lower one folds the image and stretches the iris).
# The upper lid's contour is lowered by the intensity's share of the eye opening and the covered
# part filled with the lid's own skin tone, its margin darkened as a lash line. Only the pain
# catalogue renders it: the expression catalogue's AU set, AUS, stays as it was.
EYE_CLOSURE = 43
EYE_CONTOURS = (  # (upper lid, lower lid) of each eye, corner to corner
    ((33, 246, 161, 160, 159, 158, 157, 173, 133), (33, 7, 163, 144, 145, 153, 154, 155, 133)),
    ((263, 466, 388, 387, 386, 385, 384, 398, 362), (263, 249, 390, 373, 374, 380, 381, 382, 362)),
)
PAIN_AUS = tuple(sorted((*AUS, EYE_CLOSURE)))  # the pain catalogue's coded AUs

# EMFACS-style prototypes restricted to the AUs a warp can show.
PROTOTYPES = GENERATOR_PROTOTYPES  # the faithfulness audit's ``generator`` structure reads the same rule
# Direction of each expression on Russell's circumplex (degrees; valence = cos, arousal = sin).
CIRCUMPLEX_DEG = {
    "happiness": 25.0,
    "surprise": 80.0,
    "fear": 115.0,
    "anger": 130.0,
    "disgust": 160.0,
    "sadness": 215.0,
}


@dataclass(frozen=True)
class Labels:
    expression: str
    aus: dict[int, int]  # AU → 0/1
    valence: float
    arousal: float


def labels_from_intensities(intensity: dict[int, float]) -> Labels:
    """The ground truth implied by AU intensities (each in [0, 1])."""
    active = {au for au, v in intensity.items() if v >= AU_THRESHOLD}
    aus = {au: int(au in active) for au in AUS}
    matches = [name for name, aus_needed in PROTOTYPES.items() if aus_needed <= active]
    if not matches:
        return Labels("neutral", aus, 0.0, 0.0)
    # the most specific prototype wins (fear contains surprise's AUs plus AU4)
    name = max(matches, key=lambda m: (len(PROTOTYPES[m]), m))
    radius = float(np.mean([intensity[au] for au in PROTOTYPES[name]]))
    angle = np.deg2rad(CIRCUMPLEX_DEG[name])
    return Labels(name, aus, round(radius * float(np.cos(angle)), 4), round(radius * float(np.sin(angle)), 4))


# -- pain ------------------------------------------------------------------------------------
# PSPI = AU4 + max(AU6, AU7) + max(AU9, AU10) + AU43 (Prkachin & Solomon 2008; stages/extraction/sources/data/
# pain_pspi.csv). A warp shows AU4, AU7, AU10 and AU43; it cannot raise cheeks (AU6) or wrinkle a
# nose (AU9), so here max(AU6, AU7) is AU7 and max(AU9, AU10) is AU10. Intensities in [0, 1] are
# the FACS 0–5 scale ÷ 5; AU43 counts 1 from the occurrence threshold.
PAIN_SHOWN = (4, 7, 10, 43)
PAIN_THRESHOLD = 4.0  # PSPI at or above it: the face is labelled pain (PSPI runs 0–16)
NO_PAIN = ("neutral", "happiness", "surprise")  # what a no-pain face shows: no prototype needs a pain AU


def pain_score(intensity: dict[int, float]) -> float:
    """The PSPI of a face rendered with these intensities."""
    from stages.training.faithfulness_structures import pspi

    shown = {au: 5.0 * intensity.get(au, 0.0) for au in (4, 7, 10)}
    return pspi({**shown, 43: float(intensity.get(43, 0.0) >= AU_THRESHOLD)})


def pain_labels(intensity: dict[int, float]) -> tuple[Labels, float]:
    """(labels, PSPI): ``pain`` when PSPI ≥ PAIN_THRESHOLD (valence, arousal unknown: NaN), else the
    expression rule over the other AUs; AU occurrences over PAIN_AUS."""
    score = pain_score(intensity)
    aus = {au: int(intensity.get(au, 0.0) >= AU_THRESHOLD) for au in PAIN_AUS}
    if score >= PAIN_THRESHOLD:
        return Labels("pain", aus, float("nan"), float("nan")), score
    expression = labels_from_intensities({au: intensity.get(au, 0.0) for au in AUS})
    return Labels(expression.expression, aus, expression.valence, expression.arousal), score


def sample_pain_intensities(pain: bool, rng: np.random.Generator) -> dict[int, float]:
    """Intensities of a pain face (two to four of the shown PSPI AUs in [0.4, 1], PSPI ≥ the
    threshold) or of a no-pain face (neutral, happiness or surprise, and in half of them one PSPI AU
    partly on — never enough to change its expression — so that no single PSPI AU decides the label)."""
    for _ in range(100):
        if pain:
            on = rng.choice(PAIN_SHOWN, size=int(rng.integers(2, 5)), replace=False)
            intensity = {au: 0.0 for au in PAIN_AUS}
            intensity.update({int(au): float(rng.uniform(0.4, 1.0)) for au in on})
        else:
            expression = str(rng.choice(NO_PAIN))
            intensity = {**sample_intensities(expression, rng), 43: 0.0}
            if rng.random() < 0.5:
                au = int(rng.choice(PAIN_SHOWN))
                intensity[au] = float(rng.uniform(0.3, 0.6)) if au != 43 else 1.0
        if pain_labels(intensity)[0].expression == ("pain" if pain else expression):
            return intensity
    raise AssertionError(f"cannot sample a {'pain' if pain else 'no-pain'} face")


# -- warping ---------------------------------------------------------------------------------
def displacement_field(
    shape: tuple[int, int], src: np.ndarray, moves: np.ndarray, sigma: float, step: int = 4
) -> np.ndarray:
    """Dense (H, W, 2) backward displacement from point moves: normalised Gaussian weights.

    Weights are divided by max(Σw, 1), so far from every point the displacement fades to zero and
    fixed anchors (zero moves) pin the skin between controls. Evaluated on a grid of ``step`` px
    and interpolated: the field is smooth at that scale by construction.
    """
    h, w = shape
    ys, xs = np.arange(0, h + step, step, dtype=np.float32), np.arange(0, w + step, step, dtype=np.float32)
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    d2 = (gx[..., None] - src[:, 0]) ** 2 + (gy[..., None] - src[:, 1]) ** 2
    weights = np.exp(-d2 / (2 * sigma**2))
    coarse = (weights @ moves) / np.maximum(weights.sum(-1), 1.0)[..., None]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / step
    return np.stack([ndimage.map_coordinates(coarse[..., c], [yy, xx], order=1) for c in range(2)], -1)


def warp_image(image: np.ndarray, src: np.ndarray, dst: np.ndarray, sigma: float) -> np.ndarray:
    """Move pixels so that points ``src`` land on ``dst`` (x, y in pixels), smoothly elsewhere."""
    h, w = image.shape[:2]
    # Backward mapping: an output pixel q samples the input at q − d(q), with d spread from dst.
    field_ = displacement_field((h, w), dst.astype(np.float32), (dst - src).astype(np.float32), sigma)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    coords = [yy - field_[..., 1], xx - field_[..., 0]]
    channels = [
        ndimage.map_coordinates(image[..., c].astype(np.float32), coords, order=1, mode="nearest")
        for c in range(image.shape[2])
    ]
    return np.clip(np.stack(channels, -1) + 0.5, 0, 255).astype(np.uint8)


def close_eyes(image: np.ndarray, landmarks: np.ndarray, amount: float, iod: float) -> np.ndarray:
    """AU43: each upper lid lowered over ``amount`` (0–1) of its eye's opening, the covered part
    filled with the skin tone just above the lid and the new margin darkened (a lash line)."""
    from skimage.draw import polygon

    h, w = image.shape[:2]
    mask = np.zeros((h, w), np.float32)
    margin = np.zeros((h, w), np.float32)
    colour = np.zeros((h, w, 3), np.float32)
    for upper, lower in EYE_CONTOURS:
        up, lo = landmarks[list(upper)], landmarks[list(lower)]
        lid = up + min(amount, 1.0) * (lo - up)
        rr, cc = polygon(*np.concatenate([up, lid[::-1]])[:, ::-1].T, shape=(h, w))
        above = np.clip(np.round(up - [0, 0.04 * iod]).astype(int), 0, [w - 1, h - 1])
        mask[rr, cc] = 1.0
        colour[rr, cc] = np.median(image[above[:, 1], above[:, 0]].astype(np.float32), 0)
        line = np.linspace(0, 1, 40)[:, None]
        for a, b in zip(lid[:-1], lid[1:]):
            x, y = np.clip(np.round(a + line * (b - a)).astype(int), 0, [w - 1, h - 1]).T
            margin[y, x] = 1.0
    mask = ndimage.gaussian_filter(mask, 0.8)[..., None]
    margin = ndimage.gaussian_filter(margin, 0.6)[..., None]
    out = image.astype(np.float32) * (1 - mask) + colour * mask
    out *= 1 - 0.55 * np.clip(margin * 2, 0, 1)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


# -- subjects --------------------------------------------------------------------------------
@dataclass
class Subject:
    """A base face: the image (CANVAS × CANVAS) and its landmarks in pixels."""

    name: str
    origin: str
    image: np.ndarray
    landmarks: np.ndarray  # (478, 2) x, y pixels
    neutral_scores: dict[str, float] = field(default_factory=dict)

    @property
    def eye_axis(self) -> tuple[np.ndarray, np.ndarray, float]:
        """Unit vectors (outward-right, down) of the face and the inter-ocular distance."""
        a, b = self.landmarks[33], self.landmarks[263]
        iod = float(np.linalg.norm(b - a))
        u = (b - a) / iod
        return u, np.array([-u[1], u[0]]), iod

    def point_moves(self, intensity: dict[int, float]) -> tuple[np.ndarray, np.ndarray, float]:
        """(src, dst, sigma) for the controls at the given intensities, anchors included."""
        u, v, iod = self.eye_axis
        centre_x = self.landmarks[168] @ u
        moves: dict[int, np.ndarray] = {}
        sigmas = []
        for au, value in intensity.items():
            if value <= 0:
                continue
            if au == EYE_CLOSURE:  # painted after the warp (close_eyes)
                continue
            control = CONTROLS[CONTROL_BY_AU[au]]
            sigmas.append(control.sigma)
            for p in control.points:
                side = np.sign(self.landmarks[p] @ u - centre_x) or 1.0
                delta = (side * control.move[0] * u + control.move[1] * v) * iod * value
                moves[p] = moves.get(p, 0) + delta
        moved = sorted(moves)
        anchors = [a for a in ANCHORS if a not in moves]
        src = np.concatenate([self.landmarks[moved].reshape(-1, 2), self.landmarks[anchors]])
        dst = np.concatenate(
            [(self.landmarks[moved] + np.array([moves[p] for p in moved])).reshape(-1, 2), self.landmarks[anchors]]
        )
        return src, dst, (min(sigmas) if sigmas else 0.12) * iod

    def render(self, intensity: dict[int, float]) -> np.ndarray:
        warped = {au: v for au, v in intensity.items() if au != EYE_CLOSURE and v > 0}
        image = self.image.copy()
        if warped:
            src, dst, sigma = self.point_moves(warped)
            image = warp_image(self.image, src, dst, sigma)
        if intensity.get(EYE_CLOSURE, 0.0) > 0:
            landmarks = self.landmarks.copy()
            if warped:  # the lids where the warp put them (lid tightening moves the lower ones)
                src, dst, _ = self.point_moves(warped)
                for a, b in zip(src, dst):
                    landmarks[np.all(self.landmarks == a, axis=1)] = b
            image = close_eyes(image, landmarks, intensity[EYE_CLOSURE], self.eye_axis[2])
        return image


def _fit_canvas(image: np.ndarray, scale: float = 1.0, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Square-crop around the centre, resize to CANVAS·scale and paste centred (plus offset)."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    img = Image.fromarray(image[top : top + side, left : left + side]).convert("RGB")
    size = max(16, round(CANVAS * scale))
    img = img.resize((size, size), Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (CANVAS, CANVAS), (118, 118, 118))
    canvas.paste(img, ((CANVAS - size) // 2 + offset[0], (CANVAS - size) // 2 + offset[1]))
    return np.asarray(canvas)


def _morph(base: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An identity-level variant: landmark geometry, skin tone, lighting, scale."""
    u_eye = landmarks[263] - landmarks[33]
    iod = float(np.linalg.norm(u_eye))
    centre = landmarks[168]
    # geometry: widen/narrow the face, move the eyes apart, lengthen the nose, widen the mouth
    groups = {
        "width": ((234, 454, 93, 323, 132, 361, 58, 288), rng.uniform(-0.10, 0.10)),
        "eyes": ((33, 133, 159, 145, 263, 362, 386, 374), rng.uniform(-0.06, 0.06)),
        "mouth": ((61, 291, 0, 17), rng.uniform(-0.08, 0.08)),
    }
    src, dst = [], []
    for points, amount in groups.values():
        for p in points:
            src.append(landmarks[p])
            dst.append(landmarks[p] + (landmarks[p] - centre) * np.array([amount, 0.0]))
    nose = rng.uniform(-0.06, 0.06) * iod
    for p in (1, 4, 2, 94):
        src.append(landmarks[p])
        dst.append(landmarks[p] + np.array([0.0, nose]))
    image = warp_image(base, np.array(src), np.array(dst), 0.25 * iod).astype(np.float32)
    # skin tone and lighting: per-channel gain and a left-right illumination gradient
    gain = np.array([1.0, 1.0, 1.0]) + rng.uniform(-0.15, 0.15) * np.array([1.0, 0.8, 0.6])
    ramp = 1.0 + rng.uniform(-0.25, 0.25) * np.linspace(-1, 1, image.shape[1])[None, :, None]
    image = np.clip(image * gain * ramp, 0, 255).astype(np.uint8)
    return _fit_canvas(image, scale=rng.uniform(0.85, 1.05), offset=tuple(rng.integers(-10, 11, 2)))


def _hopper() -> np.ndarray:
    return np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB"))


def _lfw_face(i: int) -> np.ndarray:
    patch = np.round(data.lfw_subset()[i] * 255).astype(np.uint8)
    return np.repeat(patch[..., None], 3, axis=2)


NEUTRAL_LIMITS = {
    "mouthSmileLeft": 0.4,
    "mouthSmileRight": 0.4,
    "jawOpen": 0.3,
    "browDownLeft": 0.4,
    "browDownRight": 0.4,
    "browInnerUp": 0.4,
}


# The face model's answers on the base photos (landmarks and blendshape scores, or no face) for
# seed 0, recorded once with the pinned model and shipped as data: the model's float results differ
# in their last bits between CPUs, and a catalogue warped from live answers differed between
# machines (issue 34: another machine's demo printed AURA AU 0.583 against 0.652 here). With the
# record, seed 0's catalogues are the same bytes on every machine; other seeds ask the model.
# Rewritten by `record_base_faces` (only when the model or the candidates change).
BASE_FACES = Path(__file__).parent / "data" / "base_faces.npz"
Answer = tuple[np.ndarray, dict[str, float]] | None


def recorded_faces(path: Path = BASE_FACES) -> dict[str, Answer]:
    """The recorded answers by candidate name (``hopper-photo``, ``hopper``, ``hopper-m<k>``, ``lfw<i>``)."""
    with np.load(path) as f:
        names, found, points, scores, labels = (f[k] for k in ("names", "found", "points", "scores", "labels"))
    return {
        str(name): (points[i], dict(zip(labels.tolist(), scores[i].tolist(), strict=True))) if found[i] else None
        for i, name in enumerate(names)
    }


def record_base_faces(detect, path: Path = BASE_FACES) -> Path:
    """Ask ``detect`` (the live model) everything :func:`build_subjects` asks for seed 0 at its
    default sizes and write the answers to ``path``."""
    answers: dict[str, Answer] = {}
    build_subjects(detect, seed=0, answers=answers)
    labels = next(iter(a[1] for a in answers.values() if a is not None))
    np.savez_compressed(
        path,
        names=np.array(list(answers)),
        found=np.array([a is not None for a in answers.values()]),
        points=np.stack([np.zeros((478, 2)) if a is None else a[0] for a in answers.values()]),
        scores=np.array([[0.0] * len(labels) if a is None else list(a[1].values()) for a in answers.values()]),
        labels=np.array(list(labels)),
    )
    return path


def build_subjects(
    detect, n_morphs: int = 7, n_lfw: int = 12, seed: int = 0, answers: dict[str, Answer] | None = None
) -> tuple[list[Subject], dict]:
    """Base faces accepted by the face model, and a report of what was tried and kept.

    ``detect(image) -> (landmarks_px (478, 2), blendshape scores) | None`` is the face model.
    A candidate is kept when a face is found and its blendshapes are near-neutral. ``answers``: the
    model's answers by candidate name, asked of ``detect`` where missing and added to the dict
    (default: for seed 0 the recorded ones, :data:`BASE_FACES`).
    """
    if answers is None:
        answers = recorded_faces() if seed == 0 else {}

    def ask(name: str, image: np.ndarray) -> Answer:
        if name not in answers:
            answers[name] = detect(image)
        return answers[name]

    rng = np.random.default_rng(seed)
    photo = _hopper()
    found = ask("hopper-photo", photo)
    if found is None:
        raise RuntimeError("the face model found no face in grace_hopper.jpg: is the model file intact?")
    # a square around the face, 1.8 × the landmarks' extent, so the face fills the canvas
    lo, hi = found[0].min(0), found[0].max(0)
    cx, cy = (lo + hi) / 2
    half = int(0.9 * max(hi - lo))
    top, left = max(0, int(cy) - half), max(0, int(cx) - half)
    candidates = [
        ("hopper", "matplotlib grace_hopper.jpg", _fit_canvas(photo[top : top + 2 * half, left : left + 2 * half]))
    ]
    hopper_found = ask("hopper", candidates[0][2])
    for k in range(n_morphs):
        candidates.append(
            (f"hopper-m{k}", "grace_hopper.jpg, identity morph", _morph(candidates[0][2], hopper_found[0], rng))
        )
    subjects, report = [], {}

    def consider(name: str, origin: str, image: np.ndarray) -> bool:
        found = ask(name, image)
        if found is None:
            report[name] = "no face found"
            return False
        points, scores = found
        too_expressive = {k: round(scores[k], 2) for k, lim in NEUTRAL_LIMITS.items() if scores[k] > lim}
        if too_expressive:
            report[name] = f"not neutral: {too_expressive}"
            return False
        subjects.append(Subject(name, origin, image, points, scores))
        report[name] = "kept"
        return True

    for name, origin, image in candidates:
        consider(name, origin, image)
    kept_lfw = 0
    for i in range(100):  # lfw_subset: the first 100 are faces, then 100 non-faces
        if kept_lfw >= n_lfw:
            break
        kept_lfw += consider(f"lfw{i:03d}", f"skimage lfw_subset[{i}], 25 px upsampled", _fit_canvas(_lfw_face(i), 0.9))
    return subjects, report


# -- the dataset -----------------------------------------------------------------------------
@dataclass(frozen=True)
class AuRule:
    """A planted AU → AU dependency: ``target`` is on with probability ``with_source`` when
    ``source`` is on and ``without_source`` when it is off (sign +1 excites, −1 inhibits)."""

    source: int
    target: int
    sign: int
    with_source: float
    without_source: float


# The AU → AU rules a catalogue plants with ``au_rules=True`` (CausalAffect's AU graph is checked
# against them, issue 36): co-activations a face shows, among the AUs a warp can move. In that
# catalogue the AUs come first and the expression follows from them, the causal order CausalAffect
# models (AU → AU, AU → expression): each AU that no rule targets is on with ROOT_RATE, the rules
# then set their targets, and the label is the prototype rule applied to the result. So the only
# dependencies among the AU labels are the rules, and a learned graph can be checked against them.
# (In the default catalogue the expression is drawn first and its prototype's AUs switched on: the
# expression is then a common cause of surprise's AU1/2/5/26, which a model with expressions
# downstream of AUs can only carry as AU → AU edges, so there the graph ranks those above any rule.)
# What they are not: rates measured on FACS-coded faces; directed by construction, but
# co-activation alone cannot orient them.
AU_RULES: tuple[AuRule, ...] = (
    AuRule(1, 2, +1, 0.85, 0.1),  # inner brow raiser draws the outer brow (AU1+2)
    AuRule(4, 7, +1, 0.8, 0.1),  # brow lowerer with lid tightener (the frown's orbital tension)
    AuRule(5, 26, +1, 0.8, 0.1),  # upper lid raiser with jaw drop (the startle)
    AuRule(12, 15, -1, 0.05, 0.4),  # lip corner puller against its antagonist, the depressor
)
ROOT_RATE = 0.35  # an AU no rule targets is on in this share of the rules' catalogue


def _intensities(on: set[int], rng: np.random.Generator) -> dict[int, float]:
    """The AUs in ``on`` in [0.4, 1], the others below threshold (zero in 70 % of draws)."""
    return {
        au: (
            float(rng.uniform(0.4, 1.0))
            if au in on
            else float(rng.uniform(0.0, AU_THRESHOLD * 0.8)) * (rng.random() < 0.3)
        )
        for au in AUS
    }


def sample_intensities(expression: str, rng: np.random.Generator) -> dict[int, float]:
    """Intensities whose labels give ``expression``: its prototype's AUs in [0.4, 1], the others
    below threshold."""
    needed = set(PROTOTYPES.get(expression, frozenset()))
    for _ in range(100):
        intensity = _intensities(needed, rng)
        if labels_from_intensities(intensity).expression == expression:
            return intensity
    raise AssertionError(f"cannot sample intensities for {expression}")


def sample_ruled_intensities(rng: np.random.Generator) -> dict[int, float]:
    """Intensities drawn AUs first: the AUs no rule targets on with ROOT_RATE, then each of
    AU_RULES sets its target from its source (no source is a target, so one pass is the closure)."""
    targets = {rule.target for rule in AU_RULES}
    on = {au for au in AUS if au not in targets and rng.random() < ROOT_RATE}
    for rule in AU_RULES:
        if rng.random() < (rule.with_source if rule.source in on else rule.without_source):
            on.add(rule.target)
    return _intensities(on, rng)


def write_au_rules(root: Path) -> Path:
    """The planted AU → AU rules beside a catalogue's manifest (``au_rules.csv``: source, target,
    sign and the target's rate with and without its source), so a learned graph can be checked
    against the catalogue it was trained on."""
    path = root / "au_rules.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["source", "target", "sign", "with_source", "without_source"])
        writer.writerows([f"AU{r.source}", f"AU{r.target}", r.sign, r.with_source, r.without_source] for r in AU_RULES)
    return path


# FER2013's training split (28,709 images): the class shares of an in-the-wild expression set,
# one class near 25 %, one at 1.5 %
IN_THE_WILD_SHARES = {
    "anger": 3995,
    "disgust": 436,
    "fear": 4097,
    "happiness": 7215,
    "sadness": 4830,
    "surprise": 3171,
    "neutral": 4965,
}


def _split_of(s_index: int) -> str:
    return "test" if s_index % 5 == 4 else "val" if s_index % 5 == 3 else "train"


def _expressions(n_subjects: int, per_subject: int, shares: dict[str, float] | None, rng) -> list[str]:
    """The expression of every row, subject by subject: cycling through the classes, or (``shares``)
    each split's rows allotted to the classes by largest remainder, then shuffled within the split
    (so every split holds each class in proportion, the rare one included when it has ≥ 1 row)."""
    classes = ["neutral", *PROTOTYPES]
    if shares is None:
        return [classes[k % len(classes)] for _ in range(n_subjects) for k in range(per_subject)]
    if unknown := set(shares) - set(classes):
        raise ValueError(f"unknown expressions {sorted(unknown)}; the generator renders {classes}")
    names = sorted(shares)
    weights = np.array([shares[c] for c in names], float) / sum(shares.values())
    rows: list[str | None] = [None] * (n_subjects * per_subject)
    for split in ("train", "val", "test"):
        slots = [s * per_subject + k for s in range(n_subjects) if _split_of(s) == split for k in range(per_subject)]
        exact = weights * len(slots)
        counts = np.floor(exact).astype(int)
        counts[np.argsort(counts - exact)[: len(slots) - counts.sum()]] += 1  # largest remainders
        drawn = rng.permutation(np.repeat(names, counts))
        for slot, expression in zip(slots, drawn, strict=True):
            rows[slot] = str(expression)
    return rows


def write_generated_dataset(
    root: str | Path,
    detect,
    per_subject: int = 14,
    seed: int = 0,
    shares: dict[str, float] | None = None,
    pain: bool = False,
    au_rules: bool = False,
    **subject_options,
) -> tuple[Path, dict]:
    """A ``csv``-layout dataset (manifest.csv + PNGs) with AU, expression and VA labels.

    Rows cycle through neutral and the prototype expressions for every subject, or follow
    ``shares`` (expression → weight, e.g. :data:`IN_THE_WILD_SHARES`) in every split; splits are
    subject-exclusive (every 5th subject is test, the next val). Deterministic for a seed.
    ``pain``: the pain catalogue instead — every other row a pain face (:func:`sample_pain_intensities`),
    AUs coded over PAIN_AUS (AU43 too), the class ``pain`` or the no-pain face's expression, and a
    ``pspi`` column with each face's pain intensity (the store keeps the class and AUs; the PSPI
    value stays in the manifest). ``au_rules``: AUs drawn first (:func:`sample_ruled_intensities`)
    and the expression read from them, the rules written beside the manifest (``au_rules.csv``).
    Returns (root, report) with the per-subject acceptance report of
    :func:`build_subjects`.
    """
    root = Path(root)
    (root / "img").mkdir(parents=True, exist_ok=True)
    subjects, report = build_subjects(detect, seed=seed, **subject_options)
    rng = np.random.default_rng(seed + 1)
    if au_rules and (pain or shares):
        raise ValueError("au_rules draws the AUs first and the expression follows: no pain or shares with it")
    expressions = _expressions(len(subjects), per_subject, shares, rng) if not (pain or au_rules) else []
    coded = PAIN_AUS if pain else AUS
    rows = []
    for s_index, subject in enumerate(subjects):
        split = _split_of(s_index)
        for k in range(per_subject):
            if pain:
                intensity = sample_pain_intensities(k % 2 == 0, rng)
                labels, score = pain_labels(intensity)
            elif au_rules:
                intensity = sample_ruled_intensities(rng)
                labels, score = labels_from_intensities(intensity), None
            else:
                intensity = sample_intensities(expressions[s_index * per_subject + k], rng)
                labels, score = labels_from_intensities(intensity), None
            rel = f"img/{subject.name}_{k:03d}.png"
            if not (root / rel).exists():
                Image.fromarray(subject.render(intensity)).save(root / rel, compress_level=1)
            va = ["" if labels.valence != labels.valence else v for v in (labels.valence, labels.arousal)]
            rows.append(
                [
                    rel,
                    subject.name,
                    split,
                    labels.expression,
                    *va,
                    *[labels.aus[au] for au in coded],
                    *[round(intensity.get(au, 0.0), 4) for au in coded],
                    *([round(score, 3)] if pain else []),
                ]
            )
    with open(root / "manifest.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "path",
                "subject",
                "split",
                "expression",
                "valence",
                "arousal",
                *[f"AU{au}" for au in coded],
                *[f"intensity_AU{au}" for au in coded],
                *(["pspi"] if pain else []),
            ]
        )
        writer.writerows(rows)
    if au_rules:
        write_au_rules(root)
    return root, {"subjects": len(subjects), "per_subject": per_subject, "candidates": report}


def write_partial_labels(root: str | Path, out: str | Path, half: int, keep: str) -> Path:
    """Half of a generated dataset's subjects with only one kind of label, over the same images
    (hard-linked: a dataset's files lie under its root): the two halves of a partial-label setting,
    an AU dataset beside an expression dataset (CausalAffect's multi-dataset training).

    ``half`` 0 or 1: every other subject of each split, so both halves keep train, val and test
    subjects; ``keep`` ``"au"`` (the AU and intensity columns, no expression or VA),
    ``"expression"`` (expression and VA, no AU columns at all, as RAF-DB) or ``"all"`` (every label:
    the control holding as many labels of each kind as one half of the partial setting). What it is
    not: two datasets of different domains; the halves share the generator, identities' looks and encoder."""
    import os
    import shutil

    root, out = Path(root), Path(out)
    if keep not in ("au", "expression", "all") or half not in (0, 1):
        raise ValueError(f"half 0 or 1 and keep 'au', 'expression' or 'all', not {half!r} and {keep!r}")
    with open(root / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    subjects: dict[str, list[str]] = {}
    for row in rows:
        split = subjects.setdefault(row["split"], [])
        if row["subject"] not in split:
            split.append(row["subject"])
    mine = {s for split in subjects.values() for k, s in enumerate(split) if k % 2 == half}
    is_au = [c.removeprefix("intensity_").startswith("AU") for c in rows[0]]
    drop = {
        "au": {"expression", "valence", "arousal"},
        "expression": {c for c, au in zip(rows[0], is_au) if au},
        "all": set(),
    }[keep]
    columns = [c for c in rows[0] if c not in drop]
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "img").exists():
        shutil.copytree(root / "img", out / "img", copy_function=os.link)
    with open(out / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(row for row in rows if row["subject"] in mine)
    return out
