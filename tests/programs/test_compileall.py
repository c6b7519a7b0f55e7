"""python -m compileall on packages copied onto the mount, then imported from it: the bytecode
written there is valid and used (the sources' mtimes and sizes match what the .pyc headers
recorded), by root and by an unprivileged user who cannot write there."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from .treeutil import run

PROBE = """
import sys
sys.path.insert(0, {lib!r})
import json, email.parser, email.mime.text
assert json.__file__.startswith({lib!r}), json.__file__
assert email.__file__.startswith({lib!r}), email.__file__
msg = email.parser.Parser().parsestr("Subject: on dynlog\\n\\nbody\\n")
print(json.dumps({{"subject": msg["Subject"], "mime": email.mime.text.MIMEText("x")["Content-Type"]}}))
"""


def pycs(lib: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in lib.rglob("*.pyc")}


def from_bytecode(stderr: bytes, lib: Path) -> set[str]:
    """Module files that ``python -v`` reports as loaded from bytecode under ``lib``."""
    out = set()
    for line in stderr.decode(errors="replace").splitlines():
        if line.startswith("# code object from ") and str(lib) in line:
            out.add(line.split("'")[1])
    return out


@pytest.mark.timeout(180)
def test_compileall_and_import(mnt: Path, source_tree: Path) -> None:
    lib = mnt / "lib"
    lib.mkdir()
    for pkg in ("json", "email"):
        run("cp", "-a", source_tree / "lib" / pkg, lib / pkg)
    sources = sorted(lib.rglob("*.py"))
    run(sys.executable, "-m", "compileall", "-q", lib)
    compiled = pycs(lib)
    assert len(compiled) == len(sources) > 30
    # a second run finds everything up to date and writes nothing
    run(sys.executable, "-m", "compileall", "-q", lib)
    assert pycs(lib) == compiled
    # import from the mount: the bytecode is used, nothing is recompiled
    res = run(sys.executable, "-I", "-S", "-v", "-c", PROBE.format(lib=str(lib)))
    assert res.stdout.strip() == b'{"subject": "on dynlog", "mime": "text/plain; charset=\\"us-ascii\\""}'
    loaded = from_bytecode(res.stderr, lib)
    assert {str(lib / "json" / "__pycache__" / f"decoder.{sys.implementation.cache_tag}.pyc"),
            str(lib / "email" / "__pycache__" / f"parser.{sys.implementation.cache_tag}.pyc")} <= loaded
    assert pycs(lib) == compiled
    # an unprivileged user (who could not write a .pyc there) imports from the same bytecode
    os.chmod(mnt, 0o755)
    res = run("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-I", "-S", "-v", "-c",
              PROBE.format(lib=str(lib)))
    assert b"on dynlog" in res.stdout and len(from_bytecode(res.stderr, lib)) >= 5
    # a changed source is recompiled: its .pyc is rewritten, the others are kept
    target = lib / "json" / "tool.py"
    target.write_text(target.read_text() + "\nCHANGED_ON_DYNLOG = True\n")
    run(sys.executable, "-m", "compileall", "-q", lib)
    after = pycs(lib)
    changed = {p for p in after if after[p] != compiled[p]}
    assert changed == {lib / "json" / "__pycache__" / f"tool.{sys.implementation.cache_tag}.pyc"}
    res = run(sys.executable, "-I", "-S", "-c",
              f"import sys; sys.path.insert(0, {str(lib)!r}); import json.tool; print(json.tool.CHANGED_ON_DYNLOG)")
    assert res.stdout.strip() == b"True"
