"""Thermal camera processing: 16-bit counts -> the 8-bit picture the network sees (AGC), counts ->
temperature (radiometry), flat-field-correction freezes, and a radiometric synthetic camera.

- `thermal.agc`: percentile-linear (temporally smoothed limits), plateau histogram equalisation,
  a fixed °C window; `make_agc(AgcConfig, radiometric)`.
- `thermal.radiometry`: linear or Planck (R, B, F, O) counts -> kelvin, `frame_temperatures()`.
- `thermal.ffc`: `FreezeDetector`, runs of identical frames and the count jump after them.
- `thermal.camera`: the `capture_ir.agc` / `capture_ir.radiometric` keys and the source wrapper
  that hands them to registration with every frame.
- `thermal.scene`: the demo street at 16 bit with known temperatures.

See docs/thermal.md.
"""
