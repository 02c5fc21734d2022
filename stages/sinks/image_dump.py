"""Image dump sink, for debugging: every Nth packet's buffers as PNG files, a bounded number.

Files are named {stream}_{seq:06d}_{buffer}.png in out_dir, so a dump sorts by time and the VIS,
IR and fused images of one pair sit together. Once `max_images` files are written the sink stops
writing (a forgotten debug dump must not fill the disk) and counts what it skipped.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2

from pipeline.packet import Packet

log = logging.getLogger(__name__)


class ImageDumpError(RuntimeError):
    """The dump cannot be written (bad config, unwritable directory). One line."""


@dataclass
class ImageDumpConfig:
    out_dir: str = "out/dump"          # created if missing
    every_n: int = 10                  # dump packets whose arrival index is a multiple of this
    max_images: int = 200              # stop after this many PNG files in total
    buffers: tuple[str, ...] | None = None   # which buffers to write; None = all of each packet


class ImageDumpSink:
    """Writes PNGs of every `every_n`-th packet, at most `max_images` files."""
    Config = ImageDumpConfig
    inputs = ("fused",)
    outputs: tuple[str, ...] = ()

    def __init__(self, config: ImageDumpConfig) -> None:
        if config.every_n < 1 or config.max_images < 0:
            raise ImageDumpError(f"image_dump: every_n must be >= 1 and max_images >= 0, "
                                 f"got every_n={config.every_n}, max_images={config.max_images}")
        self.config = config
        self.files: list[Path] = []
        self.skipped = 0               # packets due for a dump but over the max_images budget
        self._seen = 0

    def start(self) -> None:
        try:
            Path(self.config.out_dir).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ImageDumpError(f"image_dump: cannot create out_dir {self.config.out_dir!r}: {e}") from e

    def process(self, packet: Packet) -> list[Packet]:
        index, self._seen = self._seen, self._seen + 1
        if index % self.config.every_n:
            return []
        names = [n for n in packet.buffers if self.config.buffers is None or n in self.config.buffers]
        if len(self.files) + len(names) > self.config.max_images:
            if self.skipped == 0:
                log.info("image_dump: reached max_images=%d in %s; dumping no more", self.config.max_images,
                         self.config.out_dir)
            self.skipped += 1
            return []
        for name in names:
            path = Path(self.config.out_dir) / f"{packet.stream}_{packet.seq:06d}_{name}.png"
            if not cv2.imwrite(str(path), packet.buffers[name]):
                raise ImageDumpError(f"image_dump: cannot write {path} (buffer {name!r}, "
                                     f"shape {packet.buffers[name].shape}, dtype {packet.buffers[name].dtype})")
            self.files.append(path)
        return []

    def finish(self) -> list[Packet]:
        return []

    def stats(self) -> dict:
        return {"images_written": len(self.files), "skipped": self.skipped}

    def stop(self) -> None:
        return None
