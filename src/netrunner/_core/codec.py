"""Encoding and decoding of shepherd frames (sans-IO).

Invariants: every function here is pure; a record is decoded whole or
rejected with :class:`ProtocolError`; nothing is read past a record.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from . import wire
from .attrs import Changes, affinity_mask

_Z_HELLO = wire.BY_NAME["Z_HELLO"].struct
_Z_FORK = bytes([wire.BY_NAME["Z_FORK"].code])
_Z_FORKED = wire.BY_NAME["Z_FORKED"].struct
_C_SPAWN = wire.BY_NAME["C_SPAWN"].struct
_C_SPAWN_PART = wire.BY_NAME["C_SPAWN_PART"].code
_C_SIGNAL = wire.BY_NAME["C_SIGNAL"].struct
_C_STOP = wire.BY_NAME["C_STOP"].struct
_C_WINSIZE = wire.BY_NAME["C_WINSIZE"].struct
_C_CGROUP = wire.BY_NAME["C_CGROUP"].struct
_C_ATTRS = wire.BY_NAME["C_ATTRS"].struct
_RLIMIT = struct.Struct("<IQQ")
assert _RLIMIT.size == wire.ATTRS_RLIMIT_SIZE


class ProtocolError(Exception):
    """A record that does not follow docs/protocol.md."""


# --- events (shepherd/zygote -> Python) -----------------------------------------


# Named tuples: one is made for every record read, by tuple.__new__ in
# decode() (no Python-level __init__ runs).


class Hello(NamedTuple):
    version: int
    digest: int
    pid: int


class Forked(NamedTuple):
    pid: int
    error: int


class Started(NamedTuple):
    pid: int


class ExecFailed(NamedTuple):
    error: int
    stage: int


class Exited(NamedTuple):
    status: int
    utime_us: int
    stime_us: int
    maxrss_kb: int
    flags: int = 0
    peak_memory: int = 0


class ShepherdFault(NamedTuple):
    code: int
    error: int


class Stopped(NamedTuple):
    signo: int


Event = Hello | Forked | Started | ExecFailed | Exited | ShepherdFault | Stopped

_DECODERS: dict[int, type] = {
    wire.BY_NAME["Z_HELLO"].code: Hello,
    wire.BY_NAME["Z_FORKED"].code: Forked,
    wire.BY_NAME["S_STARTED"].code: Started,
    wire.BY_NAME["S_EXEC_FAILED"].code: ExecFailed,
    wire.BY_NAME["S_EXITED"].code: Exited,
    wire.BY_NAME["S_ERROR"].code: ShepherdFault,
    wire.BY_NAME["S_STOPPED"].code: Stopped,
}
_STRUCTS = {code: wire.BY_CODE[code].struct for code in _DECODERS}


def decode(record: bytes) -> Event:
    """Decode one record sent by the zygote or a shepherd."""
    if not record:
        raise ProtocolError("empty record")
    code = record[0]
    cls = _DECODERS.get(code)
    if cls is None:
        raise ProtocolError(f"unknown frame type 0x{code:02x}")
    layout = _STRUCTS[code]
    if len(record) != layout.size:
        raise ProtocolError(
            f"frame {wire.BY_CODE[code].name} has {len(record)} bytes, expected {layout.size}"
        )
    event: Event = _tuple_new(cls, layout.unpack(record)[1:])
    return event


_tuple_new = tuple.__new__


# --- requests (Python -> zygote/shepherd) ---------------------------------------


def encode_fork() -> bytes:
    return _Z_FORK


def encode_signal(signo: int) -> bytes:
    return _C_SIGNAL.pack(wire.BY_NAME["C_SIGNAL"].code, signo)


def encode_stop(kill_timeout: float | None) -> bytes:
    ms = 0 if kill_timeout is None else max(1, round(kill_timeout * 1000))
    return _C_STOP.pack(wire.BY_NAME["C_STOP"].code, ms)


def encode_winsize(rows: int, cols: int) -> bytes:
    return _C_WINSIZE.pack(wire.BY_NAME["C_WINSIZE"].code, rows, cols)


def encode_cgroup(role: int, path: bytes, *, remove: bool) -> bytes:
    """One CGROUP record: a directory of the command's cgroups (absolute path)."""
    if not path.startswith(b"/") or b"\0" in path or len(path) >= wire.CGROUP_PATH_MAX:
        raise ValueError(f"a cgroup directory must be an absolute path shorter than {wire.CGROUP_PATH_MAX} bytes")
    flags = wire.CGROUP_REMOVE if remove else 0
    return _C_CGROUP.pack(wire.BY_NAME["C_CGROUP"].code, role, flags) + path + b"\0"


def encode_attrs(sent: Changes) -> bytes:
    """The C_ATTRS record giving the command these attributes. Resource
    limits are in Python's units: ``resource.RLIM_INFINITY`` (-1) becomes
    ``wire.RLIM_INFINITY``."""
    flags = umask = nice = 0
    if sent.umask is not None:
        if not 0 <= sent.umask <= 0o777:
            raise ValueError(f"a umask is between 0 and 0o777, not {sent.umask:#o}")
        flags |= wire.ATTR_UMASK
        umask = sent.umask
    if sent.nice is not None:
        if not -20 <= sent.nice <= 19:
            raise ValueError(f"a nice value is between -20 and 19, not {sent.nice}")
        flags |= wire.ATTR_NICE
        nice = sent.nice
    if len(sent.rlimits) > wire.MAX_RLIMITS:
        raise ValueError(f"{len(sent.rlimits)} resource limits; a record holds at most {wire.MAX_RLIMITS}")
    tail = [_RLIMIT.pack(resource, _wire_limit(soft), _wire_limit(hard)) for resource, soft, hard in sent.rlimits]
    if sent.affinity is not None:
        flags |= wire.ATTR_AFFINITY
        tail.append(affinity_mask(sent.affinity))
    head = _C_ATTRS.pack(wire.BY_NAME["C_ATTRS"].code, flags, umask, nice, len(sent.rlimits))
    return head + b"".join(tail)


def _wire_limit(value: int) -> int:
    if value == -1:
        return wire.RLIM_INFINITY
    if not 0 <= value <= wire.RLIM_INFINITY:
        raise ValueError(f"a resource limit is RLIM_INFINITY or between 0 and 2**64-1, not {value}")
    return value


def encode_spawn(
    argv: list[bytes],
    env: list[bytes] | tuple[bytes, ...],
    paths: list[bytes],
    cwd: bytes | None,
    *,
    detach: bool,
    kill_timeout: float,
    pty: bool = False,
    reuse: bool = False,
    stops: bool = False,
    max_record: int = wire.MAX_RECORD,
) -> list[bytes]:
    """The records of one spawn request: zero or more SPAWN_PARTs, then SPAWN."""
    strings = [*argv, *env, *paths]
    flags = (wire.FLAG_DETACH if detach else 0) | (wire.FLAG_PTY if pty else 0) | (wire.FLAG_REUSE if reuse else 0)
    if stops:
        flags |= wire.FLAG_STOPS
    if cwd is not None:
        strings.append(cwd)
        flags |= wire.FLAG_CWD
    tail = b"\0".join(strings) + b"\0"
    if len(tail) > wire.MAX_SPAWN_BYTES:
        raise ValueError(
            f"the command line and environment take {len(tail)} bytes; the limit is {wire.MAX_SPAWN_BYTES}"
        )
    head = _C_SPAWN.pack(
        wire.BY_NAME["C_SPAWN"].code, flags, round(kill_timeout * 1000), len(argv), len(env), len(paths)
    )
    room = max_record - len(head)
    if len(tail) <= room:
        return [head + tail]
    part_room = max_record - 1
    split = len(tail) - room
    records = [
        bytes([_C_SPAWN_PART]) + tail[i : min(i + part_room, split)] for i in range(0, split, part_room)
    ]
    records.append(head + tail[split:])
    return records
