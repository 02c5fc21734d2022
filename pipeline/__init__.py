"""Streaming runtime: everything between the stages, nothing inside them.

- packet.py    the one message type (Packet)
- codec.py     Packet <-> multipart message: JSON header + raw buffers, versioned, never pickled
- transport.py endpoint strings (push+bind:ipc://...), Defaults, senders/receivers with a queue policy
- config.py    YAML -> *Config dataclasses with errors that name file and key
- graph.py     the pipeline's sections and the node specs (endpoints, edge policies) built from them
- worker.py    the loop around one stage (thread or process): receive, process, send, report
- runner.py    starts, watches and stops the nodes; one shutdown path; exit codes
- telemetry.py status line, exit summary
- ops.py       the HTTP server: Prometheus /metrics, /health, the live view (liveview.html)
- security.py  CURVE keys and authentication for tcp endpoints (python -m pipeline keys)
See docs/streaming.md and docs/operations.md.
"""
