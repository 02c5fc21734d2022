"""thermal.radiometry and thermal.agc: the maps, the three AGCs, and their errors."""
import numpy as np
import pytest

from thermal.agc import AgcConfig, AgcError, PercentileAgc, PlateauAgc, make_agc
from thermal.radiometry import (KELVIN, RadiometricConfig, RadiometryError, counts_to_celsius, counts_to_kelvin,
                                frame_temperatures, kelvin_to_counts)
from thermal.scene import PLANCK

LINEAR = RadiometricConfig(kind="linear", gain=0.01, offset_k=0.0)    # FLIR TLinear: centikelvin


@pytest.mark.parametrize("rc", [LINEAR, PLANCK])
def test_counts_and_kelvin_are_inverse(rc):
    t = np.array([250.0, 300.0, 307.15, 353.15, 600.0])
    if rc is LINEAR:
        t = t[t < 655]                                    # 16 bits of centikelvin end at 655 K
    assert counts_to_kelvin(np.round(kelvin_to_counts(t, rc)), rc) == pytest.approx(t, abs=0.02)


def test_linear_is_the_documented_line_and_planck_the_documented_curve():
    assert counts_to_celsius(np.array([30715]), LINEAR)[0] == pytest.approx(34.0, abs=1e-3)
    r, b, f, o = PLANCK.R, PLANCK.B, PLANCK.F, PLANCK.O
    counts = 5000.0
    assert counts_to_kelvin(np.array([counts]), PLANCK)[0] == pytest.approx(b / np.log(r / (counts - o) + f), rel=1e-6)


def test_bad_constants_name_the_key():
    with pytest.raises(ValueError, match="^B: must be > 0"):
        RadiometricConfig(kind="planck", R=1.0, B=0.0)
    with pytest.raises(ValueError, match="^gain:"):
        RadiometricConfig(kind="linear", gain=0.0)


def test_frame_temperatures_find_the_hottest_spot_and_the_percentiles():
    temp_c = np.full((64, 80), 20.0)
    temp_c[30:35, 50:57] = 150.0                          # a 7x5 hot plateau centred at (53, 32)
    temp_c[5, 5] = 60.0
    counts = np.round(kelvin_to_counts(temp_c + KELVIN, PLANCK)).astype(np.uint16)
    t = frame_temperatures(counts, PLANCK)
    assert t["max"] == pytest.approx(150.0, abs=0.05) and t["min"] == pytest.approx(20.0, abs=0.05)
    assert t["hottest"]["x"] == 53.0 and t["hottest"]["y"] == 32.0 and t["hottest"]["area_px"] == 35
    assert t["p99"] == pytest.approx(float(np.percentile(temp_c, 99)), abs=0.1)
    with pytest.raises(RadiometryError, match="uint16"):
        frame_temperatures(counts.astype(np.float32), PLANCK)


def _scene(offset=0):
    rng = np.random.default_rng(0)
    counts = rng.normal(3000 + offset, 20, (120, 160))
    counts[40:60, 50:70] = 9000 + offset                  # a small very hot object
    return np.clip(counts, 0, 65535).astype(np.uint16)


def test_percentile_agc_maps_its_percentiles_to_0_and_255_and_smooths_a_jump():
    agc = PercentileAgc(AgcConfig(mode="percentile", low_pct=1, high_pct=99, smoothing_s=1.0))
    scene = _scene()
    out = agc(scene, 0.0)
    assert out.dtype == np.uint8 and out.shape == (120, 160)
    assert agc.limits.low == pytest.approx(np.percentile(scene, 1), abs=1.0) and agc.limits.high == 9000
    assert out[scene <= agc.limits.low].max() == 0 and out[scene >= 9000].min() == 255
    assert (out == 255).mean() == pytest.approx(400 / scene.size, abs=1e-3)     # just the hot object
    # The whole scene jumps by 200 counts: the smoothed limits follow over ~1 s, not at once (no pumping).
    first = agc(_scene(200), 0.1)
    settled = [agc(_scene(200), 0.1 + 0.1 * k) for k in range(1, 60)][-1]
    assert first[0:30].mean() > settled[0:30].mean() + 5      # 200 counts = ~8 grey levels here
    assert abs(settled[0:30].mean() - out[0:30].mean()) < 1


def test_plateau_equalisation_gives_the_background_its_grey_levels():
    scene = _scene()
    plateau = PlateauAgc(AgcConfig(mode="plateau", smoothing_s=0))(scene, 0.0)
    linear = PercentileAgc(AgcConfig(mode="percentile", low_pct=0, high_pct=100, smoothing_s=0))(scene, 0.0)
    background = np.ones(scene.shape, bool)
    background[40:60, 50:70] = False
    # A linear min..max map squeezes the noisy background into a few levels under the hot object;
    # equalisation spreads it, and the hot object stays the brightest thing in the picture.
    assert plateau[background].std() > 4 * linear[background].std()
    assert plateau[~background].min() > plateau[background].max() - 1


def test_window_agc_is_a_fixed_temperature_window_and_needs_radiometry():
    agc = make_agc(AgcConfig(mode="window", window_c=[0.0, 100.0]), PLANCK)
    temp = np.array([[0.0, 50.0, 100.0, 400.0]])
    counts = np.round(kelvin_to_counts(temp + KELVIN, PLANCK)).astype(np.uint16)
    out = agc(counts, 0.0)[0].tolist()
    assert out[0] == 0 and out[1] in (127, 128) and out[2:] == [255, 255]
    with pytest.raises(AgcError, match="radiometric"):
        make_agc(AgcConfig(mode="window"))
    with pytest.raises(AgcError, match="uint16"):
        agc(counts.astype(np.uint8), 0.0)
    with pytest.raises(ValueError, match="^window_c"):
        AgcConfig(window_c=[50.0, 10.0])
