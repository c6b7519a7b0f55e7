"""The kernel's inode table of the low-level adapter: lookup counts and the names paths are built from."""

from __future__ import annotations

from dynlog.fuse.inodes import KernelInodes
from dynlog.schema import ROOT_INO


def table() -> KernelInodes:
    t = KernelInodes()
    t.learned(2, ROOT_INO, "d", is_dir=True)
    t.learned(3, 2, "f", is_dir=False)
    return t


def test_paths_are_built_from_the_names_the_kernel_was_given() -> None:
    t = table()
    assert t.path(ROOT_INO) == "/"
    assert t.path(2) == "/d"
    assert t.path(3) == "/d/f"
    assert t.path(99) is None
    assert t.child(2, "f") == 3 and t.child(2, "g") is None


def test_an_inode_lives_until_the_kernel_forgets_every_lookup() -> None:
    t = table()
    t.learned(3, 2, "f", is_dir=False)  # looked up twice
    t.forget(3, 1)
    assert t.knows(3) and t.path(3) == "/d/f"
    t.forget(3, 1)
    assert not t.knows(3) and t.path(3) is None and t.child(2, "f") is None
    t.forget(ROOT_INO, 5)
    assert t.knows(ROOT_INO)  # the root is never forgotten
    assert len(t) == 1  # only /d is left


def test_a_hard_link_answers_to_its_latest_name_and_keeps_the_others() -> None:
    t = table()
    t.learned(3, ROOT_INO, "link", is_dir=False)
    assert t.path(3) == "/link"
    t.removed(ROOT_INO, "link")
    assert t.path(3) == "/d/f"  # the first name still leads to it
    t.removed(2, "f")
    assert t.path(3) is None and t.knows(3)  # unlinked while the kernel holds it


def test_a_directory_found_at_a_new_place_gets_a_node_of_its_own_there() -> None:
    """Another mount moved /d to /e. The kernel may still hold /d's entry: seen at /e under the
    same node id, it would refuse the lookup (ELOOP) when the old entry looks like an ancestor."""
    t = table()
    e = t.learned(2, ROOT_INO, "e", is_dir=True)
    assert e != 2 and t.ino_of(e) == 2 and t.path(e) == "/e"
    assert t.path(2) == "/d"  # the old node keeps its place: it answers ESTALE until forgotten
    assert sorted(t.nodeids(2)) == sorted([2, e])
    assert t.learned(2, ROOT_INO, "e", is_dir=True) == e  # the same place: the same node
    f = t.learned(3, e, "f", is_dir=False)
    assert f == 3 and t.path(3) == "/e/f"  # a file is one node whatever its names
    t.forget(2, 1)
    assert t.nodeids(2) == [e] and t.child(e, "f") == 3
    t.forget(e, 2)
    assert t.nodeids(2) == []


def test_a_rename_through_this_mount_keeps_the_node() -> None:
    t = table()
    t.moved(ROOT_INO, "d", ROOT_INO, "e")
    assert t.path(2) == "/e" and t.learned(2, ROOT_INO, "e", is_dir=True) == 2


def test_a_name_given_to_another_inode_leaves_the_old_one() -> None:
    t = table()
    t.learned(4, 2, "f", is_dir=False)  # f was replaced (another mount's rename onto it)
    assert t.path(4) == "/d/f" and t.path(3) is None and t.knows(3)


def test_rename_moves_the_name_and_the_subtree() -> None:
    t = table()
    t.learned(5, ROOT_INO, "x", is_dir=False)
    t.moved(ROOT_INO, "d", ROOT_INO, "x")  # /d replaces /x
    assert t.path(2) == "/x" and t.path(3) == "/x/f"
    assert t.path(5) is None and t.child(ROOT_INO, "d") is None


def test_rename_exchange_swaps_the_names() -> None:
    t = table()
    t.learned(5, ROOT_INO, "x", is_dir=False)
    t.moved(ROOT_INO, "d", ROOT_INO, "x", exchange=True)
    assert t.path(2) == "/x" and t.path(5) == "/d" and t.path(3) == "/x/f"


def test_a_directory_seen_below_itself_makes_no_cycle() -> None:
    """What two mounts' moves, seen half each, can show: /a/b, then /a found inside b."""
    t = KernelInodes()
    t.learned(2, ROOT_INO, "a", is_dir=True)
    t.learned(3, 2, "b", is_dir=True)
    a2 = t.learned(2, 3, "a", is_dir=True)
    assert t.path(a2) == "/a/b/a" and t.path(2) == "/a" and t.path(3) == "/a/b"


def test_the_root_is_always_a_node_to_invalidate() -> None:
    assert KernelInodes().nodeids(ROOT_INO) == [ROOT_INO]
    assert table().nodeids(3) == [3] and table().nodeids(99) == []
