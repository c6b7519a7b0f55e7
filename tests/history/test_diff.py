"""diff: added, removed, renamed, modified between two times, recursively."""

from __future__ import annotations

from dynlog.core.attrs import ROOT
from dynlog.history.diff import diff
from dynlog.history.timeparse import format_time
from dynlog.history.walk import Journals

from .conftest import tick, write_file
from .script import run_script


def test_diff_of_the_scripted_history(fs, cli):
    sc = run_script(fs)
    t1, t2 = sc.step("create main").at, sc.step("symlink").at
    rc, out, err = cli("diff", "/", format_time(t1, 9), format_time(t2, 9))
    assert rc == 1, err  # changes found
    assert out.splitlines() == [
        "R /docs/a.txt -> /docs/b.txt",
        "M /docs/b.txt  (content, mode, xattrs)",
        "A /docs/link",
        "R /src/main.c -> /docs/main.c",
    ]
    rc, out, _ = cli("diff", "/docs", format_time(sc.step("symlink").at, 9), "now")
    assert out.splitlines() == ["D /docs/main.c"]
    rc, out, _ = cli("diff", "/", format_time(sc.step("delete main").at, 9), "now")
    assert rc == 0 and out == ""  # mkdir + rmdir of /src/tmp leaves no trace


def test_diff_directory_moves_and_replacements(fs, store):
    fs.mkdir("/a", 0o755, ROOT)
    fs.mkdir("/a/inner", 0o755, ROOT)
    write_file(fs, "/a/inner/x", b"1")
    write_file(fs, "/a/y", b"old y")
    t1 = tick()
    fs.rename("/a/inner", "/moved", 0, ROOT)  # a directory with a child, out of /a
    write_file(fs, "/a/z", b"new")
    fs.rename("/a/z", "/a/y", 0, ROOT)  # replaces y: the old y is removed
    fs.chown("/moved/x", 7, 7, ROOT)
    t2 = tick()
    res = diff(Journals(store), "/", t1, t2)
    got = sorted(c.to_text() for c in res.changes)
    assert got == sorted([
        "R /a/inner/ -> /moved/",
        "R /a/inner/x -> /moved/x",
        "M /moved/x  (owner)",
        "D /a/y",
        "A /a/y",  # z, renamed over y: a new inode at y
    ])
    # scoped to /a: the move out is a removal there
    res = diff(Journals(store), "/a", t1, t2)
    assert sorted(c.to_text() for c in res.changes) == sorted(["D /a/inner/", "D /a/inner/x", "D /a/y", "A /a/y"])


def test_diff_json(fs, cli):
    t1 = tick()
    write_file(fs, "/n", b"abc")
    t2 = tick()
    import json

    rc, out, _ = cli("diff", "/", format_time(t1, 9), format_time(t2, 9), "--json")
    assert [json.loads(x) for x in out.splitlines()] == [{"change": "added", "path": "/n", "ino": json.loads(out)["ino"],
                                                          "type": "file"}]
