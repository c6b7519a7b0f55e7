"""Permission checks as the kernel makes them (default_permissions), seen by unprivileged users on
an ``allow_other`` mount: each check runs in a forked child with dropped credentials."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .syscalls import errno_of, run_as

NOBODY = (65534, 65534)
OTHER = (65533, 65533)


def as_user(user: tuple[int, int], fn, groups: tuple[int, ...] = ()):  # noqa: ANN001, ANN201
    return run_as(user[0], user[1], fn, groups=groups)


def test_root_owned_0755_directory(mnt: Path) -> None:
    assert stat.S_IMODE(os.stat(mnt).st_mode) == 0o755
    (mnt / "public").write_bytes(b"readable")
    os.chmod(mnt / "public", 0o644)
    (mnt / "secret").write_bytes(b"root only")
    os.chmod(mnt / "secret", 0o600)

    def probe() -> dict[str, int]:
        return {
            "create": errno_of(lambda: os.close(os.open(mnt / "new", os.O_CREAT | os.O_WRONLY, 0o644))),
            "mkdir": errno_of(lambda: os.mkdir(mnt / "newdir")),
            "unlink": errno_of(lambda: os.unlink(mnt / "public")),
            "rename": errno_of(lambda: os.rename(mnt / "public", mnt / "moved")),
            "symlink": errno_of(lambda: os.symlink("public", mnt / "ln")),
            "read public": errno_of(lambda: open(mnt / "public", "rb").read()),
            "write public": errno_of(lambda: open(mnt / "public", "ab").close()),
            "read secret": errno_of(lambda: open(mnt / "secret", "rb").read()),
            "list": errno_of(lambda: os.listdir(mnt)),
            "stat secret": errno_of(lambda: os.stat(mnt / "secret")),
            "chmod": errno_of(lambda: os.chmod(mnt / "public", 0o666)),
            "chown": errno_of(lambda: os.chown(mnt / "public", 65534, -1)),
            "utime explicit": errno_of(lambda: os.utime(mnt / "public", (1, 1))),
            "setxattr": errno_of(lambda: os.setxattr(mnt / "public", "user.x", b"1")),
            "access w": int(os.access(mnt / "public", os.W_OK)),
        }

    got = as_user(NOBODY, probe)
    assert got == {
        "create": errno.EACCES, "mkdir": errno.EACCES, "unlink": errno.EACCES, "rename": errno.EACCES,
        "symlink": errno.EACCES, "read public": 0, "write public": errno.EACCES, "read secret": errno.EACCES,
        "list": 0, "stat secret": 0, "chmod": errno.EPERM, "chown": errno.EPERM, "utime explicit": errno.EPERM,
        "setxattr": errno.EACCES, "access w": 0,
    }
    assert sorted(os.listdir(mnt)) == ["public", "secret"]


def test_world_writable_directory(mnt: Path) -> None:
    d = mnt / "open"
    d.mkdir()
    os.chmod(d, 0o777)

    def create() -> tuple[int, int, int]:
        (d / "mine").write_bytes(b"by nobody")
        os.mkdir(d / "mydir", 0o700)
        st = os.stat(d / "mine")
        return st.st_uid, st.st_gid, stat.S_IMODE(os.stat(d / "mydir").st_mode)

    assert as_user(NOBODY, create) == (65534, 65534, 0o700)
    assert (d / "mine").read_bytes() == b"by nobody"
    # no sticky bit: another user may remove and rename what nobody made
    assert as_user(OTHER, lambda: errno_of(lambda: os.rename(d / "mine", d / "taken"))) == 0
    assert as_user(OTHER, lambda: errno_of(lambda: os.unlink(d / "taken"))) == 0
    # but not enter nobody's 0700 directory
    assert as_user(OTHER, lambda: errno_of(lambda: os.listdir(d / "mydir"))) == errno.EACCES


def test_sticky_directory(mnt: Path) -> None:
    d = mnt / "tmp"
    d.mkdir()
    os.chmod(d, 0o1777)
    as_user(NOBODY, lambda: (d / "nobodys").write_bytes(b"n"))
    as_user(OTHER, lambda: (d / "others").write_bytes(b"o"))

    def intrude() -> dict[str, int]:
        return {
            "unlink": errno_of(lambda: os.unlink(d / "nobodys")),
            "rename away": errno_of(lambda: os.rename(d / "nobodys", d / "stolen")),
            "rename over": errno_of(lambda: os.rename(d / "others", d / "nobodys")),
            "own unlink": errno_of(lambda: os.unlink(d / "others")),
        }

    assert as_user(OTHER, intrude) == {"unlink": errno.EPERM, "rename away": errno.EPERM,
                                       "rename over": errno.EPERM, "own unlink": 0}
    assert os.listdir(d) == ["nobodys"]
    assert as_user(NOBODY, lambda: errno_of(lambda: os.rename(d / "nobodys", d / "renamed"))) == 0
    os.unlink(d / "renamed")  # root may


def test_chown_rules_for_owners(mnt: Path) -> None:
    d = mnt / "own"
    d.mkdir()
    os.chmod(d, 0o777)
    as_user(NOBODY, lambda: (d / "f").write_bytes(b""))

    def probe() -> dict[str, int]:
        return {
            "give away": errno_of(lambda: os.chown(d / "f", 65533, -1)),
            "foreign group": errno_of(lambda: os.chown(d / "f", -1, 4242)),
            "own group": errno_of(lambda: os.chown(d / "f", -1, 777)),
            "chmod own": errno_of(lambda: os.chmod(d / "f", 0o640)),
            "utime own": errno_of(lambda: os.utime(d / "f", (5, 5))),
        }

    assert as_user(NOBODY, probe, groups=(777,)) == {"give away": errno.EPERM, "foreign group": errno.EPERM,
                                                      "own group": 0, "chmod own": 0, "utime own": 0}
    st = os.stat(d / "f")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_mtime_ns) == (65534, 777, 0o640, 5 * 10**9)


def test_write_by_non_owner_clears_setuid(mnt: Path) -> None:
    p = mnt / "suid"
    p.write_bytes(b"")
    os.chmod(p, 0o4777)

    def write() -> None:
        with open(p, "ab") as f:
            f.write(b"x")

    as_user(NOBODY, write)
    mode = stat.S_IMODE(os.stat(p).st_mode)
    assert not mode & stat.S_ISUID and mode & 0o777 == 0o777


def test_utime_now_needs_write_permission_only(mnt: Path) -> None:
    p = mnt / "shared"
    p.write_bytes(b"")
    os.chmod(p, 0o666)
    assert as_user(NOBODY, lambda: errno_of(lambda: os.utime(p))) == 0  # "now": writers may
    assert as_user(NOBODY, lambda: errno_of(lambda: os.utime(p, (7, 7)))) == errno.EPERM
    os.chmod(p, 0o644)
    assert as_user(NOBODY, lambda: errno_of(lambda: os.utime(p))) == errno.EACCES


def test_setgid_directory_for_non_members(mnt: Path) -> None:
    d = mnt / "team"
    d.mkdir()
    os.chown(d, 0, 4242)
    os.chmod(d, 0o2777)

    def create() -> tuple[int, int, bool]:
        (d / "f").write_bytes(b"")
        os.mkdir(d / "sub")
        st = os.stat(d / "sub")
        return os.stat(d / "f").st_gid, st.st_gid, bool(st.st_mode & stat.S_ISGID)

    assert as_user(NOBODY, create) == (4242, 4242, True)
