"""A scripted history shared by the replay, restore and diff tests: creates, writes, renames
within and across directories, an overwrite, attribute changes, a symlink, a delete, an rmdir.

Each step records the events replay must show for it and the tree as it stands after it, and
the time just after it (``Step.at``), so tests can ask for the state at every step."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from dynlog.core.attrs import ROOT
from dynlog.core.filesystem import FileSystem

from .conftest import tick, write_file

A_V1 = b"alpha, the first version\n" * 3
B_V2 = b"beta, the second version of the same file\n"
MAIN = random.Random(7).randbytes(300_000)  # three blocks at the default block size


@dataclass
class Step:
    what: str
    events: list[tuple[str, str, str]]  # (op, path, to) in order
    tree: dict[str, tuple[str, int]]  # path -> (type, size) after the step
    at: int = 0


@dataclass
class Script:
    steps: list[Step] = field(default_factory=list)
    before: int = 0  # a time before anything happened

    def step(self, what: str) -> Step:
        return next(s for s in self.steps if s.what == what)


def run_script(fs: FileSystem) -> Script:
    sc = Script(before=tick())
    tree: dict[str, tuple[str, int]] = {}

    def done(what: str, events: list[tuple[str, str, str]]) -> None:
        sc.steps.append(Step(what, events, dict(tree), tick()))

    fs.mkdir("/docs", 0o755, ROOT)
    fs.mkdir("/src", 0o750, ROOT)
    tree.update({"/docs": ("dir", 0), "/src": ("dir", 0)})
    done("mkdirs", [("mkdir", "/docs", ""), ("mkdir", "/src", "")])

    write_file(fs, "/docs/a.txt", A_V1)
    tree["/docs/a.txt"] = ("file", len(A_V1))
    done("create a", [("create", "/docs/a.txt", ""), ("write", "/docs/a.txt", "")])

    write_file(fs, "/src/main.c", MAIN)
    tree["/src/main.c"] = ("file", len(MAIN))
    done("create main", [("create", "/src/main.c", ""), ("write", "/src/main.c", "")])

    fs.rename("/docs/a.txt", "/docs/b.txt", 0, ROOT)
    tree["/docs/b.txt"] = tree.pop("/docs/a.txt")
    done("rename within", [("rename", "/docs/a.txt", "/docs/b.txt")])

    fs.rename("/src/main.c", "/docs/main.c", 0, ROOT)
    tree["/docs/main.c"] = tree.pop("/src/main.c")
    done("rename across", [("rename", "/src/main.c", "/docs/main.c")])

    write_file(fs, "/docs/b.txt", B_V2)
    tree["/docs/b.txt"] = ("file", len(B_V2))
    # open(O_TRUNC), write, close: one commit, one event (the file's new contents, inline)
    done("overwrite b", [("write", "/docs/b.txt", "")])

    fs.chmod("/docs/b.txt", 0o600, ROOT)
    fs.setxattr("/docs/b.txt", "user.tag", b"v2", 0, ROOT)
    done("attrs b", [("chmod", "/docs/b.txt", ""), ("setxattr", "/docs/b.txt", "")])

    fs.symlink("b.txt", "/docs/link", ROOT)
    tree["/docs/link"] = ("symlink", len("b.txt"))
    done("symlink", [("symlink", "/docs/link", "b.txt")])

    fs.unlink("/docs/main.c", ROOT)
    del tree["/docs/main.c"]
    done("delete main", [("unlink", "/docs/main.c", "")])

    fs.mkdir("/src/tmp", 0o755, ROOT)
    fs.rmdir("/src/tmp", ROOT)
    done("mkdir rmdir", [("mkdir", "/src/tmp", ""), ("rmdir", "/src/tmp", "")])
    return sc
