"""replay: every step of a scripted history, in text and JSON; --at at every step; --follow."""

from __future__ import annotations

import json
import threading
import time

from dynlog.core.attrs import ROOT
from dynlog.history.timeparse import format_time
from dynlog.store.base import Put

from .conftest import write_file
from .script import A_V1, B_V2, run_script


def _events_json(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_replay_json_shows_each_step_in_order(fs, cli):
    sc = run_script(fs)
    rc, out, err = cli("replay", "--json")
    assert rc == 0, err
    evs = [e for e in _events_json(out) if not e.get("internal")]
    got = [(e["op"], e["path"], e.get("to", "")) for e in evs]
    want = [ev for step in sc.steps for ev in step.events]
    assert got == want
    for e in evs:
        assert e["session"] == "tester1" and e["uid"] == 0
        assert e["time"].endswith("Z") and e["ts"] > sc.before
    sizes = {(e["op"], e["path"]): e.get("size") for e in evs}
    assert sizes[("write", "/src/main.c")] == 300_000
    assert sizes[("write", "/docs/b.txt")] == len(B_V2)
    inline = {e["path"]: e.get("inline") for e in evs if e["op"] == "write"}
    assert inline == {"/docs/a.txt": len(A_V1), "/src/main.c": None, "/docs/b.txt": len(B_V2)}
    # each event falls inside its step's window
    t0 = sc.before
    i = 0
    for step in sc.steps:
        for _ in step.events:
            assert t0 < evs[i]["ts"] <= step.at
            i += 1
        t0 = step.at


def test_replay_text_shows_each_step(fs, cli):
    sc = run_script(fs)
    rc, out, err = cli("replay")
    assert rc == 0, err
    lines = out.splitlines()
    want = [ev for step in sc.steps for ev in step.events]
    assert len(lines) == len(want)
    for line, (op, path, to) in zip(lines, want):
        assert line.startswith("20") and "Z  tester1" in line
        assert f" {op} " in line and f" {path}" in line
        if to:
            assert f"-> {to}" in line


def test_replay_since_until_and_path_scope(fs, cli):
    sc = run_script(fs)
    a, b = sc.step("create main").at, sc.step("overwrite b").at
    rc, out, _ = cli("replay", "--json", "--since", format_time(a, 9), "--until", format_time(b, 9))
    got = [(e["op"], e["path"]) for e in _events_json(out) if not e.get("internal")]
    assert got == [("rename", "/docs/a.txt"), ("rename", "/src/main.c"), ("write", "/docs/b.txt")]
    # only /src's own journal: its mkdir, main.c's life there, the move out, tmp
    rc, out, _ = cli("replay", "/src", "--json")
    got = [(e["op"], e["path"]) for e in _events_json(out) if not e.get("internal")]
    assert got == [("mkdir", "/src"), ("create", "/src/main.c"), ("write", "/src/main.c"), ("rename", "/src/main.c"),
                   ("mkdir", "/src/tmp"), ("rmdir", "/src/tmp")]
    # a single file: by inode, across its rename
    rc, out, _ = cli("replay", "/docs/b.txt", "--json")
    got = [e["op"] for e in _events_json(out) if not e.get("internal")]
    assert got == ["create", "write", "rename", "write", "chmod", "setxattr"]


def test_replay_shows_hosts_of_sessions(fs, cli, store):
    store.put(Put("meta", {"path": "sess", "name": "tester1", "host": "build-box-7", "hb": time.time_ns()}))
    fs.mkdir("/x", 0o755, ROOT)
    rc, out, _ = cli("replay")
    assert "tester1@build-box-7" in out
    rc, out, _ = cli("replay", "--json")
    assert _events_json(out)[0]["host"] == "build-box-7"


def test_replay_at_each_step(fs, cli):
    sc = run_script(fs)
    rc, out, _ = cli("replay", "/", "--at", format_time(sc.before, 9), "--recursive", "--json")
    assert rc == 0 and [json.loads(x)["path"] for x in out.splitlines()] == ["/"]
    for step in sc.steps:
        rc, out, err = cli("replay", "/", "--at", format_time(step.at, 9), "--recursive", "--json")
        assert rc == 0, err
        ents = {e["path"]: (e["type"], e["size"] if e["type"] != "dir" else 0)
                for e in map(json.loads, out.splitlines()) if e["path"] != "/"}
        ents = {p: (t, len("b.txt") if t == "symlink" else s) for p, (t, s) in ents.items()}
        assert ents == step.tree, step.what
    # mode and xattrs as they were
    rc, out, _ = cli("replay", "/docs", "--at", format_time(sc.step("overwrite b").at, 9), "--json")
    b = next(e for e in map(json.loads, out.splitlines()) if e["path"] == "/docs/b.txt")
    assert b["mode"] == 0o644 and "xattrs" not in b
    rc, out, _ = cli("replay", "/docs", "--at", format_time(sc.step("attrs b").at, 9), "--json")
    b = next(e for e in map(json.loads, out.splitlines()) if e["path"] == "/docs/b.txt")
    assert b["mode"] == 0o600 and b["xattrs"] == {"user.tag": b"v2".hex()}


def test_replay_at_text_and_seq(fs, cli):
    sc = run_script(fs)
    rc, out, _ = cli("replay", "/docs", "--at", format_time(sc.step("rename across").at, 9))
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].startswith("/docs at ") and lines[1] == "total 2"
    assert lines[2].startswith("-rw-r--r--") and lines[2].endswith(" b.txt")
    assert " 300000 " in lines[3] and lines[3].endswith(" main.c")
    # by sequence number of /docs's journal: 1 = a.txt created
    rc, out, _ = cli("replay", "/docs", "--at", "1")
    assert rc == 0 and out.splitlines()[1] == "total 1" and out.splitlines()[2].endswith(" a.txt")
    rc, out, _ = cli("replay", "/docs", "--at", "1", "--json")
    assert [json.loads(x)["size"] for x in out.splitlines()][1] == 0  # created, not yet written
    # a path that did not exist then
    rc, _, err = cli("replay", "/docs/link", "--at", format_time(sc.step("attrs b").at, 9))
    assert rc == 1 and "no such file" in err


def test_replay_follow(fs, new_fs, cli):
    fs.mkdir("/live", 0o755, ROOT)
    other = new_fs(session="writer2")

    def writer() -> None:
        time.sleep(0.4)
        write_file(other, "/live/new.txt", b"hello")
        other.rename("/live/new.txt", "/live/renamed.txt", 0, ROOT)

    t = threading.Thread(target=writer)
    t.start()
    rc, out, err = cli("replay", "--follow", "--json", "--interval", "0.1", "--idle-exit", "2.5")
    t.join()
    assert rc == 0, err
    got = [(e["op"], e["path"], e["session"]) for e in _events_json(out) if not e.get("internal")]
    assert got == [("mkdir", "/live", "tester1"), ("create", "/live/new.txt", "writer2"),
                   ("write", "/live/new.txt", "writer2"), ("rename", "/live/new.txt", "writer2")]


def test_replay_warns_about_an_altered_record(fs, cli, store):
    fs.mkdir("/a", 0o755, ROOT)
    fs.mkdir("/b", 0o755, ROOT)
    item = store.get("meta", ("d/1", "j/0000000000000001"))
    item["ev"] = item["ev"].replace('"a"', '"evil"')
    store.put(Put("meta", item))
    rc, out, err = cli("replay")
    assert rc == 0
    assert "/evil" in out and "does not verify" in err


def test_names_that_are_not_utf8(fs, store, capsysbinary):
    """Such names are stored surrogate-escaped; text output gives back their own bytes."""
    import os

    from dynlog.cli.main import main

    fs.mkdir("/" + os.fsdecode(b"caf\xe9"), 0o755, ROOT)
    pre = ["--endpoint-url", store.endpoint_url] if getattr(store, "endpoint_url", None) else []
    assert main(pre + ["replay", store.source]) == 0
    out = capsysbinary.readouterr().out
    assert b" mkdir " in out and out.rstrip().endswith(b"/caf\xe9  mode=0755")
    assert main(pre + ["replay", store.source, "/", "--at", "now"]) == 0
    assert capsysbinary.readouterr().out.rstrip().endswith(b" caf\xe9")
    assert main(pre + ["replay", store.source, "--json"]) == 0
    assert json.loads(capsysbinary.readouterr().out.splitlines()[0])["path"] == "/caf\udce9"


def test_replay_after_compaction_keeps_paths_and_notes_the_horizon(fs, cli):
    from dynlog.history.compact import CompactOptions, compact

    run_script(fs)
    compact(fs.store, CompactOptions(retain=0, settle=0))
    write_file(fs, "/docs/later.txt", b"x")
    rc, out, err = cli("replay", "--json")
    assert rc == 0
    got = [(e["op"], e["path"]) for e in _events_json(out) if not e.get("internal")]
    assert got[-2:] == [("create", "/docs/later.txt"), ("write", "/docs/later.txt")]
    assert "history before" in err and "was compacted" in err
    assert "gone" not in err.split("was compacted")[0]  # no warning about missing records
