"""The shepherd wire protocol: the single source of truth.

Every message code, field layout and constant shared by Python and the C
shepherd is written here and nowhere else.  ``tools/gen_protocol.py`` renders
``src/shepherd/protocol.h`` from this module (``--check`` fails when the header
is stale), and the zygote announces :data:`PROTOCOL_DIGEST` in its first
message so that a stale binary is refused at run time.

Invariants:

* Both sockets are ``AF_UNIX``/``SOCK_SEQPACKET``: one record is one frame,
  so framing is the kernel's job and a short or long record is malformed.
* A frame is one type byte followed by the fixed fields of that type, packed
  with no padding, little-endian.  Only ``SPAWN``, ``SPAWN_PART``,
  ``CGROUP`` and ``ATTRS`` carry a variable tail after the fixed fields.
* ``ATTRS`` is sent only when the command would not inherit the caller's
  attributes from its shepherd: at most one, before ``SPAWN``; its tail is
  exactly ``nrlimits`` entries of ``ATTRS_RLIMIT_SIZE`` bytes, then the CPU
  affinity mask when ``ATTR_AFFINITY`` is set and nothing otherwise.
* A frame whose length differs from its type's fixed size (or, for the tails,
  is shorter) is malformed; the receiver never reads past the record.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

#: 7: shepherds are cloned with CLONE_FS and share the zygote's cwd, root and
#: umask -- the interpreter's, when it started the zygote sharing them -- so
#: Python sends no umask (ADR 6). A version 6 shepherd would look the same on
#: the wire and give commands a stale umask: the version refuses it.
#: 8: FLAG_STOPS and S_STOPPED (the command line's job control).
PROTOCOL_VERSION = 8

#: C type name -> (struct code, size in bytes)
FIELD_TYPES: dict[str, tuple[str, int]] = {
    "u8": ("B", 1),
    "u16": ("H", 2),
    "u32": ("I", 4),
    "i32": ("i", 4),
    "u64": ("Q", 8),
}


@dataclass(frozen=True)
class Message:
    """One frame type: its code, direction and fixed fields."""

    name: str
    code: int
    direction: str  # "to_zygote", "from_zygote", "to_shepherd", "from_shepherd"
    fields: tuple[tuple[str, str], ...]
    tail: bool = False  # a variable-length byte tail follows the fixed fields
    doc: str = ""

    @property
    def struct(self) -> struct.Struct:
        return struct.Struct("<B" + "".join(FIELD_TYPES[t][0] for _, t in self.fields))

    @property
    def size(self) -> int:
        """Size of the type byte plus the fixed fields."""
        return 1 + sum(FIELD_TYPES[t][1] for _, t in self.fields)


MESSAGES: tuple[Message, ...] = (
    # --- zygote socket -------------------------------------------------------
    Message(
        "Z_HELLO", 0x01, "from_zygote",
        (("version", "u32"), ("digest", "u32"), ("pid", "i32")),
        doc="First record on the zygote socket: protocol version, table digest, zygote pid.",
    ),
    Message(
        "Z_FORK", 0x02, "to_zygote", (),
        doc="Fork one shepherd. Carries exactly 1 fd (SCM_RIGHTS): the shepherd's control socket.",
    ),
    Message(
        "Z_FORKED", 0x03, "from_zygote",
        (("pid", "i32"), ("error", "i32")),
        doc="Reply to Z_FORK: the shepherd's pid (a child of the zygote's parent), or 0 and an errno.",
    ),
    # --- control socket, Python -> shepherd ----------------------------------
    Message(
        "C_SPAWN", 0x10, "to_shepherd",
        (("flags", "u32"), ("kill_timeout_ms", "u32"), ("argc", "u32"), ("envc", "u32"),
         ("npaths", "u32")),
        tail=True,
        doc=(
            "Start the command. Carries exactly SPAWN_FDS fds (SCM_RIGHTS): stdin, stdout, stderr "
            "and the working directory to start from. The tail (after any SPAWN_PART tails) holds "
            "argc argv strings, "
            "envc environment strings, npaths executable paths to try in order, then the cwd "
            "if FLAG_CWD is set; each string NUL-terminated, nothing after the last."
        ),
    ),
    Message(
        "C_SPAWN_PART", 0x11, "to_shepherd", (), tail=True,
        doc="A leading piece of the SPAWN tail, for requests larger than one record.",
    ),
    Message(
        "C_CGROUP", 0x15, "to_shepherd", (("role", "u32"), ("flags", "u32")), tail=True,
        doc=(
            "Before SPAWN (at most MAX_CGROUPS of them): one cgroup directory of the command. The "
            "tail is its absolute path, NUL-terminated, shorter than CGROUP_PATH_MAX. CGROUP_V2: the "
            "command's cgroup-v2 directory (membership, cgroup.kill, cgroup.events, cpu.stat, "
            "memory.peak and memory.events when present); CGROUP_V1: a cgroup-v1 directory the "
            "command joins (CGROUP_MEMORY_V1 for the memory controller's: memory.max_usage_in_bytes, "
            "memory.oom_control); CGROUP_PARENT: a directory that is only to be removed. "
            "CGROUP_REMOVE: netrunner created it; the shepherd removes it once the tree is gone "
            "(in the reverse order of the records), and also when it ends without starting the "
            "command. The command writes itself into every member directory's cgroup.procs before "
            "it execs; a failure is S_EXEC_FAILED with STAGE_CGROUP."
        ),
    ),
    Message(
        "C_ATTRS", 0x16, "to_shepherd",
        (("flags", "u32"), ("umask", "u32"), ("nice", "i32"), ("nrlimits", "u32")),
        tail=True,
        doc=(
            "Before SPAWN (at most one): the attributes the command is to have where they differ "
            "from its shepherd's, applied by the clone child right before execve. ATTR_UMASK: umask "
            "(0-0777); ATTR_NICE: nice (-20..19; a refused lowering, EACCES, is ignored); "
            "ATTR_AFFINITY: the tail ends with a CPU affinity mask (1..AFFINITY_MAX_BYTES bytes, "
            "CPU n is bit n%8 of byte n/8; EINVAL, no CPU of its cpuset, is ignored). A "
            "field whose flag is clear is 0. The tail starts with nrlimits (at most MAX_RLIMITS) "
            "resource limits of ATTRS_RLIMIT_SIZE bytes each: u32 resource, u64 soft, u64 hard "
            "(RLIM_INFINITY as 2**64-1), set with prlimit. A failure is S_EXEC_FAILED with "
            "STAGE_ATTRS."
        ),
    ),
    Message(
        "C_SIGNAL", 0x12, "to_shepherd", (("signo", "u32"),),
        doc="Send a signal to the command's process group (ignored once the command is reaped).",
    ),
    Message(
        "C_STOP", 0x13, "to_shepherd", (("kill_timeout_ms", "u32"),),
        doc="Stop the tree: SIGTERM everything, wait kill_timeout_ms (0: the SPAWN value), SIGKILL.",
    ),
    Message(
        "C_WINSIZE", 0x14, "to_shepherd", (("rows", "u16"), ("cols", "u16")),
        doc="Resize the command's terminal (pty only; ignored otherwise).",
    ),
    # --- control socket, shepherd -> Python ----------------------------------
    Message(
        "S_STARTED", 0x20, "from_shepherd", (("pid", "i32"),),
        doc=(
            "execve succeeded (or, rarely, the command was stopped before its exec was over: "
            "S_EXITED then follows); pid is the command's pid and process group id. Carries exactly 1 fd "
            "(SCM_RIGHTS): a pidfd of the command, made by the clone that created it, so it "
            "names that process and no other for as long as it is open."
        ),
    ),
    Message(
        "S_EXEC_FAILED", 0x21, "from_shepherd", (("error", "i32"), ("stage", "u32")),
        doc="The command could not be started: errno and the STAGE_* that failed. The shepherd exits.",
    ),
    Message(
        "S_EXITED", 0x22, "from_shepherd",
        (("status", "i32"), ("utime_us", "u64"), ("stime_us", "u64"), ("maxrss_kb", "u64"),
         ("flags", "u32"), ("peak_memory", "u64")),
        doc=(
            "The command's raw wait status and the rusage of every process the shepherd reaped "
            "(summed CPU, largest max RSS), and EXITED_* flags. With a cgroup, the CPU times are the "
            "cgroup's (the whole tree's) when its cpu.stat could be read, and peak_memory holds the "
            "cgroup's peak memory in bytes when EXITED_PEAK_MEMORY is set (else 0). Sent once the "
            "tree is gone (or, with EXITED_ABANDONED, once all that could be found of it is) and the "
            "cgroup directories netrunner created are removed; the shepherd then exits -- or, with "
            "EXITED_REUSABLE (only after FLAG_REUSE), stays and serves the next command sent on "
            "this socket."
        ),
    ),
    Message(
        "S_ERROR", 0x23, "from_shepherd", (("code", "u32"), ("error", "i32")),
        doc="A protocol or system error (ERR_*, errno); the shepherd stops the tree and exits.",
    ),
    Message(
        "S_STOPPED", 0x24, "from_shepherd", (("signo", "u32"),),
        doc=(
            "FLAG_STOPS only: the command (the process the shepherd started) was stopped by signal "
            "signo (a terminal's SIGTSTP, SIGTTIN or SIGTTOU, or SIGSTOP); once per stop, after "
            "S_STARTED and before S_EXITED, while no stop of the tree is under way."
        ),
    ),
)

# C_SPAWN flags
FLAG_DETACH = 0x1  # leftovers="detach"
FLAG_CWD = 0x2  # the tail ends with a cwd (relative to the directory fd)
FLAG_PTY = 0x4  # fds 0-2 are a PTY slave: a new session, with it as the controlling terminal
FLAG_REUSE = 0x8  # the owner takes the shepherd back: it may stay after S_EXITED (EXITED_REUSABLE)
FLAG_STOPS = 0x10  # report the command's stops (S_STOPPED)

# S_EXEC_FAILED stages
STAGE_SETUP = 1  # dup2, setpgid, prctl, signal reset
STAGE_CHDIR = 2
STAGE_EXEC = 3
STAGE_CGROUP = 4  # joining a cgroup (opening or writing its cgroup.procs)
STAGE_ATTRS = 5  # giving the command the attributes of a C_ATTRS record

# C_ATTRS flags
ATTR_UMASK = 0x1  # the umask field is the command's umask
ATTR_NICE = 0x2  # the nice field is the command's nice value
ATTR_AFFINITY = 0x4  # the tail ends with the command's CPU affinity mask

# C_CGROUP roles and flags
CGROUP_V2 = 1  # the command's cgroup-v2 directory (at most one)
CGROUP_V1 = 2  # a cgroup-v1 directory the command joins
CGROUP_MEMORY_V1 = 3  # the cgroup-v1 memory controller's directory the command joins
CGROUP_PARENT = 4  # not joined: only removed (with CGROUP_REMOVE) after the directories below it
CGROUP_REMOVE = 0x1  # netrunner created the directory: remove it at the end

# S_EXITED flags
EXITED_SCAN_FAILED = 0x1  # /proc could not be used to find descendants (missing, foreign, restricted)
EXITED_ABANDONED = 0x2  # descendants that could not be found were left running
EXITED_CGROUP = 0x4  # the command ran in a cgroup (so EXITED_OOM_KILLED is meaningful)
EXITED_OOM_KILLED = 0x8  # the cgroup's memory limit killed a process of the tree
EXITED_PEAK_MEMORY = 0x10  # peak_memory holds the cgroup's peak memory
EXITED_CGROUP_KEPT = 0x20  # a directory netrunner created could not be removed
EXITED_REUSABLE = 0x40  # FLAG_REUSE and no child left: the shepherd stays, idle, for the next command (or a hang-up)

# Shepherd exit codes (what Python's waitpid sees)
EXIT_OK = 0  # the tree is gone (or the idle shepherd was not needed)
EXIT_USAGE = 64  # bad command line
EXIT_PROTOCOL = 76  # the peer broke protocol
EXIT_SYSTEM = 71  # a system call failed (the control socket's included: not a hang-up)
EXIT_SIGNALLED = 128  # + the signal's number: SIGTERM, SIGINT, SIGHUP or SIGQUIT ended it before or after a command

# S_ERROR codes
ERR_MALFORMED = 1  # a frame of the wrong size or an unknown type
ERR_UNEXPECTED = 2  # a valid frame at the wrong time
ERR_TOO_LARGE = 3  # the SPAWN request exceeds MAX_SPAWN_BYTES
ERR_SYSTEM = 4  # a system call failed; error holds errno

#: Largest accepted SPAWN request (all tails together).
MAX_SPAWN_BYTES = 64 * 1024 * 1024
#: Largest record either side sends or accepts on a control socket.
MAX_RECORD = 65536
#: Most C_CGROUP records before one SPAWN.
MAX_CGROUPS = 32
#: Longest C_CGROUP path, its NUL included (PATH_MAX).
CGROUP_PATH_MAX = 4096
#: Most resource limits in one C_ATTRS record.
MAX_RLIMITS = 64
#: Size of one resource limit in a C_ATTRS tail: u32 resource, u64 soft, u64 hard.
ATTRS_RLIMIT_SIZE = 20
#: Longest CPU affinity mask in a C_ATTRS tail (8192 CPUs).
AFFINITY_MAX_BYTES = 1024
#: RLIM_INFINITY as a C_ATTRS resource limit (Python spells it resource.RLIM_INFINITY, -1).
RLIM_INFINITY = 2**64 - 1
#: Number of fds attached to Z_FORK (the control socket).
ZYGOTE_FDS = 1
#: Number of fds attached to C_SPAWN: stdin, stdout, stderr, working directory.
SPAWN_FDS = 4
#: Number of fds attached to S_STARTED: the command's pidfd.
STARTED_FDS = 1

CONSTANTS: tuple[tuple[str, int], ...] = (
    ("PROTOCOL_VERSION", PROTOCOL_VERSION),
    ("FLAG_DETACH", FLAG_DETACH),
    ("FLAG_CWD", FLAG_CWD),
    ("FLAG_PTY", FLAG_PTY),
    ("FLAG_REUSE", FLAG_REUSE),
    ("FLAG_STOPS", FLAG_STOPS),
    ("STAGE_SETUP", STAGE_SETUP),
    ("STAGE_CHDIR", STAGE_CHDIR),
    ("STAGE_EXEC", STAGE_EXEC),
    ("STAGE_CGROUP", STAGE_CGROUP),
    ("STAGE_ATTRS", STAGE_ATTRS),
    ("ATTR_UMASK", ATTR_UMASK),
    ("ATTR_NICE", ATTR_NICE),
    ("ATTR_AFFINITY", ATTR_AFFINITY),
    ("CGROUP_V2", CGROUP_V2),
    ("CGROUP_V1", CGROUP_V1),
    ("CGROUP_MEMORY_V1", CGROUP_MEMORY_V1),
    ("CGROUP_PARENT", CGROUP_PARENT),
    ("CGROUP_REMOVE", CGROUP_REMOVE),
    ("EXITED_SCAN_FAILED", EXITED_SCAN_FAILED),
    ("EXITED_ABANDONED", EXITED_ABANDONED),
    ("EXITED_CGROUP", EXITED_CGROUP),
    ("EXITED_OOM_KILLED", EXITED_OOM_KILLED),
    ("EXITED_PEAK_MEMORY", EXITED_PEAK_MEMORY),
    ("EXITED_CGROUP_KEPT", EXITED_CGROUP_KEPT),
    ("EXITED_REUSABLE", EXITED_REUSABLE),
    ("EXIT_OK", EXIT_OK),
    ("EXIT_USAGE", EXIT_USAGE),
    ("EXIT_PROTOCOL", EXIT_PROTOCOL),
    ("EXIT_SYSTEM", EXIT_SYSTEM),
    ("EXIT_SIGNALLED", EXIT_SIGNALLED),
    ("ERR_MALFORMED", ERR_MALFORMED),
    ("ERR_UNEXPECTED", ERR_UNEXPECTED),
    ("ERR_TOO_LARGE", ERR_TOO_LARGE),
    ("ERR_SYSTEM", ERR_SYSTEM),
    ("MAX_SPAWN_BYTES", MAX_SPAWN_BYTES),
    ("MAX_RECORD", MAX_RECORD),
    ("MAX_CGROUPS", MAX_CGROUPS),
    ("CGROUP_PATH_MAX", CGROUP_PATH_MAX),
    ("MAX_RLIMITS", MAX_RLIMITS),
    ("ATTRS_RLIMIT_SIZE", ATTRS_RLIMIT_SIZE),
    ("AFFINITY_MAX_BYTES", AFFINITY_MAX_BYTES),
    ("ZYGOTE_FDS", ZYGOTE_FDS),
    ("SPAWN_FDS", SPAWN_FDS),
    ("STARTED_FDS", STARTED_FDS),
)


def canonical_table() -> str:
    """A stable text rendering of every code, layout and constant."""
    lines = [f"{name}={value}" for name, value in CONSTANTS]
    for m in MESSAGES:
        fields = ",".join(f"{n}:{t}" for n, t in m.fields)
        lines.append(f"{m.name}={m.code}:{m.direction}:{fields}:{'tail' if m.tail else ''}")
    return "\n".join(lines) + "\n"


#: First 32 bits of the SHA-256 of :func:`canonical_table`.
PROTOCOL_DIGEST: int = int.from_bytes(
    hashlib.sha256(canonical_table().encode()).digest()[:4], "little"
)

BY_NAME: dict[str, Message] = {m.name: m for m in MESSAGES}
BY_CODE: dict[int, Message] = {m.code: m for m in MESSAGES}
