"""Image sequence source: a folder of images or a glob pattern, played at a configured rate.

Files are sorted naturally ("frame2.png" before "frame10.png"). Frame i has pts = i / fps,
counting skipped files, so a skipped file leaves a gap in time like a dropped frame would.
Timestamps use the media clock (see stages.capture.source). Images are read as gray for
modality "ir" and as BGR colour for "vis" (8-bit; 16-bit files are scaled down by OpenCV).
An unreadable or corrupt file raises CaptureError naming it, or with on_error="skip" is skipped,
logged once and counted.
"""
from __future__ import annotations

import glob
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.packet import Packet
from stages.capture.source import SYSTEM_CLOCK, CaptureError, FrameSource, HostClock, MediaClock, check_modality

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


@dataclass
class ImageFolderConfig:
    path: str = ""                     # a directory (every image in it) or a glob ("seq/*_ir.png")
    modality: str = "vis"              # "vis" -> BGR, "ir" -> gray
    stream: str = "images"             # Packet.stream
    fps: float = 10.0                  # frames per second of the sequence (sets pts)
    realtime: bool = False             # True: pace at fps; False: as fast as read
    loop: bool = False                 # True: start again at the end (no eos)
    on_error: str = "raise"            # "raise" (CaptureError naming the file) or "skip" (count it)
    clock_origin_mono: float | None = None  # time.monotonic() of media time 0; None = at start().
                                       # Set the same value for both cameras to align them exactly.


def natural_key(path: str) -> list:
    """Sort key that orders digit runs by value: img2 < img10."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", path)]


def list_images(path: str) -> list[str]:
    """Image files of a directory (by extension) or of a glob pattern, naturally sorted."""
    p = Path(path)
    if p.is_dir():
        files = [str(f) for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file()]
    else:
        files = [f for f in glob.glob(path) if Path(f).is_file()]
    return sorted(files, key=natural_key)


def _ir_gray(image: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """An IR image as (H, W) uint8 or uint16 gray, or (None, why not)."""
    if image.dtype not in (np.uint8, np.uint16):
        return None, f"{image.dtype} pixels (expected 8- or 16-bit)"
    if image.ndim == 3:
        if image.shape[2] == 4:
            image = image[:, :, :3]
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.shape[2] == 3 else image[:, :, 0]
    return np.ascontiguousarray(image), None


class ImageFolderSource(FrameSource):
    """Frames from image files. read(timeout_s) -> Packet | None (not yet due) | eos packet once."""

    Config = ImageFolderConfig
    kind = "folder"

    def __init__(self, config: ImageFolderConfig, clock: HostClock = SYSTEM_CLOCK) -> None:
        check_modality(config.modality, "image_folder")
        if not config.fps > 0:
            raise CaptureError(f"image_folder: fps must be > 0, got {config.fps!r} (key 'fps')")
        if config.on_error not in ("raise", "skip"):
            raise CaptureError(f"image_folder: on_error must be 'raise' or 'skip', got {config.on_error!r}")
        self.config = config
        self._host = clock
        self.files: list[str] = []
        self.frames = 0
        self.skipped = 0
        self._index = 0                    # position in the endless (looped) sequence
        self._clock: MediaClock | None = None
        self._done = False

    def start(self) -> None:
        clock = MediaClock.starting_at(self.config.clock_origin_mono, self._host)   # before the (slow) listing
        self.files = list_images(self.config.path)
        if not self.files:
            raise CaptureError(f"image_folder: no images at {self.config.path!r} (key 'path'; a directory with "
                               f"{'/'.join(IMAGE_EXTENSIONS)} files, or a glob pattern)")
        self._clock = clock

    def _load(self, path: str) -> np.ndarray | None:
        """The image, or None when it must be skipped (raises CaptureError with on_error='raise')."""
        # IR keeps its bit depth: a 16-bit PNG/TIFF holds a camera's counts (uint16), kept for
        # registration's AGC and radiometry; 8-bit files are read as gray as before.
        flag = cv2.IMREAD_COLOR if self.config.modality == "vis" else cv2.IMREAD_UNCHANGED
        try:
            # imdecode(fromfile) rather than imread: it separates "cannot read" from "corrupt".
            data = np.fromfile(path, np.uint8)
            image = cv2.imdecode(data, flag) if data.size else None
            problem = "corrupt or not an image" if image is None else None
            if image is not None and self.config.modality == "ir":
                image, problem = _ir_gray(image)
        except OSError as e:
            image, problem = None, f"unreadable ({e.strerror or e})"
        if image is not None:
            return image
        if self.config.on_error == "raise":
            raise CaptureError(f"image_folder: {path} is {problem} (set on_error: skip to skip such files)")
        if self.skipped == 0:
            log.warning("image_folder: skipping %s: %s (further skips are counted, not logged)", path, problem)
        self.skipped += 1
        return None

    def read(self, timeout_s: float) -> Packet | None:
        self._started(self._clock)
        cfg = self.config
        n = len(self.files)
        while not self._done:
            if self._index >= n and not cfg.loop:
                self._done = True
                return Packet.eos(cfg.stream, seq=self.frames, modality=cfg.modality, source=cfg.path,
                                  frames=self.frames, skipped=self.skipped)
            if cfg.loop and self.skipped >= n and self.frames == 0:
                raise CaptureError(f"image_folder: every image at {cfg.path!r} is unreadable")
            media_s = self._index / cfg.fps
            if cfg.realtime and not self._clock.wait_until(media_s, timeout_s):
                return None
            path = self.files[self._index % n]
            self._index += 1
            image = self._load(path)
            if image is None:
                continue
            t_mono, t_wall = self._clock.stamp(media_s, live=cfg.realtime)
            packet = Packet(stream=cfg.stream, kind="frame", seq=self.frames, t_mono=t_mono, t_wall=t_wall,
                            pts=media_s, buffers={cfg.modality: image},
                            meta={"modality": cfg.modality, "source": path, "clock": "media"})
            self.frames += 1
            return packet
        return None

    def stats(self) -> dict:
        return {"frames": self.frames, "skipped": self.skipped, "files": len(self.files)}

    def stop(self) -> None:
        self._done = True
