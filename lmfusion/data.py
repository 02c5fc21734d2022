"""Training and evaluation data from ../shared/data (never copied into the project).

Splits: RoadScene pairs sorted by file name; every 10th (index % 10 == 0) is the test split and
is never trained on. SOTS-indoor and LLVIP are evaluation only. TNO smoke scenes are not in the
shared copy at all (reserved for evaluation by the project).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


def data_root() -> Path:
    """$LMFUSION_DATA, else <repo>/../shared/data."""
    env = os.environ.get("LMFUSION_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def read_gray(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise FileNotFoundError(f"{path}: not a readable image")
    return img


def read_color(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"{path}: not a readable image")
    return img


@dataclass(frozen=True)
class Pair:
    name: str
    vis: Path
    ir: Path


def roadscene_pairs(split: str, root: Path | None = None) -> list[Pair]:
    """split: "train" | "test" | "all". Sorted by file name; index % 10 == 0 is test."""
    d = (root or data_root()) / "roadscene"
    names = sorted(p.name for p in (d / "vis").iterdir() if p.suffix.lower() in IMAGE_EXTS)
    pairs = [Pair(n, d / "vis" / n, d / "ir" / n) for n in names]
    if split == "all":
        return pairs
    if split == "test":
        return [p for i, p in enumerate(pairs) if i % 10 == 0]
    if split == "train":
        return [p for i, p in enumerate(pairs) if i % 10 != 0]
    raise ValueError(f"roadscene split {split!r}: expected train, test or all")


def load_roadscene_pair(p: Pair) -> tuple[np.ndarray, np.ndarray]:
    """(vis BGR resized to the IR size, ir gray): the registered pair, per the data README."""
    ir = read_gray(p.ir)
    vis = cv2.resize(read_color(p.vis), (ir.shape[1], ir.shape[0]), interpolation=cv2.INTER_AREA)
    return vis, ir


def sots_pairs(root: Path | None = None) -> list[Pair]:
    """SOTS-indoor: Pair(name, hazy, clear) -- evaluation only."""
    d = (root or data_root()) / "sots_indoor"
    names = sorted(p.name for p in (d / "hazy").iterdir() if p.suffix.lower() in IMAGE_EXTS)
    return [Pair(n, d / "hazy" / n, d / "gt" / n) for n in names]


def _images_under(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_EXTS)


def training_images(root: Path | None = None, max_side: int = 640) -> list[np.ndarray]:
    """Clean gray images of both modalities for training (uint8, max side <= max_side).

    RoadScene train split (VIS-Y at the IR size, and IR), TNO, TNO sequences and VIFB.
    Never LLVIP (non-commercial) or SOTS (a public test set).
    """
    root = root or data_root()
    images: list[np.ndarray] = []
    for p in roadscene_pairs("train", root):
        vis, ir = load_roadscene_pair(p)
        images += [cv2.cvtColor(vis, cv2.COLOR_BGR2GRAY), ir]
    for sub in ("tno", "tno_sequences", "vifb"):
        for path in _images_under(root / sub):
            images.append(read_gray(path))
    return [_limit_side(img, max_side) for img in images]


def visible_training_images(root: Path | None = None, max_side: int = 640) -> list[np.ndarray]:
    """Clean visible-band gray images only (stage 2): RoadScene train VIS-Y, TNO ``*_Vis``/
    ``*Vis*`` frames and VIFB ``vis/``. Never LLVIP or SOTS."""
    root = root or data_root()
    images = [cv2.cvtColor(load_roadscene_pair(p)[0], cv2.COLOR_BGR2GRAY) for p in roadscene_pairs("train", root)]
    images += [read_gray(p) for p in _images_under(root / "tno") if "vis" in p.stem.lower()]
    images += [read_gray(p) for p in _images_under(root / "vifb" / "vis")]
    return [_limit_side(img, max_side) for img in images]


def _limit_side(img: np.ndarray, max_side: int) -> np.ndarray:
    s = max_side / max(img.shape)
    if s < 1:
        img = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
    return img


def stretch_contrast(img: np.ndarray, pct: float = 1.0) -> np.ndarray:
    """uint8 image with its ``pct`` and 100-``pct`` percentiles stretched to 0 and 255."""
    lo, hi = np.percentile(img, [pct, 100 - pct])
    if hi - lo < 8:  # flat crop: nothing to stretch
        return img
    out = (img.astype(np.float32) - lo) * (255.0 / (hi - lo))
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def random_crop(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A size x size crop with a random flip; reflect-pads images smaller than the crop."""
    h, w = img.shape[:2]
    if h < size or w < size:
        ph, pw = max(0, size - h), max(0, size - w)
        img = cv2.copyMakeBorder(img, 0, ph, 0, pw, cv2.BORDER_REFLECT_101)
        h, w = img.shape[:2]
    y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    c = img[y:y + size, x:x + size]
    if rng.random() < 0.5:
        c = c[:, ::-1]
    if rng.random() < 0.5:
        c = c[::-1]
    return np.ascontiguousarray(c)
