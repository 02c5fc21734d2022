"""Pre- and post-processing as torch functions, so they run on the GPU next to the model.

    vis_y, ir_y, crcb, (h, w) = prepare_pairs(vis_u8, ir_u8, multiple=2, ir_from_vis=M)
    fused_y = model(vis_y, ir_y)                    # (B, 1, Hp, Wp)
    bgr_u8 = finish(fused_y, crcb, h, w)            # (B, h, w, 3) uint8

Why: at 640x512 the OpenCV path (BGR->YCrCb, warp, float conversion, padding, and the way back)
costs a few ms of CPU per pair, which at GPU speeds would make the CPU the bottleneck. Uploading
the uint8 frames (4x fewer bytes than float32) and doing the rest on the device removes that.

Every function matches the OpenCV path the Fuser and the registration stage use within one grey
level (tests/lmfusion/test_engines.py checks it on the CPU): cv2.COLOR_BGR2YCrCb /
COLOR_YCrCb2BGR (8-bit) and cv2.warpPerspective(INTER_LINEAR, BORDER_CONSTANT 0). OpenCV's
warp quantises sample positions to 1/32 px, so at edges steeper than ~30 grey levels per pixel
the two can differ by more than one level; on camera images that is a few pixels per frame.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError

# ITU-R BT.601 as OpenCV's 8-bit YCrCb (cv2.COLOR_BGR2YCrCb), in grey levels.
# Forward: OpenCV's fixed-point form (coefficients * 2^14): Y = 0.299 R + 0.587 G + 0.114 B,
# Cr = (R - Y) * 0.713 + 128, Cb = (B - Y) * 0.564 + 128, each rounded half up.
_SHIFT = 14
_HALF = 1 << (_SHIFT - 1)
_DELTA = (128 << _SHIFT) + _HALF
_Y_R, _Y_G, _Y_B, _CR_I, _CB_I = 4899, 9617, 1868, 11682, 9241
# Back (float, rounded): R = Y + 1.403 Cr', G = Y - 0.714 Cr' - 0.344 Cb', B = Y + 1.773 Cb'.
_R_CR, _G_CR, _G_CB, _B_CB = 1.403, -0.714, -0.344, 1.773


def bgr_to_ycrcb(bgr: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) BGR, uint8 or float in [0, 255] (rounded first) -> (B, 3, H, W) float32
    YCrCb in [0, 255], bit-exact with OpenCV's 8-bit cv2.COLOR_BGR2YCrCb.

    Integer arithmetic with OpenCV's 14-bit fixed-point coefficients, so the chroma is exact:
    an error of one level in Cb becomes 1.8 levels of blue on the way back.
    """
    if bgr.ndim != 4 or bgr.shape[1] != 3:
        raise InputError(f"bgr: expected (B, 3, H, W), got {tuple(bgr.shape)}")
    x = bgr.round().to(torch.int32) if bgr.is_floating_point() else bgr.to(torch.int32)
    b, g, r = x[:, 0], x[:, 1], x[:, 2]
    y = (r * _Y_R + g * _Y_G + b * _Y_B + _HALF) >> _SHIFT
    cr = ((r - y) * _CR_I + _DELTA) >> _SHIFT
    cb = ((b - y) * _CB_I + _DELTA) >> _SHIFT
    return torch.stack([y, cr, cb], dim=1).clamp(0, 255).float()


def ycrcb_to_bgr(ycc: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) YCrCb float in [0, 255] -> (B, 3, H, W) uint8 BGR (cv2.COLOR_YCrCb2BGR)."""
    if ycc.ndim != 4 or ycc.shape[1] != 3:
        raise InputError(f"ycc: expected (B, 3, H, W), got {tuple(ycc.shape)}")
    y, cr, cb = ycc[:, 0], ycc[:, 1] - 128.0, ycc[:, 2] - 128.0
    r = y + _R_CR * cr
    g = y + _G_CR * cr + _G_CB * cb
    b = y + _B_CB * cb
    return torch.stack([b, g, r], dim=1).round().clamp(0, 255).to(torch.uint8)


def warp_perspective(img: torch.Tensor, ir_from_vis: np.ndarray | torch.Tensor,
                     dsize: tuple[int, int]) -> torch.Tensor:
    """cv2.warpPerspective(img, ir_from_vis, dsize, INTER_LINEAR, BORDER_CONSTANT 0) in torch.

    img: (B, C, H, W) float (VIS geometry); ir_from_vis: 3x3 mapping VIS pixel coords to IR pixel
    coords; dsize: (w, h) of the output. Returns (B, C, h, w) float, unrounded.
    """
    if img.ndim != 4:
        raise InputError(f"img: expected (B, C, H, W), got {tuple(img.shape)}")
    B, _, H, W = img.shape
    w, h = dsize
    m = torch.as_tensor(np.asarray(ir_from_vis, dtype=np.float64)).to(img.device)
    vis_from_ir = torch.linalg.inv(m)  # float64: a homography's inverse loses pixels in fp32
    ys, xs = torch.meshgrid(torch.arange(h, device=img.device, dtype=torch.float64),
                            torch.arange(w, device=img.device, dtype=torch.float64), indexing="ij")
    p = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1) @ vis_from_ir.T  # (h, w, 3)
    u, v = p[..., 0] / p[..., 2], p[..., 1] / p[..., 2]                    # VIS pixel coords
    # align_corners=True: -1 and +1 are the centres of the first and last pixels, as OpenCV's
    # integer pixel coordinates; out-of-image taps read zeros, as BORDER_CONSTANT 0.
    grid = torch.stack([u / max(W - 1, 1) * 2 - 1, v / max(H - 1, 1) * 2 - 1], dim=-1)
    grid = grid.to(img.dtype).unsqueeze(0).expand(B, h, w, 2)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """(B, C, H, W) -> reflect-padded on the bottom/right to multiples of ``multiple`` (as Fuser)."""
    ph, pw = (-x.shape[2]) % multiple, (-x.shape[3]) % multiple
    return F.pad(x, (0, pw, 0, ph), mode="reflect") if ph or pw else x


def prepare_pairs(vis: torch.Tensor, ir: torch.Tensor, multiple: int = 1,
                  ir_from_vis: np.ndarray | None = None):
    """Frames as uploaded -> the network's inputs, on the frames' device.

    vis: (B, Hv, Wv, 3) uint8 BGR or (B, Hv, Wv) uint8 gray (VIS geometry if ``ir_from_vis`` is
    given, else already registered to IR size). ir: (B, H, W) uint8.
    Returns (vis_y, ir_y) (B, 1, Hp, Wp) float32 in [0, 1] padded to ``multiple``, crcb
    (B, 2, H, W) float32 in [0, 255] or None for gray VIS, and (H, W).
    """
    if ir.ndim != 3:
        raise InputError(f"ir: expected (B, H, W) uint8, got {tuple(ir.shape)}")
    B, H, W = ir.shape
    colour = vis.ndim == 4
    v = vis.permute(0, 3, 1, 2).float() if colour else vis[:, None].float()  # (B, C, Hv, Wv)
    if ir_from_vis is not None:
        v = warp_perspective(v, ir_from_vis, (W, H)).round().clamp(0, 255)  # uint8 as cv2 gives
    if v.shape[0] != B or v.shape[2:] != (H, W):
        raise InputError(f"vis {tuple(vis.shape)} and ir {tuple(ir.shape)}: expected one batch and "
                         f"one H, W (pass ir_from_vis to warp VIS into IR geometry)")
    if colour:
        ycc = bgr_to_ycrcb(v)
        y, crcb = ycc[:, :1], ycc[:, 1:]
    else:
        y, crcb = v, None
    vis_y = pad_to_multiple(y / 255.0, multiple)
    ir_y = pad_to_multiple(ir[:, None].float() / 255.0, multiple)
    return vis_y, ir_y, crcb, (H, W)


def finish(y: torch.Tensor, crcb: torch.Tensor | None, h: int, w: int) -> torch.Tensor:
    """Network output (B, 1, Hp, Wp) in [0, 1] -> (B, h, w, 3) uint8 BGR, or (B, h, w) uint8 gray
    when ``crcb`` is None; rounding as Fuser (y * 255 + 0.5, truncated)."""
    yq = torch.floor(y[:, :, :h, :w].float().clamp(0, 1) * 255.0 + 0.5)  # (B, 1, h, w)
    if crcb is None:
        return yq[:, 0].to(torch.uint8)
    return ycrcb_to_bgr(torch.cat([yq, crcb], dim=1)).permute(0, 2, 3, 1).contiguous()


__all__ = ["bgr_to_ycrcb", "ycrcb_to_bgr", "warp_perspective", "pad_to_multiple",
           "prepare_pairs", "finish"]
