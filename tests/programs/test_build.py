"""A C project built on the mount with gcc, ar and make, as a build farm would: objects, a static
library, a shared library, an executable that runs from the mount and loads that library from it,
and make's incremental rebuild, which trusts the mount's mtimes to the nanosecond."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .treeutil import run

SOURCES = {
    "include/calc.h": "#ifndef CALC_H\n#define CALC_H\n#define SCALE 1\nint add(int a, int b);\nint mul(int a, int b);\n#endif\n",
    "include/greet.h": "const char *greeting(void);\n",
    "src/add.c": '#include "calc.h"\nint add(int a, int b) { return (a + b) * SCALE; }\n',
    "src/mul.c": '#include "calc.h"\nint mul(int a, int b) { return a * b * SCALE; }\n',
    "src/greet.c": '#include "greet.h"\nconst char *greeting(void) { return "hello from a shared library"; }\n',
    "src/main.c": (
        '#include <stdio.h>\n#include "calc.h"\n#include "greet.h"\n'
        'int main(void) { printf("%s: %d %d\\n", greeting(), add(2, 3), mul(4, 5)); return 0; }\n'
    ),
    # $$ORIGIN: the executable finds libgreet.so beside it, on the mount, through the dynamic loader
    "Makefile": (
        "CFLAGS = -O1 -Iinclude -MMD -MP\n"
        "OBJS = build/add.o build/mul.o\n"
        "all: build/app\n"
        "build/%.o: src/%.c | build\n\t$(CC) $(CFLAGS) -c $< -o $@\n"
        "build/pic-%.o: src/%.c | build\n\t$(CC) $(CFLAGS) -fPIC -c $< -o $@\n"
        "build/libcalc.a: $(OBJS)\n\trm -f $@\n\tar rcs $@ $^\n"
        "build/libgreet.so: build/pic-greet.o\n\t$(CC) -shared -o $@ $^\n"
        "build/app: build/main.o build/libcalc.a build/libgreet.so\n"
        "\t$(CC) -o $@ build/main.o -Lbuild -lcalc -lgreet -Wl,-rpath,'$$ORIGIN'\n"
        "build:\n\tmkdir -p $@\n"
        "clean:\n\trm -rf build\n"
        "-include $(wildcard build/*.d)\n"
        ".PHONY: all clean\n"
    ),
}


def mtimes(build: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in build.iterdir() if p.suffix in (".o", ".a", ".so") or p.name == "app"}


@pytest.mark.timeout(180)
def test_make_builds_runs_and_rebuilds_incrementally(mnt: Path, prog_env: dict[str, str]) -> None:
    for rel, text in SOURCES.items():
        (mnt / rel).parent.mkdir(parents=True, exist_ok=True)
        (mnt / rel).write_text(text)
    run("make", "-j2", cwd=mnt, env=prog_env)
    build = mnt / "build"
    app = build / "app"
    assert os.access(app, os.X_OK)
    assert run(app, env=prog_env).stdout == b"hello from a shared library: 5 20\n"
    assert run("ar", "t", build / "libcalc.a").stdout.split() == [b"add.o", b"mul.o"]
    # up to date: make -q answers 0 and a second make rebuilds nothing
    before = mtimes(build)
    assert subprocess.run(["make", "-q"], cwd=mnt, env=prog_env).returncode == 0
    run("make", cwd=mnt, env=prog_env)
    assert mtimes(build) == before
    # an edit to the header (sed -i: a new file renamed over the old) rebuilds what includes it
    run("sed", "-i", "s/#define SCALE 1/#define SCALE 10/", mnt / "include" / "calc.h")
    assert subprocess.run(["make", "-q"], cwd=mnt, env=prog_env).returncode == 1
    run("make", cwd=mnt, env=prog_env)
    after = mtimes(build)
    rebuilt = {name for name in after if after[name] != before[name]}
    assert rebuilt == {"add.o", "mul.o", "main.o", "libcalc.a", "app"}
    assert run(app, env=prog_env).stdout == b"hello from a shared library: 50 200\n"
    run("make", "clean", cwd=mnt, env=prog_env)
    assert not build.exists()
