"""cgroup discovery from mountinfo and /proc/self/cgroup texts, and the
validation of cgroup paths and limits."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from netrunner._core.cgroups import (
    Hierarchy,
    Host,
    Mount,
    check_pids,
    cpu_quota,
    locate,
    parse_keyed,
    parse_memory,
    parse_mountinfo,
    parse_proc_cgroup,
    relative,
)
from netrunner._errors import InvalidCgroup

# (a) A hybrid host (this test machine's layout): cgroup2 at .../unified, each
# v1 controller on its own hierarchy, the own memory cgroup below the root.
HYBRID_MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334492k,nr_inodes=3083623,mode=755
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
HYBRID_CGROUP = """\
9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/93cb3943274308d3633ed838aa44efdd
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
"""

# (b) A pure-v2 systemd host (optional fields before " - ").
V2_MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
24 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
"""
V2_CGROUP = "0::/user.slice/user-1000.slice/session-3.scope\n"

# (c) A container with a cgroup namespace: the v2 mount shows the namespace's
# root; v1 hierarchies bind-mounted from a host subtree show "/docker/abc".
CONTAINER_MOUNTINFO = """\
600 500 0:50 / / rw,relatime master:300 - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
610 600 0:60 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw,nsdelegate
620 600 0:61 /docker/abc /sys/fs/cgroup/memory ro,nosuid,nodev,noexec,relatime master:9 - cgroup cgroup rw,memory
621 600 0:62 /docker/abc /sys/fs/cgroup/pids ro,nosuid,nodev,noexec,relatime master:10 - cgroup cgroup rw,pids
622 600 0:63 / /sys/fs/cgroup/cpu,cpuacct ro,nosuid,nodev,noexec,relatime master:11 - cgroup cgroup rw,cpu,cpuacct
"""
CONTAINER_CGROUP = """\
12:pids:/docker/abc/worker
4:memory:/
3:cpu,cpuacct:/
0::/
"""


def test_hybrid_host() -> None:
    host = locate(HYBRID_MOUNTINFO, HYBRID_CGROUP)
    assert host.v2 == Hierarchy(Mount("/sys/fs/cgroup/unified", "/", 2, frozenset()), "/sys/fs/cgroup/unified")
    assert set(host.v1) == {"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"}
    memory = host.v1["memory"]
    assert memory.mount == Mount("/sys/fs/cgroup/memory", "/", 1, frozenset({"memory"}))
    assert memory.own == "/sys/fs/cgroup/memory/process_api/93cb3943274308d3633ed838aa44efdd"
    assert host.v1["pids"].own == "/sys/fs/cgroup/pids"
    assert host.v1["cpu"].own == "/sys/fs/cgroup/cpu"
    assert host.v1["cpuacct"].mount.mount_point == "/sys/fs/cgroup/cpuacct"


def test_hybrid_mounts_and_named_hierarchy() -> None:
    mounts = parse_mountinfo(HYBRID_MOUNTINFO)
    assert [m.mount_point for m in mounts][-2:] == ["/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"]
    assert len(mounts) == 10  # proc, sysfs, tmpfs etc. are not cgroups
    systemd = mounts[-2]
    assert systemd.version == 1
    assert systemd.controllers == frozenset()
    assert "name=systemd" not in locate(HYBRID_MOUNTINFO, HYBRID_CGROUP).v1


def test_hybrid_proc_cgroup() -> None:
    paths = parse_proc_cgroup(HYBRID_CGROUP)
    assert paths[""] == "/"
    assert paths["memory"] == "/process_api/93cb3943274308d3633ed838aa44efdd"
    assert paths["name=systemd"] == "/"
    assert len(paths) == 10


def test_pure_v2_systemd_host() -> None:
    host = locate(V2_MOUNTINFO, V2_CGROUP)
    assert host == Host(
        Hierarchy(
            Mount("/sys/fs/cgroup", "/", 2, frozenset()),
            "/sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope",
        ),
        {},
    )


def test_container_with_cgroup_namespace() -> None:
    host = locate(CONTAINER_MOUNTINFO, CONTAINER_CGROUP)
    assert host.v2 is not None
    assert host.v2.mount.root == "/"
    assert host.v2.own == "/sys/fs/cgroup"
    # The memory mount shows only /docker/abc; our cgroup "/" is outside it.
    assert host.v1["memory"].mount.root == "/docker/abc"
    assert host.v1["memory"].own is None
    # Inside the shown subtree: the remainder is appended to the mount point.
    assert host.v1["pids"].own == "/sys/fs/cgroup/pids/worker"
    # Co-mounted controllers share one hierarchy, and a comma in a mount point is fine.
    assert host.v1["cpu"] == host.v1["cpuacct"]
    assert host.v1["cpu"].mount.controllers == frozenset({"cpu", "cpuacct"})
    assert host.v1["cpu"].own == "/sys/fs/cgroup/cpu,cpuacct"


def test_own_cgroup_outside_the_namespace_is_not_visible() -> None:
    # The kernel prints ".." paths for a cgroup above the reader's namespace root.
    host = locate(V2_MOUNTINFO, "0::/../../system.slice/x.service\n")
    assert host.v2 is not None
    assert host.v2.own is None


def test_own_cgroup_at_a_mount_root_and_prefix_is_not_a_parent() -> None:
    mountinfo = "30 24 0:26 /a/b /mnt/cg rw - cgroup2 cgroup2 rw\n"
    assert locate(mountinfo, "0::/a/b\n").v2 == Hierarchy(Mount("/mnt/cg", "/a/b", 2, frozenset()), "/mnt/cg")
    host = locate(mountinfo, "0::/a/bc\n")  # "/a/bc" is not below "/a/b"
    assert host.v2 is not None
    assert host.v2.own is None
    host = locate(mountinfo, "")  # no v2 line at all
    assert host.v2 is not None
    assert host.v2.own is None


def test_mount_points_with_escapes() -> None:
    mountinfo = (
        r"40 31 0:37 /my\040jobs /mnt/cgroup\040v2\011tab\134x rw,relatime shared:5 master:1 - cgroup2 none rw"
        + "\n"
        + r"41 31 0:38 / /mnt/v1\040mem rw - cgroup cgroup rw,memory,clone_children,release_agent=/a\040b" + "\n"
    )
    v2, v1 = parse_mountinfo(mountinfo)
    assert v2 == Mount("/mnt/cgroup v2\ttab\\x", "/my jobs", 2, frozenset())
    assert v1 == Mount("/mnt/v1 mem", "/", 1, frozenset({"memory"}))
    host = locate(mountinfo, "0::/my jobs/x y\n5:memory:/m\n")
    assert host.v2 is not None
    assert host.v2.own == "/mnt/cgroup v2\ttab\\x/x y"
    assert host.v1["memory"].own == "/mnt/v1 mem/m"


def test_no_cgroup_mounts() -> None:
    mountinfo = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n23 22 0:21 / /proc rw - proc proc rw\n"
    assert parse_mountinfo(mountinfo) == []
    assert locate(mountinfo, V2_CGROUP) == Host(None, {})
    assert locate("", "") == Host(None, {})


def test_same_v2_hierarchy_mounted_twice() -> None:
    mountinfo = (
        "50 24 0:26 /user.slice /mnt/users rw - cgroup2 cgroup2 rw\n"
        "30 24 0:26 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
        "51 24 0:26 / /mnt/again rw - cgroup2 cgroup2 rw\n"
    )
    host = locate(mountinfo, V2_CGROUP)
    assert host.v2 is not None
    assert host.v2.mount.mount_point == "/sys/fs/cgroup"  # root "/" preferred, then the first
    assert host.v2.own == "/sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope"
    # None with root "/": the first.
    only_subtrees = mountinfo.splitlines()[0] + "\n52 24 0:26 /system.slice /mnt/sys rw - cgroup2 cgroup2 rw\n"
    host = locate(only_subtrees, V2_CGROUP)
    assert host.v2 is not None
    assert host.v2.mount.mount_point == "/mnt/users"
    assert host.v2.own == "/mnt/users/user-1000.slice/session-3.scope"


def test_v1_controller_mounted_twice() -> None:
    mountinfo = (
        "60 31 0:32 /x /mnt/mem-sub rw - cgroup cgroup rw,memory\n"
        "61 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
    )
    assert locate(mountinfo, "4:memory:/x/y\n").v1["memory"].own == "/sys/fs/cgroup/memory/x/y"


def test_malformed_lines_are_skipped() -> None:
    mountinfo = (
        "garbage\n"
        "\n"
        "1 2 3\n"
        "30 24 0:26 / /sys/fs/cgroup rw no-separator cgroup2 cgroup2 rw\n"
        "30 24 0:26 / /sys/fs/cgroup rw -\n"
        "30 24 0:26 / /sys/fs/cgroup rw - cgroup2\n"
        "30 24 0:26 relative /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
        "31 24 0:27 / /good rw - cgroup2 cgroup2 rw\n"
        "32 24 0:28 / /v1-no-super-options rw - cgroup cgroup\n"
    )
    assert parse_mountinfo(mountinfo) == [
        Mount("/good", "/", 2, frozenset()),
        Mount("/v1-no-super-options", "/", 1, frozenset()),
    ]
    proc = "garbage\nx:memory:/a\n4:memory:relative\n1::/not-v2\n3:cpu,,cpuacct:/c:d\n0::/v2\n"
    assert parse_proc_cgroup(proc) == {"cpu": "/c:d", "cpuacct": "/c:d", "": "/v2"}


def test_real_host() -> None:
    mountinfo = Path("/proc/self/mountinfo").read_text()
    proc_cgroup = Path("/proc/self/cgroup").read_text()
    host = locate(mountinfo, proc_cgroup)
    assert host.v2 is not None
    assert os.path.isfile(os.path.join(host.v2.mount.mount_point, "cgroup.procs"))
    if host.v2.own is not None:
        assert os.path.isdir(host.v2.own)
    for controller in parse_proc_cgroup(proc_cgroup):
        if controller == "" or controller.startswith("name="):
            continue
        own = host.v1[controller].own
        assert own is not None, controller
        assert os.path.isdir(own), controller


# --- relative ---------------------------------------------------------------


def test_relative_accepts_nested_names() -> None:
    assert relative("jobs") == ("jobs",)
    assert relative("jobs/123") == ("jobs", "123")
    assert relative("a b/ü.x/...") == ("a b", "ü.x", "...")
    assert relative("x" * 255) == ("x" * 255,)
    assert relative("é" * 127) == ("é" * 127,)  # 254 bytes


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("", "empty"),
        ("/jobs", "is absolute; give a path relative to netrunner's cgroup root, e.g. 'jobs/123'"),
        ("/", "is absolute"),
        ("a\0b", "NUL"),
        ("a\nb", "newline"),
        ("a//b", "empty component"),
        ("a/", "empty component"),
        (".", "'.' component"),
        ("a/./b", "'.' component"),
        ("..", "'..' component"),
        ("a/../../b", "'..' component"),
        ("x" * 256, "256 bytes"),
        ("é" * 128, "256 bytes"),
        ("cgroup.procs", "reserved"),
        ("jobs/cgroup.mine", "reserved"),
        ("a/\udcff\ud800", "cannot be encoded"),
    ],
)
def test_relative_refuses(path: str, words: str) -> None:
    with pytest.raises(InvalidCgroup, match="cgroup path") as info:
        relative(path)
    assert words in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("path", [None, b"jobs", 1, ["jobs"]])
def test_relative_refuses_non_str(path: object) -> None:
    with pytest.raises(InvalidCgroup, match="must be a str such as 'jobs/123'"):
        relative(path)  # type: ignore[arg-type]


def test_relative_allows_names_merely_containing_cgroup() -> None:
    assert relative("mycgroup.x/cgroup") == ("mycgroup.x", "cgroup")


# --- parse_memory -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, 1),
        (4096, 4096),
        ("4096", 4096),
        ("4096B", 4096),
        ("512M", 512 << 20),
        ("512MiB", 512 << 20),
        ("512mb", 512 << 20),
        ("512 MiB", 512 << 20),
        ("1g", 1 << 30),
        ("  2G\n", 2 << 30),
        ("3k", 3072),
        ("3KiB", 3072),
        ("1T", 1 << 40),
        ("1tib", 1 << 40),
    ],
)
def test_parse_memory(value: object, expected: int) -> None:
    assert parse_memory(value) == expected


@pytest.mark.parametrize(
    "value", ["", "M", "512X", "1.5G", "-1", "0", "0M", "512iB", "512Mi", "512 M B", "1P", "١٢", "9" * 30, 0, -5, 2**63]
)
def test_parse_memory_refuses_values(value: object) -> None:
    with pytest.raises(ValueError, match="memory_max must be") as info:
        parse_memory(value)
    assert not isinstance(info.value, TypeError)


@pytest.mark.parametrize("value", [True, False, 1.0, 512.5, None, b"512M", [512]])
def test_parse_memory_refuses_types(value: object) -> None:
    with pytest.raises(TypeError, match=r"memory_max must be .*'512M'"):
        parse_memory(value)


def test_parse_memory_names_the_option() -> None:
    with pytest.raises(ValueError, match=r"^swap_max must be"):
        parse_memory("lots", "swap_max")
    assert parse_memory(2**63 - 1) == 2**63 - 1


# --- cpu_quota --------------------------------------------------------------


def test_cpu_quota() -> None:
    assert cpu_quota(1) == 100_000
    assert cpu_quota(0.5) == 50_000
    assert cpu_quota(2.25) == 225_000
    assert cpu_quota(0.01) == 1000  # the kernel's 1 ms minimum
    assert cpu_quota(0.123456) == 12346
    assert cpu_quota(1.5, period_us=1_000_000) == 1_500_000


@pytest.mark.parametrize("cpus", [0, 0.0, 0.0099, -1, math.inf, -math.inf, math.nan, 1e300])
def test_cpu_quota_refuses_values(cpus: float) -> None:
    with pytest.raises(ValueError, match="cpu_max must be"):
        cpu_quota(cpus)


def test_cpu_quota_minimum_follows_the_period() -> None:
    with pytest.raises(ValueError, match=r">= 0\.1,"):
        cpu_quota(0.05, period_us=10_000)
    assert cpu_quota(0.1, period_us=10_000) == 1000


@pytest.mark.parametrize("cpus", [True, False, "0.5", None, [1]])
def test_cpu_quota_refuses_types(cpus: object) -> None:
    with pytest.raises(TypeError, match=r"cpu_max must be a number of CPUs such as 0\.5"):
        cpu_quota(cpus)


# --- check_pids -------------------------------------------------------------


def test_check_pids() -> None:
    assert check_pids(1) == 1
    assert check_pids(100) == 100
    assert check_pids(4194304) == 4194304


@pytest.mark.parametrize("value", [0, -1, 4194305])
def test_check_pids_refuses_values(value: int) -> None:
    with pytest.raises(ValueError, match="pids_max must be an int from 1 to 4194304"):
        check_pids(value)


@pytest.mark.parametrize("value", [True, False, 1.0, "100", None])
def test_check_pids_refuses_types(value: object) -> None:
    with pytest.raises(TypeError, match="pids_max must be an int"):
        check_pids(value)


# --- parse_keyed ------------------------------------------------------------


def test_parse_keyed_cpu_stat() -> None:
    text = (
        "usage_usec 5326768351\nuser_usec 3327025515\nsystem_usec 1999742835\n"
        "core_sched.force_idle_usec 0\nnr_periods 12\nnr_throttled 3\nthrottled_usec 4567\n"
        "nr_bursts 0\nburst_usec 0\n"
    )
    stat = parse_keyed(text)
    assert stat["usage_usec"] == 5326768351
    assert stat["throttled_usec"] == 4567
    assert len(stat) == 9


def test_parse_keyed_memory_and_cgroup_events() -> None:
    assert parse_keyed("low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\noom_group_kill 0\n") == {
        "low": 0, "high": 0, "max": 7, "oom": 1, "oom_kill": 1, "oom_group_kill": 0,
    }
    assert parse_keyed("populated 1\nfrozen 0\n") == {"populated": 1, "frozen": 0}


def test_parse_keyed_v1_files() -> None:
    assert parse_keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n") == {
        "oom_kill_disable": 0, "under_oom": 0, "oom_kill": 2,
    }
    stat = parse_keyed("cache 29573120\nrss 2048000\nhierarchical_memory_limit 9223372036854771712\n")
    assert stat["hierarchical_memory_limit"] == 9223372036854771712


def test_parse_keyed_skips_what_does_not_parse() -> None:
    text = (
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"  # a pressure line
        "\nlonely\nmax max\nhalf 1.5\nneg -3\ndashes --3\nthree 1 2\nunicode ١٢\n  spaced\t 42 \nok 1"
    )
    assert parse_keyed(text) == {"neg": -3, "spaced": 42, "ok": 1}
