"""The application: which stages make up smokefusion's pipeline (registry.py), and run_stream.py."""
