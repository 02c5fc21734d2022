"""Streaming runtime: packet + wire codec, transport, runner, config schema, telemetry."""
