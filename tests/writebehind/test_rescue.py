"""The rule that decides which queued operations of a lost lease still commit
(dynlog/writebehind/rescue.py), on events alone: no store, no mount."""

from __future__ import annotations

from dynlog.journal.events import Create, Event, Link, MoveIn, MoveOut, Remove, Rename, SetAttr, Stamp
from dynlog.journal.inode import Inode
from dynlog.journal.record import GENESIS_HASH, Record
from dynlog.writebehind.rescue import Rescue, touched

FILE = 0o100644


def create(name: str, ino: int) -> list[Event]:
    return [Stamp(1, 0, "create"), Create(name, Inode(ino, FILE))]


def record(*events: Event) -> Record:
    return Record("d/9", 5, tuple(events), 1, "bravo", 0, "x", GENESIS_HASH)


def test_touched_names_every_entry_and_nothing_else() -> None:
    assert touched([Stamp(1, 0, "rename"), Rename("a", "b", 7)]) == {"a", "b"}
    assert touched([SetAttr("", {"mode": 0o40700})]) == set()  # the directory's own attributes
    assert touched([Link("x", 3, FILE)]) is None  # never in a queue: not shown safe


def test_others_names_drop_ours_and_what_was_built_on_them() -> None:
    r = Rescue()
    r.learn([record(Create("clash", Inode(50, FILE))), record(SetAttr("", {"mode": 0o40755}))])
    assert r.keep(create("mine", 10), "create")
    assert not r.keep(create("clash", 11), "create")
    # built on our dropped "clash": it goes too, and so does what is built on that
    assert not r.keep([Stamp(2, 0, "rename"), Rename("clash", "moved", 11)], "rename")
    assert not r.keep([Stamp(3, 0, "unlink"), Remove("moved", 11)], "unlink")
    assert r.keep([Stamp(4, 0, "chmod"), SetAttr("mine", {"mode": FILE & ~0o044})], "chmod")
    assert r.keep([Stamp(5, 0, "chmod"), SetAttr("", {"mode": 0o40700})], "chmod")  # the last writer wins
    assert r.dropped == ["create", "rename", "unlink"]


def test_a_sealed_directory_or_an_unknown_event_drops_everything_after() -> None:
    sealed = Rescue()
    sealed.learn([record(Remove("", 9))])
    assert not sealed.keep(create("mine", 10), "create")
    unknown = Rescue()
    assert not unknown.keep([Stamp(1, 0, "link"), Link("x", 3, FILE)], "link")
    assert not unknown.keep(create("other", 12), "create")
    assert unknown.dropped == ["link", "create"]


def test_others_moves_and_links_are_read_by_name() -> None:
    """Another mount's records hold events a queue never does (moves across directories, links):
    they take their names, not the whole directory."""
    r = Rescue()
    r.learn([record(MoveOut("left", 20, "d/3", "x")), record(MoveIn("arrived", Inode(21, FILE), 4, "y")),
             record(Link("linked", 22, FILE))])
    assert not r.sealed
    assert r.conflicts == {"left", "arrived", "linked"}
    assert r.keep(create("mine", 10), "create")
    assert not r.keep(create("arrived", 11), "create")
