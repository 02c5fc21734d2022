"""The contract between the runtime and a stage: what every source, stage and sink class declares.

    class FusionStage:
        Config = FusionConfig            # its config section, built by common.schema.build
        inputs = ("pairs",)              # input ports, one socket each
        outputs = ("fused",)             # output ports
        batched = True                   # process_batch() takes up to Config.max_batch packets

        def __init__(self, config): ...  # no I/O
        def start(self) -> None: ...     # acquire (open files, load models)
        def process(self, packet) -> list[Packet]: ...
        def finish(self) -> list[Packet]: ...   # end of stream: what is still held
        def stop(self) -> None: ...      # release; idempotent
        def stats(self) -> dict: ...     # JSON-able counters for telemetry

The worker (pipeline.worker) runs any such class without knowing what it is: it never passes an
end-of-stream packet to process(); it calls finish() once the last upstream ended and forwards one
end-of-stream itself. A class with no inputs is a source (read() instead of process()); one with
no outputs is a sink (process() returns []).
"""
from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

from pipeline.packet import Packet


@runtime_checkable
class Node(Protocol):
    """What every source, stage and sink declares and does."""
    Config: ClassVar[type]                # the *Config dataclass of its section
    inputs: ClassVar[tuple[str, ...]]     # input port names (sources: ())
    outputs: ClassVar[tuple[str, ...]]    # output port names (sinks: ())

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def stats(self) -> dict: ...


@runtime_checkable
class Source(Node, Protocol):
    """A camera, a file, a folder, a generator: turns a medium into frame packets."""

    def read(self, timeout_s: float) -> Packet | None:
        """The next packet; None if none came within timeout_s; an eos packet once at the end."""


@runtime_checkable
class Sink(Node, Protocol):
    """Packets in: process() consumes one and returns [] (a recorder, an image dump)."""

    def process(self, packet: Packet) -> list[Packet]: ...

    def finish(self) -> list[Packet]:
        """End of stream: flush, and return what is still held (a sink: [])."""


@runtime_checkable
class Stage(Sink, Protocol):
    """Packets in, packets out. A `batched` stage also has process_batch(packets) -> list."""
    batched: ClassVar[bool]


def role_of(cls: type) -> str:
    """'source' (no inputs), 'sink' (no outputs) or 'stage', from the class's declared ports."""
    ins, outs = getattr(cls, "inputs", None), getattr(cls, "outputs", None)
    if not isinstance(ins, tuple) or not isinstance(outs, tuple) or not hasattr(cls, "Config"):
        raise TypeError(f"{cls.__name__}: a stage class declares Config, inputs and outputs "
                        f"(tuples of port names); see pipeline/stage.py")
    if not ins:
        return "source"
    return "sink" if not outs else "stage"


def check_outputs(name: str, outs: Any) -> list[Packet]:
    """`outs` if it is a list of packets, else a TypeError naming the node (the contract is strict)."""
    if not isinstance(outs, list) or not all(isinstance(p, Packet) for p in outs):
        raise TypeError(f"{name}: process()/finish() must return a list of Packets, got {type(outs).__name__}")
    return outs
