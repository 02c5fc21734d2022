"""The synthetic smoky street (and heated calibration target) seen by a VIS and an IR camera.

One world is rendered in VIS pixel coordinates (640x480): a street with buildings, people and
vehicles, seen through drifting smoke. The smoke follows the single-scattering haze model

    I = J * t + A * (1 - t),   t = exp(-k * density(x, y, time))

with a turbulent, spatially varying density that drifts and thickens/thins over time. The VIS
camera has a large extinction k (smoke blinds it); LWIR has k about 25x smaller (it sees through).
The IR frame is the world's thermal rendering, seen through the same smoke, warped into the IR
camera (320x256) with `TRUE_IR_FROM_VIS`. Both cameras therefore agree exactly on geometry and
time: registration and calibration can be checked against the truth.

Pure functions (no I/O, deterministic by seed and time):
- `render_pair(t_s, seed=0, scene="smoke"|"target", smoke=1.0) -> (vis_bgr, ir_gray)`
- `target_corners_vis(t_s)` the true inner corners of the heated checkerboard (scene="target")
- `scene_objects(t_s, seed)` where the warm objects are (VIS pixels)

The camera source around it is stages/capture/synthetic.py; calibration's CLI renders the target.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np


VIS_SIZE = (640, 480)          # (w, h) pixels, BGR colour
IR_SIZE = (320, 256)           # (w, h) pixels, gray
VIS_FPS = 20.0
IR_FPS = 10.0
SCENES = ("smoke", "target")
TARGET_INNER_CORNERS = (9, 6)  # (columns, rows) of inner corners, as cv2.findChessboardCorners wants
TARGET_SQUARE_PX = 36.0        # square side in VIS pixels (about 20 px in IR)


def _ir_from_vis() -> np.ndarray:
    """The demo rig: ir_xy = 0.55 * R(1.5 deg) @ (vis_xy - (320, 240)) + (160 + 6, 128 - 4)."""
    a = math.radians(1.5)
    to_origin = np.array([[1, 0, -VIS_SIZE[0] / 2], [0, 1, -VIS_SIZE[1] / 2], [0, 0, 1]])
    scale = np.diag([0.55, 0.55, 1.0])
    rot = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    to_ir = np.array([[1, 0, IR_SIZE[0] / 2 + 6], [0, 1, IR_SIZE[1] / 2 - 4], [0, 0, 1]])
    return to_ir @ rot @ scale @ to_origin


TRUE_IR_FROM_VIS: np.ndarray = _ir_from_vis()   # 3x3 float64, VIS pixel coords -> IR pixel coords
TRUE_IR_FROM_VIS.setflags(write=False)

# Smoke optics. Extinction per unit density: VIS is blinded at density ~1, LWIR barely notices.
_K_VIS = 3.2
_K_IR = 0.12
_AIRLIGHT_VIS = np.array([196, 200, 204], np.float32)   # BGR of lit smoke
_AIRLIGHT_IR = 92.0                                     # smoke at about ambient temperature
_SMOKE_GRID = 24            # noise lattice cells (periodic); density is computed at 1/4 resolution
_SMOKE_OCTAVES = ((1 / 150.0, 0.55, (9.0, -2.0)),       # (cycles per VIS px, weight, drift px/s)
                  (1 / 60.0, 0.30, (-14.0, -5.0)),
                  (1 / 25.0, 0.15, (22.0, 6.0)))


@dataclass(frozen=True)
class SceneObject:
    """A warm object at one instant, in VIS pixels: (x, y) is the centre of its body."""

    kind: str       # "person" | "vehicle"
    x: float
    y: float
    w: float
    h: float
    heading: int    # +1 moving right, -1 moving left
    ident: int      # index among objects of its kind (stable over time)


class _World:
    """Everything about one seed that does not change with time: backgrounds, paths, smoke lattice."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.seed = seed
        self.vis_bg, self.thermal_bg = self._background(rng)
        # Paths: walkers on the pavement and cars on the road, wrapping across the view.
        self.people = [dict(x0=rng.uniform(-40, 680), foot=rng.uniform(300, 465), speed=rng.uniform(14, 38) * rng.choice([-1, 1]),
                            phase=rng.uniform(0, 2 * np.pi), colour=tuple(int(c) for c in rng.integers(30, 200, 3)))
                       for _ in range(5)]
        self.vehicles = [dict(x0=rng.uniform(-100, 740), foot=rng.uniform(345, 430), speed=rng.uniform(35, 80) * rng.choice([-1, 1]),
                              colour=tuple(int(c) for c in rng.integers(20, 230, 3)))
                         for _ in range(2)]
        self.smoke_lattices = [rng.random((_SMOKE_GRID, _SMOKE_GRID), dtype=np.float32) for _ in _SMOKE_OCTAVES]
        self.smoke_phase = rng.uniform(0, 2 * np.pi, 2)
        # A small bank of sensor noise frames, picked by time: cheap and deterministic.
        self.vis_noise = rng.normal(0, 2.0, (4, VIS_SIZE[1], VIS_SIZE[0], 3)).astype(np.float32)
        self.airlight_vis = np.broadcast_to(_AIRLIGHT_VIS, (VIS_SIZE[1], VIS_SIZE[0], 3)).astype(np.float32)
        self.airlight_noise_vis = self.vis_noise + self.airlight_vis    # what render_vis adds, per noise frame
        self.ir_noise = rng.normal(0, 2.5, (4, IR_SIZE[1], IR_SIZE[0])).astype(np.float32)

    @staticmethod
    def _background(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Static street: VIS (480, 640, 3) uint8 BGR and thermal (480, 640) float32 in 0..255."""
        w, h = VIS_SIZE
        horizon = 210
        ys = np.arange(h, dtype=np.float32)[:, None]
        sky = np.clip((ys / horizon), 0, 1)
        vis = np.empty((h, w, 3), np.float32)
        for c, (top, bottom) in enumerate(((235, 215), (200, 215), (150, 205))):
            vis[:, :, c] = top + (bottom - top) * sky
        thermal = np.broadcast_to(35 + 30 * sky, (h, w)).astype(np.float32).copy()
        # Ground: asphalt, a little warmer towards the camera (sun-heated).
        ground = slice(horizon, h)
        g = (ys[ground] - horizon) / (h - horizon)
        vis[ground] = np.array([98, 102, 108], np.float32) + 18 * g[..., None]
        thermal[ground] = 92 + 22 * g
        texture = cv2.GaussianBlur(rng.normal(0, 9, (h, w)).astype(np.float32), (0, 0), 1.5)
        vis[ground] += texture[ground, :, None]
        thermal[ground] += 0.4 * texture[ground]
        # Road markings: cooler paint.
        for x in range(20, w, 90):
            cv2.rectangle(vis, (x, 392), (x + 45, 398), (225, 225, 225), -1)
            cv2.rectangle(thermal, (x, 392), (x + 45, 398), 80, -1)
        # Buildings on the horizon with windows, some of them lit and warm.
        x = -10
        while x < w:
            bw, bh = int(rng.integers(60, 130)), int(rng.integers(60, 170))
            shade = float(rng.uniform(90, 170))
            cv2.rectangle(vis, (x, horizon - bh), (x + bw, horizon), (shade * 0.85, shade * 0.9, shade), -1)
            cv2.rectangle(thermal, (x, horizon - bh), (x + bw, horizon), 105, -1)
            for wy in range(horizon - bh + 10, horizon - 15, 22):
                for wx in range(x + 8, x + bw - 14, 20):
                    lit = rng.random() < 0.35
                    cv2.rectangle(vis, (wx, wy), (wx + 9, wy + 12), (120, 210, 240) if lit else (70, 60, 55), -1)
                    cv2.rectangle(thermal, (wx, wy), (wx + 9, wy + 12), 150 if lit else 118, -1)
            x += bw + int(rng.integers(0, 25))
        # Trees along the pavement: cool, dark green.
        for _ in range(4):
            tx, ty = int(rng.integers(20, w - 20)), int(rng.integers(200, 240))
            r = int(rng.integers(18, 32))
            cv2.rectangle(vis, (tx - 3, ty), (tx + 3, ty + 55), (40, 60, 80), -1)
            cv2.circle(vis, (tx, ty), r, (50, 120, 60), -1, cv2.LINE_AA)
            cv2.rectangle(thermal, (tx - 3, ty), (tx + 3, ty + 55), 88, -1)
            cv2.circle(thermal, (tx, ty), r, 78, -1, cv2.LINE_AA)
        return np.clip(vis, 0, 255).astype(np.uint8), thermal

    # ---- moving things -------------------------------------------------------------------
    def objects(self, t_s: float) -> list[SceneObject]:
        out = []
        for i, v in enumerate(self.vehicles):
            s = 0.55 + 0.9 * (v["foot"] - 300) / 180          # perspective: nearer is bigger
            length, height = 130 * s, 48 * s
            x = _wrap(v["x0"] + v["speed"] * t_s, -length, VIS_SIZE[0] + length)
            out.append(SceneObject("vehicle", x, v["foot"] - height / 2, length, height, int(np.sign(v["speed"])), i))
        for i, p in enumerate(self.people):
            s = 0.55 + 0.9 * (p["foot"] - 300) / 180
            height = 70 * s
            x = _wrap(p["x0"] + p["speed"] * t_s, -30, VIS_SIZE[0] + 30)
            out.append(SceneObject("person", x, p["foot"] - height / 2, 0.3 * height, height, int(np.sign(p["speed"])), i))
        # Painter's order: far (small foot y) first.
        return sorted(out, key=lambda o: o.y + o.h / 2)

    def draw_objects(self, vis: np.ndarray | None, thermal: np.ndarray | None, t_s: float) -> None:
        """Draw people and vehicles into VIS (uint8 BGR) and/or thermal (float32), in place."""
        for o in self.objects(t_s):
            if o.kind == "vehicle":
                _draw_vehicle(vis, thermal, o, self.vehicles[o.ident]["colour"])
            else:
                _draw_person(vis, thermal, o, t_s, self.people[o.ident])

    def smoke_density(self, t_s: float, amount: float) -> np.ndarray:
        """Smoke density (480, 640) float32 >= 0 at time t_s; ~1 blinds VIS."""
        if amount <= 0:
            return np.zeros((VIS_SIZE[1], VIS_SIZE[0]), np.float32)
        w, h = VIS_SIZE[0] // 4, VIS_SIZE[1] // 4
        xs, ys = np.meshgrid(np.arange(w, dtype=np.float32) * 4, np.arange(h, dtype=np.float32) * 4)
        noise = np.zeros((h, w), np.float32)
        for lattice, (freq, weight, (vx, vy)) in zip(self.smoke_lattices, _SMOKE_OCTAVES):
            # Each octave drifts its own way: together they look like turbulent, evolving smoke.
            mx = ((xs - vx * t_s) * freq) % _SMOKE_GRID
            my = ((ys - vy * t_s) * freq) % _SMOKE_GRID
            noise += weight * cv2.remap(lattice, mx.astype(np.float32), my.astype(np.float32),
                                        cv2.INTER_CUBIC, borderMode=cv2.BORDER_WRAP)
        p0, p1 = self.smoke_phase
        # Thickens and thins: a slow swell (~17 s) with a faster flutter (~5 s).
        # A Python float: a numpy float64 scalar would promote the whole frame to float64 (NEP 50),
        # which made every frame's blend about 1.5x slower than float32.
        envelope = float(np.clip(0.55 + 0.45 * math.sin(2 * math.pi * t_s / 17.0 + p0)
                                 + 0.15 * math.sin(2 * math.pi * t_s / 5.3 + p1), 0.05, 1.0))
        plume = np.clip((noise - 0.25) / 0.5, 0, 1)
        plume = plume * plume * (3 - 2 * plume)                      # smoothstep: soft edges
        height_bias = 0.6 + 0.4 * (ys / VIS_SIZE[1])                 # denser near the ground
        density = (1.6 * amount * envelope) * plume * height_bias
        return cv2.resize(density, VIS_SIZE, interpolation=cv2.INTER_LINEAR)


def _wrap(x: float, lo: float, hi: float) -> float:
    return lo + (x - lo) % (hi - lo)


def _draw_vehicle(vis, thermal, o: SceneObject, colour) -> None:
    x0, y0 = int(o.x - o.w / 2), int(o.y - o.h / 2)
    x1, y1 = int(o.x + o.w / 2), int(o.y + o.h / 2)
    cab0 = x0 + int(0.25 * o.w) if o.heading > 0 else x0 + int(0.15 * o.w)
    cab1 = cab0 + int(0.55 * o.w)
    wheel_r = max(3, int(0.16 * o.h))
    front = x1 - int(0.18 * o.w) if o.heading > 0 else x0
    tail = x0 if o.heading > 0 else x1 - 4
    if vis is not None:
        cv2.rectangle(vis, (x0, y0 + int(0.35 * o.h)), (x1, y1 - wheel_r // 2), colour, -1)
        cv2.rectangle(vis, (cab0, y0), (cab1, y0 + int(0.4 * o.h)), colour, -1)
        cv2.rectangle(vis, (cab0 + 3, y0 + 3), (cab1 - 3, y0 + int(0.35 * o.h)), (90, 70, 60), -1)
        for wx in (x0 + int(0.22 * o.w), x1 - int(0.22 * o.w)):
            cv2.circle(vis, (wx, y1 - wheel_r), wheel_r, (25, 25, 25), -1, cv2.LINE_AA)
    if thermal is not None:
        cv2.rectangle(thermal, (x0, y0 + int(0.35 * o.h)), (x1, y1 - wheel_r // 2), 150, -1)
        cv2.rectangle(thermal, (cab0, y0), (cab1, y0 + int(0.4 * o.h)), 135, -1)
        cv2.rectangle(thermal, (front, y0 + int(0.4 * o.h)), (front + int(0.18 * o.w), y1 - wheel_r), 235, -1)  # engine
        cv2.rectangle(thermal, (tail, y1 - wheel_r - 4), (tail + 4, y1 - wheel_r), 250, -1)                        # exhaust
        for wx in (x0 + int(0.22 * o.w), x1 - int(0.22 * o.w)):
            cv2.circle(thermal, (wx, y1 - wheel_r), wheel_r, 190, -1, cv2.LINE_AA)


def _draw_person(vis, thermal, o: SceneObject, t_s: float, person: dict) -> None:
    h = o.h
    cx = o.x
    head_r = max(2, int(0.09 * h))
    head = (int(cx), int(o.y - h / 2 + head_r))
    torso_c = (int(cx), int(o.y - 0.08 * h))
    torso_axes = (max(2, int(0.14 * h)), max(3, int(0.22 * h)))
    hip_y = int(o.y + 0.12 * h)
    foot_y = int(o.y + h / 2)
    swing = 0.12 * h * math.sin(2 * math.pi * 1.6 * t_s + person["phase"])   # walking gait
    legs = [((int(cx), hip_y), (int(cx + swing), foot_y)), ((int(cx), hip_y), (int(cx - swing), foot_y))]
    leg_w = max(2, int(0.06 * h))
    if vis is not None:
        for a, b in legs:
            cv2.line(vis, a, b, (60, 50, 45), leg_w, cv2.LINE_AA)
        cv2.ellipse(vis, torso_c, torso_axes, 0, 0, 360, person["colour"], -1, cv2.LINE_AA)
        cv2.circle(vis, head, head_r, (120, 150, 200), -1, cv2.LINE_AA)
    if thermal is not None:
        for a, b in legs:
            cv2.line(thermal, a, b, 195, leg_w, cv2.LINE_AA)
        cv2.ellipse(thermal, torso_c, torso_axes, 0, 0, 360, 210, -1, cv2.LINE_AA)
        cv2.circle(thermal, head, head_r, 240, -1, cv2.LINE_AA)


@functools.lru_cache(maxsize=8)
def world_of(seed: int) -> _World:
    """The world of `seed` (built once, ~0.1 s; cached)."""
    return _World(int(seed))


# ---- the heated checkerboard ------------------------------------------------------------------
def _target_pose(t_s: float) -> tuple[float, float, float]:
    """Centre (x, y) in VIS px and rotation (rad) of the board: it drifts slowly so a calibration
    tool sees it in several places."""
    return (VIS_SIZE[0] / 2 + 40 * math.sin(2 * math.pi * t_s / 12.0),
            VIS_SIZE[1] / 2 + 25 * math.sin(2 * math.pi * t_s / 9.0),
            math.radians(6.0) * math.sin(2 * math.pi * t_s / 15.0))


def _board_to_vis(t_s: float, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Board coordinates in squares (origin at the board centre) -> VIS pixels, shape (..., 2)."""
    cx, cy, a = _target_pose(t_s)
    s = TARGET_SQUARE_PX
    x = cx + s * (u * math.cos(a) - v * math.sin(a))
    y = cy + s * (u * math.sin(a) + v * math.cos(a))
    return np.stack([x, y], axis=-1)


def target_corners_vis(t_s: float) -> np.ndarray:
    """True inner corners of the checkerboard at t_s: (54, 2) float64 VIS pixels, row-major
    (9 per row, 6 rows), the order cv2.findChessboardCorners reports for an upright board."""
    cols, rows = TARGET_INNER_CORNERS
    u, v = np.meshgrid(np.arange(cols) - (cols - 1) / 2, np.arange(rows) - (rows - 1) / 2)
    return _board_to_vis(t_s, u.ravel().astype(np.float64), v.ravel().astype(np.float64))


def _draw_target(vis: np.ndarray, thermal: np.ndarray, t_s: float) -> None:
    """Board of 10x7 squares with a one-square quiet border. Light squares are heated, so the
    board has the same polarity in VIS (white) and IR (hot)."""
    cols, rows = TARGET_INNER_CORNERS[0] + 1, TARGET_INNER_CORNERS[1] + 1
    shift = 4                                                    # 1/16 px sub-pixel drawing

    def poly(u0, v0, u1, v1):
        quad = _board_to_vis(t_s, np.array([u0, u1, u1, u0], float), np.array([v0, v0, v1, v1], float))
        return np.round(quad * (1 << shift)).astype(np.int32)

    hu, hv = cols / 2, rows / 2
    border = poly(-hu - 1, -hv - 1, hu + 1, hv + 1)
    cv2.fillConvexPoly(vis, border, (225, 225, 225), cv2.LINE_AA, shift)
    cv2.fillConvexPoly(thermal, border, 200.0, cv2.LINE_AA, shift)
    for j in range(rows):
        for i in range(cols):
            if (i + j) % 2 == 0:                                  # dark, unheated squares
                q = poly(-hu + i, -hv + j, -hu + i + 1, -hv + j + 1)
                cv2.fillConvexPoly(vis, q, (30, 30, 30), cv2.LINE_AA, shift)
                cv2.fillConvexPoly(thermal, q, 70.0, cv2.LINE_AA, shift)


# ---- rendering ------------------------------------------------------------------------------
def scene_objects(t_s: float, seed: int = 0) -> list[SceneObject]:
    """The warm objects (people, vehicles) at t_s, in VIS pixels. Pure."""
    return world_of(seed).objects(t_s)


def _noise_index(t_s: float) -> int:
    return int(math.floor(t_s * 1000.0 + 0.5)) % 4


def render_vis(t_s: float, seed: int = 0, scene: str = "smoke", smoke: float = 1.0) -> np.ndarray:
    """VIS frame at t_s: (480, 640, 3) uint8 BGR. Pure and deterministic."""
    check_scene(scene)
    world = world_of(seed)
    vis = world.vis_bg.copy()
    if scene == "target":
        _draw_target(vis, np.zeros(vis.shape[:2], np.float32), t_s)
        return vis
    world.draw_objects(vis, None, t_s)
    # vis * trans + airlight * (1 - trans) + noise, as (vis - airlight) * trans + (airlight + noise)
    # in OpenCV's in-place float32 ops: 10.1 -> 7.4 CPU-ms per frame (numpy's broadcasting made
    # five full-size temporaries); results within 1 grey level of the numpy expression.
    trans = cv2.exp(world.smoke_density(t_s, smoke) * np.float32(-_K_VIS))
    out = vis.astype(np.float32)
    cv2.subtract(out, world.airlight_vis, out)
    cv2.multiply(out, cv2.merge((trans, trans, trans)), out)
    cv2.add(out, world.airlight_noise_vis[_noise_index(t_s)], out)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def render_thermal_vis_coords(t_s: float, seed: int = 0, scene: str = "smoke", smoke: float = 1.0) -> np.ndarray:
    """The thermal world seen through the smoke, in VIS pixel coordinates: (480, 640) float32."""
    check_scene(scene)
    world = world_of(seed)
    thermal = world.thermal_bg.copy()
    if scene == "target":
        _draw_target(np.zeros((*thermal.shape, 3), np.uint8), thermal, t_s)
        return thermal
    world.draw_objects(None, thermal, t_s)
    trans = np.exp(-_K_IR * world.smoke_density(t_s, smoke))
    return thermal * trans + _AIRLIGHT_IR * (1 - trans)


def render_ir(t_s: float, seed: int = 0, scene: str = "smoke", smoke: float = 1.0) -> np.ndarray:
    """IR frame at t_s: (256, 320) uint8. The thermal world warped by TRUE_IR_FROM_VIS."""
    thermal = render_thermal_vis_coords(t_s, seed, scene, smoke)
    # LWIR optics are soft; blurring before the 0.55x warp also avoids aliasing.
    thermal = cv2.GaussianBlur(thermal, (0, 0), 1.1)
    ir = cv2.warpPerspective(thermal, TRUE_IR_FROM_VIS, IR_SIZE, flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
    if scene != "target":
        ir = ir + world_of(seed).ir_noise[_noise_index(t_s)]
    return np.clip(ir + 0.5, 0, 255).astype(np.uint8)


def render_pair(t_s: float, seed: int = 0, scene: str = "smoke", smoke: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Both cameras at the same instant t_s (seconds of scene time).

    Returns (vis_bgr (480, 640, 3) uint8, ir_gray (256, 320) uint8). scene="smoke" is the street
    in smoke (`smoke` scales its density; 0 = clear air); scene="target" is a heated 9x6-corner
    checkerboard, visible in both, for calibrating the demo rig. Raises ValueError on an
    unknown scene.
    """
    return render_vis(t_s, seed, scene, smoke), render_ir(t_s, seed, scene, smoke)


def check_scene(scene: str) -> None:
    """ValueError unless `scene` is one of SCENES."""
    if scene not in SCENES:
        raise ValueError(f"synthetic: scene must be one of {SCENES}, got {scene!r}")
