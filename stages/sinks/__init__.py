"""Sinks: the end of the pipeline (recording, debugging dumps). process() returns None."""
