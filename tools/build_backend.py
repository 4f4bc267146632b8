"""The build backend: meson-python, with one wheel per platform.

netrunner has no extension module; its native files are the shepherd, a
program, and ``netrunner-spawn.so``, which the interpreter loads with ctypes
to start the zygote; neither links Python. meson-python tags any wheel with
files in ``platlib`` for the building interpreter
(``cp311-cp311-linux_x86_64``), so each CPython would need its own wheel.
This backend lets meson-python build the wheel, then retags it
``py3-none-<platform>``:

* native files that need nothing of the system (no ``PT_INTERP``, no
  ``DT_NEEDED``: no C library, no loader) get ``manylinux_2_17_<arch>``,
  the oldest policy every architecture has (``auditwheel show`` agrees, or
  finds an older one);
* one linked dynamically, or another system, keeps meson-python's platform
  tag (``linux_x86_64``...): right for the machine that built it, not for
  publishing.

Only the ``WHEEL`` file's ``Tag`` lines, the ``RECORD`` line of ``WHEEL`` and
the file name change; every other entry is copied as it is (the shepherd's
mode bits included). A wheel with a Python extension module is refused: it
would be tagged wrongly. Editable installs and the sdist are meson-python's,
unchanged (docs/decisions/0007-one-wheel-per-platform.md).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.machinery
import io
import os
import struct
import zipfile
from typing import Any

from mesonpy import (  # re-exported: the rest of the PEP 517 / 660 hooks
    build_editable,
    build_sdist,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
)
from mesonpy import build_wheel as _mesonpy_build_wheel

__all__ = [
    "build_editable",
    "build_sdist",
    "build_wheel",
    "get_requires_for_build_editable",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
]

PT_DYNAMIC = 2
PT_INTERP = 3
DT_NEEDED = 1
MANYLINUX = "manylinux_2_17"


def build_wheel(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    name = _mesonpy_build_wheel(wheel_directory, config_settings, metadata_directory)
    return retag(os.path.join(wheel_directory, name))


def retag(path: str) -> str:
    """Retag the wheel at ``path`` ``py3-none-<platform>``; return its new file name."""
    directory, name = os.path.split(path)
    dist, version, _python, _abi, platform = name[: -len(".whl")].split("-")
    dist_info = f"{dist}-{version}.dist-info/"
    with zipfile.ZipFile(path) as wheel:
        entries = [(info, wheel.read(info)) for info in wheel.infolist()]
    native = [(info.filename, data) for info, data in entries if data[:4] == b"\x7fELF"]
    modules = [n for n, _ in native if is_extension_module(n)]
    if modules:
        raise RuntimeError(f"the wheel has Python extension modules {modules}: py3-none is wrong for it")
    if native and platform.startswith("linux_") and all(is_static(data) for _, data in native):
        platform = f"{MANYLINUX}_{platform[len('linux_'):]}"
    tag = f"py3-none-{platform}"
    new_name = f"{dist}-{version}-{tag}.whl"

    record_name = dist_info + "RECORD"
    wheel_name = dist_info + "WHEEL"
    rows: list[list[str]] = []
    tmp = os.path.join(directory, f".{new_name}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
        for info, data in entries:
            if info.filename == record_name:
                continue
            if info.filename == wheel_name:
                data = retag_wheel_file(data, tag)
            out.writestr(info, data)
            rows.append([info.filename, record_hash(data), str(len(data))])
        rows.append([record_name, "", ""])
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(rows)
        record = next(info for info, _ in entries if info.filename == record_name)
        out.writestr(record, text.getvalue().encode())
    os.replace(tmp, os.path.join(directory, new_name))
    if new_name != name:
        os.unlink(path)
    return new_name


def retag_wheel_file(data: bytes, tag: str) -> bytes:
    lines = [line for line in data.decode().splitlines() if not line.startswith("Tag:")]
    return ("\n".join([*lines, f"Tag: {tag}"]) + "\n").encode()


def record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def is_extension_module(name: str) -> bool:
    """Whether Python would import the file ``name`` as a module: an
    identifier, then an extension suffix (``netrunner-spawn.so`` is not)."""
    base = name.rsplit("/", 1)[-1]
    return any(
        base.endswith(suffix) and base[: -len(suffix)].isidentifier()
        for suffix in importlib.machinery.EXTENSION_SUFFIXES
    )


def is_static(elf: bytes) -> bool:
    """True when the ELF image needs nothing of the system: it asks for no
    program interpreter (dynamic loader) and names no shared library."""
    bits, order = elf[4], elf[5]
    endian = "<" if order == 1 else ">"
    if bits == 2:  # ELFCLASS64: p_type, p_flags, p_offset, ..., p_filesz; d_tag, d_val of 8 bytes
        phoff, = struct.unpack_from(endian + "Q", elf, 0x20)
        phentsize, phnum = struct.unpack_from(endian + "HH", elf, 0x36)
        segment, entry = endian + "I4xQ16xQ", endian + "qQ"
    else:  # p_type, p_offset, p_vaddr, p_paddr, p_filesz; d_tag, d_val of 4 bytes
        phoff, = struct.unpack_from(endian + "I", elf, 0x1C)
        phentsize, phnum = struct.unpack_from(endian + "HH", elf, 0x2A)
        segment, entry = endian + "II8xI", endian + "iI"
    for i in range(phnum):
        p_type, offset, size = struct.unpack_from(segment, elf, phoff + i * phentsize)
        if p_type == PT_INTERP:
            return False
        if p_type == PT_DYNAMIC:
            step = struct.calcsize(entry)
            tags = (struct.unpack_from(entry, elf, at)[0] for at in range(offset, offset + size - step + 1, step))
            if DT_NEEDED in tags:
                return False
    return True
