"""The demo street seen by a radiometric 16-bit LWIR camera, with known temperatures.

The same world as `common.synthetic_scene` (same seed: same buildings, people, vehicles, smoke,
geometry TRUE_IR_FROM_VIS), but in °C, and a fire: people at 34 °C (legs 31 °C), vehicles with an
engine at 80 °C (exhaust 65 °C, body 18 °C), and a burning bin whose core is at 400 °C (flames
250 °C, glow 120 °C) standing at FIRE_VIS in the street, drawn in front of everything. The
background follows the 8-bit scene's thermal levels (sky about 0-8 °C, road 14-20 °C, lit
windows about 29 °C).

Temperatures become counts through the camera's Planck constants `PLANCK` (R, B, F, O; a
FLIR-like 16-bit core: about 52 counts/K at 34 °C, 180 counts/K at 400 °C). Smoke mixes in
radiance, i.e. linearly in counts - O, with smoke at SMOKE_C. Then optics blur, the warp into the
IR camera (320x256), and sensor noise of NOISE_COUNTS (about 0.04 K at 34 °C) drawn per frame, so
no two frames are equal unless the camera freezes.

    render_ir_counts(t_s, seed=0, smoke=1.0, frame=0) -> (256, 320) uint16
    fire_truth() -> (x, y, °C) of the hottest spot in IR pixels
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from common.synthetic_scene import IR_SIZE, TRUE_IR_FROM_VIS, VIS_SIZE, _K_IR, scene_objects, world_of
from thermal.radiometry import KELVIN, RadiometricConfig, kelvin_to_counts

PLANCK = RadiometricConfig(kind="planck", R=366545.0, B=1428.0, F=1.0, O=-342.0)
PERSON_C, PERSON_LEGS_C = 34.0, 31.0
ENGINE_C, EXHAUST_C, BODY_C, CAB_C, WHEEL_C = 80.0, 65.0, 18.0, 16.0, 40.0
FIRE_CORE_C, FIRE_FLAME_C, FIRE_GLOW_C = 400.0, 250.0, 120.0
FIRE_VIS = (470.0, 300.0)          # the burning bin's core centre, VIS pixels
FIRE_CORE_AXES = (11.0, 14.0)      # its half-axes, VIS pixels (about 6 x 8 IR pixels)
SMOKE_C = 20.0
NOISE_COUNTS = 2.0


def _background_c(seed: int) -> np.ndarray:
    """The static street in °C, VIS coordinates (480, 640) float32, from the 8-bit scene's levels."""
    return np.float32(0.25) * (world_of(seed).thermal_bg - np.float32(35.0))


def _draw_objects_c(temp: np.ndarray, t_s: float, seed: int) -> None:
    """People and vehicles at their temperatures, drawn into `temp` (°C, VIS coordinates)."""
    world = world_of(seed)
    for o in scene_objects(t_s, seed):
        if o.kind == "vehicle":
            x0, y0 = int(o.x - o.w / 2), int(o.y - o.h / 2)
            x1, y1 = int(o.x + o.w / 2), int(o.y + o.h / 2)
            cab0 = x0 + int(0.25 * o.w) if o.heading > 0 else x0 + int(0.15 * o.w)
            wheel_r = max(3, int(0.16 * o.h))
            front = x1 - int(0.18 * o.w) if o.heading > 0 else x0
            tail = x0 if o.heading > 0 else x1 - 4
            cv2.rectangle(temp, (x0, y0 + int(0.35 * o.h)), (x1, y1 - wheel_r // 2), BODY_C, -1)
            cv2.rectangle(temp, (cab0, y0), (cab0 + int(0.55 * o.w), y0 + int(0.4 * o.h)), CAB_C, -1)
            cv2.rectangle(temp, (front, y0 + int(0.4 * o.h)), (front + int(0.18 * o.w), y1 - wheel_r), ENGINE_C, -1)
            cv2.rectangle(temp, (tail, y1 - wheel_r - 4), (tail + 4, y1 - wheel_r), EXHAUST_C, -1)
            for wx in (x0 + int(0.22 * o.w), x1 - int(0.22 * o.w)):
                cv2.circle(temp, (wx, y1 - wheel_r), wheel_r, WHEEL_C, -1, cv2.LINE_AA)
        else:
            person = world.people[o.ident]
            h, cx = o.h, o.x
            head_r = max(2, int(0.09 * h))
            hip_y, foot_y = int(o.y + 0.12 * h), int(o.y + h / 2)
            swing = 0.12 * h * math.sin(2 * math.pi * 1.6 * t_s + person["phase"])
            for sx in (swing, -swing):
                cv2.line(temp, (int(cx), hip_y), (int(cx + sx), foot_y), PERSON_LEGS_C, max(2, int(0.06 * h)), cv2.LINE_AA)
            cv2.ellipse(temp, (int(cx), int(o.y - 0.08 * h)), (max(2, int(0.14 * h)), max(3, int(0.22 * h))),
                        0, 0, 360, PERSON_C, -1, cv2.LINE_AA)
            cv2.circle(temp, (int(cx), int(o.y - h / 2 + head_r)), head_r, PERSON_C, -1, cv2.LINE_AA)


def _draw_fire_c(temp: np.ndarray, t_s: float) -> None:
    """The burning bin: glow and flickering flames around a core at FIRE_CORE_C (sub-pixel drawn)."""
    fx, fy = FIRE_VIS
    flicker = 1.0 + 0.15 * math.sin(2 * math.pi * 2.3 * t_s) + 0.08 * math.sin(2 * math.pi * 5.1 * t_s)
    s = 16                                               # 4 bits of sub-pixel precision

    def ellipse(cx, cy, ax, ay, value):
        cv2.ellipse(temp, (int(round(cx * s)), int(round(cy * s))), (int(round(ax * s)), int(round(ay * s))),
                    0, 0, 360, value, -1, cv2.LINE_AA, 4)

    ellipse(fx, fy, 24.0, 20.0, FIRE_GLOW_C)
    ellipse(fx, fy - 14.0 * flicker, 14.0, 24.0 * flicker, FIRE_FLAME_C)
    ellipse(fx, fy, *FIRE_CORE_AXES, FIRE_CORE_C)


def temperature_vis_coords(t_s: float, seed: int = 0) -> np.ndarray:
    """The scene's surface temperatures at t_s, °C, VIS coordinates (480, 640) float32 (no smoke)."""
    temp = _background_c(seed).copy()
    _draw_objects_c(temp, t_s, seed)
    _draw_fire_c(temp, t_s)
    return temp


def render_ir_counts(t_s: float, seed: int = 0, smoke: float = 1.0, frame: int = 0) -> np.ndarray:
    """The radiometric IR frame at t_s: (256, 320) uint16 counts (PLANCK). `frame` seeds the noise."""
    temp = temperature_vis_coords(t_s, seed)
    radiance = (kelvin_to_counts(temp + KELVIN, PLANCK) - PLANCK.O).astype(np.float32)
    if smoke > 0:
        trans = np.exp(-_K_IR * world_of(seed).smoke_density(t_s, smoke))
        smoke_radiance = float(kelvin_to_counts(SMOKE_C + KELVIN, PLANCK) - PLANCK.O)
        radiance = radiance * trans + np.float32(smoke_radiance) * (1 - trans)
    radiance = cv2.GaussianBlur(radiance, (0, 0), 1.1)         # LWIR optics are soft
    ir = cv2.warpPerspective(radiance, TRUE_IR_FROM_VIS, IR_SIZE, flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
    rng = np.random.default_rng([seed, 16, frame])
    ir += rng.normal(0.0, NOISE_COUNTS, ir.shape).astype(np.float32)
    return np.clip(ir + np.float32(PLANCK.O) + 0.5, 0, 65535).astype(np.uint16)


def fire_truth() -> tuple[float, float, float]:
    """The hottest spot in clear air: (x, y) of the fire core's centre in IR pixels, and its °C."""
    p = TRUE_IR_FROM_VIS @ np.array([FIRE_VIS[0], FIRE_VIS[1], 1.0])
    return float(p[0] / p[2]), float(p[1] / p[2]), FIRE_CORE_C
