"""Capture sources: each turns a camera, file, folder or generator into frame packets."""
