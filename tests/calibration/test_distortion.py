"""The registration benchmark's same-content reference shows what the distorted VIS shows.

bench/bench_registration.py --coverage (calibration/distortion.py) compares the estimate on a distorted pair with the
estimate on the undistorted pair cut to the same scene content; that comparison is only fair
if the cut keeps exactly the part of the scene the distorted frame still shows.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from calib_synth import textured_scene
from calibration.distortion import random_homography, same_content


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_content_keeps_what_the_distorted_frame_shows(seed):
    rng = np.random.default_rng(seed)
    size = (320, 240)
    vis = np.clip(textured_scene(size, rng).astype(np.int16) + 1, 1, 255).astype(np.uint8)  # no zeros
    g = random_homography(size, rng)
    cut = same_content(vis, g)
    # Distorting the cut image gives the distorted image back (away from the frame's edge,
    # where bilinear sampling mixes in a neighbour): nothing the distorted frame shows is lost.
    a = cv2.warpPerspective(vis, g, size, flags=cv2.INTER_LINEAR)
    b = cv2.warpPerspective(cut, g, size, flags=cv2.INTER_LINEAR)
    full = cv2.warpPerspective(np.full(vis.shape, 255, np.uint8), g, size, flags=cv2.INTER_NEAREST)
    inner = cv2.erode(full, np.ones((5, 5), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0
    assert np.array_equal(a[inner], b[inner])
    # And what it blanks is what the distortion pushed out of view: those pixels map outside.
    ys, xs = np.nonzero(cut == 0)
    assert len(xs) > 0.01 * vis.size  # these distortions always crop something
    p = cv2.perspectiveTransform(np.stack([xs, ys], 1).astype(np.float64)[None], g)[0]
    w, h = size
    outside = (p[:, 0] < -0.5) | (p[:, 0] > w - 0.5) | (p[:, 1] < -0.5) | (p[:, 1] > h - 0.5)
    assert outside.mean() > 0.98
