"""The wheel: one ``py3-none-<platform>`` file for every CPython, built by the
in-tree backend over meson-python (docs/decisions/0007-one-wheel-per-platform.md)."""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.machinery
import importlib.util
import io
import os
import platform
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHEPHERD = "netrunner/netrunner-shepherd"


def backend() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_backend", ROOT / "tools" / "build_backend.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel ``pip wheel`` builds from this tree (offline: meson-python and
    meson come from the test environment)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps", "-w", str(out), str(ROOT)],
        check=True, env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"},
    )
    [built] = out.glob("*.whl")
    return built


def record_problems(path: Path) -> list[str]:
    """What in the wheel at ``path`` disagrees with its RECORD."""
    with zipfile.ZipFile(path) as z:
        [record] = [n for n in z.namelist() if n.endswith(".dist-info/RECORD")]
        rows = list(csv.reader(io.StringIO(z.read(record).decode())))
        problems = sorted(set(z.namelist()) ^ {row[0] for row in rows})
        for name, digest, size in rows:
            if name == record:
                continue
            data = z.read(name)
            want = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            if digest != want or int(size) != len(data):
                problems.append(name)
    return problems


def wheel_tags(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as z:
        [name] = [n for n in z.namelist() if n.endswith(".dist-info/WHEEL")]
        return [line.split(":", 1)[1].strip() for line in z.read(name).decode().splitlines()
                if line.startswith("Tag:")]


def test_the_wheel_is_py3_none_platform(wheel: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        z.extract(SHEPHERD, tmp_path)
        mode = z.getinfo(SHEPHERD).external_attr >> 16
    # readelf comes with the toolchain that built the shepherd; a program
    # interpreter (the dynamic loader) means it needs the system's C library
    headers = subprocess.run(["readelf", "-lW", str(tmp_path / SHEPHERD)], capture_output=True, text=True,
                             check=True).stdout
    static = "INTERP" not in headers
    arch = platform.machine()
    plat = f"manylinux_2_17_{arch}" if static else f"linux_{arch}"
    assert re.fullmatch(rf"pynetrunner-[^-]+-py3-none-{plat}\.whl", wheel.name), wheel.name
    assert wheel_tags(wheel) == [f"py3-none-{plat}"]
    assert mode & 0o111 == 0o111, oct(mode)  # the shepherd stays executable
    assert record_problems(wheel) == []


def test_the_wheel_carries_the_license(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        [license_file] = [n for n in z.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        assert z.read(license_file) == (ROOT / "LICENSE").read_bytes()
        [metadata] = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        assert "License-File: LICENSE" in z.read(metadata).decode().splitlines()


def rebuilt(wheel: Path, directory: Path, replace: dict[str, bytes]) -> Path:
    """A copy of ``wheel`` tagged as meson-python tags it, with some files replaced or added."""
    copy = directory / re.sub(r"-py3-none-[^-]+\.whl$", f"-cp311-cp311-linux_{platform.machine()}.whl", wheel.name)
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(copy, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, replace.pop(info.filename, src.read(info)))
        for name, data in replace.items():
            dst.writestr(name, data)
    return copy


def test_a_dynamically_linked_shepherd_keeps_the_local_platform_tag(wheel: Path, tmp_path: Path) -> None:
    dynamic = Path(shutil.which("sh") or "/bin/sh").resolve().read_bytes()
    assert dynamic[:4] == b"\x7fELF"
    copy = rebuilt(wheel, tmp_path, {SHEPHERD: dynamic})
    name = backend().retag(str(copy))
    plat = f"linux_{platform.machine()}"
    assert name.endswith(f"-py3-none-{plat}.whl"), name
    assert not copy.exists()
    assert wheel_tags(tmp_path / name) == [f"py3-none-{plat}"]
    assert record_problems(tmp_path / name) == []


def test_an_extension_module_is_refused(wheel: Path, tmp_path: Path) -> None:
    module = "netrunner/_speedups" + importlib.machinery.EXTENSION_SUFFIXES[0]
    with zipfile.ZipFile(wheel) as z:
        elf = z.read(SHEPHERD)
    copy = rebuilt(wheel, tmp_path, {module: elf})
    with pytest.raises(RuntimeError, match=r"extension modules .*_speedups.*py3-none is wrong"):
        backend().retag(str(copy))
    assert copy.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [copy.name]


SPAWN = "netrunner/netrunner-spawn.so"


def test_the_zygotes_starter_needs_nothing_of_the_system(wheel: Path, tmp_path: Path) -> None:
    # loaded into the interpreter with ctypes; like the static shepherd it
    # names no library and no loader, so the manylinux tag stays true
    with zipfile.ZipFile(wheel) as z:
        z.extract(SPAWN, tmp_path)
    dynamic = subprocess.run(["readelf", "-dW", str(tmp_path / SPAWN)], capture_output=True, text=True,
                             check=True).stdout
    assert "(NEEDED)" not in dynamic
    symbols = subprocess.run(["readelf", "--dyn-syms", "-W", str(tmp_path / SPAWN)], capture_output=True, text=True,
                             check=True).stdout
    exported = {line.split()[-1] for line in symbols.splitlines() if " GLOBAL " in line and " UND " not in line}
    undefined = [line for line in symbols.splitlines() if " UND " in line and line.split()[-1] != "UND"]
    assert exported == {"nr_spawn_zygote"}
    assert undefined == []
    assert not backend().is_extension_module(SPAWN)  # a file name Python would not import


def test_a_starter_that_needs_a_library_keeps_the_local_platform_tag(wheel: Path, tmp_path: Path) -> None:
    libc = next(Path(p) for p in ("/lib/x86_64-linux-gnu/libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6",
                                  "/usr/lib64/libc.so.6", "/lib64/libc.so.6") if Path(p).exists())
    copy = rebuilt(wheel, tmp_path, {SPAWN: libc.read_bytes()})  # a shared object with DT_NEEDED
    name = backend().retag(str(copy))
    assert name.endswith(f"-py3-none-linux_{platform.machine()}.whl"), name
