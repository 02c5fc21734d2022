"""Pipeline stages: capture sources, registration, fusion, sinks. No stage imports zmq."""
