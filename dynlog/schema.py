"""The key layout of the meta table, in one place (mirrored in docs/ARCHITECTURE.md).

    path            name                        what
    fs              super                       superblock: format, block size, root inode
    fs              ino                         inode allocator: ADD hands each client a range
    fs              rename                      rename sentinel: version bumped by each directory move across dirs
    fs              relay                       lease of the stream relay (holder, exp)
    d/<ino>         j/<seq:016d>                directory journal: one record (list of events) an item
    d/<ino>         s/<seq:016d>/<part:04d>     directory snapshot at seq, split into parts
    i/<ino>         j/..., s/...                journal of an inode with several names (hard links)
    sess            <session id>                mount sessions (heartbeat, block versions of open files)
    lk/<ino>        t                           lock table of one inode: POSIX ranges and flock (v, locks)
    nb/<k>          <ts:020d>-<session>-<n>     relay bulletin: invalidation notices (ch, ttl)
    gc              <blockId>                   compact: a block version first seen unreferenced at ``seen``
    fs              compact                     compact: the lease of the one run at a time (owner, until)

The blocks table: blockId = "<ino>.<write id>" (one id per flush: a block version),
blockNum = block index in the file. Block items are immutable once written.
"""

from __future__ import annotations

FS_PARTITION = "fs"
SUPER = "super"
INO_COUNTER = "ino"
ROOT_INO = 1
SESSIONS = "sess"
SEQ_DIGITS = 16


def dir_journal(ino: int) -> str:
    return f"d/{ino}"


def inode_journal(ino: int) -> str:
    return f"i/{ino}"


def journal_ino(jid: str) -> int:
    return int(jid.split("/", 1)[1])


def record_key(seq: int) -> str:
    return f"j/{seq:0{SEQ_DIGITS}d}"


def record_seq(name: str) -> int:
    return int(name[2:])


def snapshot_key(seq: int, part: int) -> str:
    return f"s/{seq:0{SEQ_DIGITS}d}/{part:04d}"


def snapshot_seq(name: str) -> int:
    return int(name.split("/")[1])


def lock_partition(ino: int) -> str:
    return f"lk/{ino}"


def block_id(ino: int, wid: str) -> str:
    return f"{ino}.{wid}"


def ask_partition(session: str) -> str:
    """Where other mounts ask ``session`` to release its write-behind leases (``wb/<session>``,
    one item per asked journal and asker): the holder polls this one partition while it holds any."""
    return f"wb/{session}"
