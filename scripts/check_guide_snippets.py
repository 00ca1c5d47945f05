#!/usr/bin/env python3
"""Checks docs/guide.md (ctest guide_snippets, with tests/guide_snippets.cmake).

  check_guide_snippets.py [--root DIR] [--out DIR]

1. Every C name the guide cites (mp_* and MP_* in `code spans` and in ```c blocks) is
   declared in include/ (the same reading of the headers as check_python_map.py), so
   the guide invents no function. Environment variables (MP_START_METHOD...) are not
   C names and are allowed by name.
2. With --out, every ```c block whose first line is the comment
   `/* guide: program */` is a complete program: it is written to DIR/guide_N.c (N
   counts programs from 1, in the order of the page), and the names of the files are
   printed one per line. Other blocks are fragments and are skipped. DIR is emptied of
   earlier guide_*.c files first, so a removed program does not linger.

Exit status: 0, or 1 with the problems on stderr (an unknown name, no program found).
"""
import glob
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_python_map import declared  # noqa: E402

MARK = "/* guide: program */"
# Not C names: environment variables the guide mentions.
ENV_VARS = {"MP_START_METHOD", "MP_FORKSERVER_WARM"}


def c_blocks(doc):
    """The bodies of the ```c fenced blocks, in order."""
    return re.findall(r"^```c[ \t]*\n(.*?)^```[ \t]*$", doc, re.S | re.M)


def main(argv):
    root, out = None, None
    it = iter(argv)
    for a in it:
        if a == "--root":
            root = next(it, None)
        elif a == "--out":
            out = next(it, None)
        else:
            print(f"usage: {os.path.basename(__file__)} [--root DIR] [--out DIR]", file=sys.stderr)
            return 2
    root = root or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    doc = open(os.path.join(root, "docs", "guide.md"), encoding="utf-8").read()
    problems = []

    names, _ = declared(root)
    blocks = c_blocks(doc)
    prose = re.sub(r"^```.*?^```[ \t]*$", "", doc, flags=re.S | re.M)
    cited = set()
    for text in re.findall(r"`([^`\n]+)`", prose) + blocks:
        # "MP_E*" names a family, not one identifier.
        cited |= set(re.findall(r"\b((?:mp|MP)_\w+)\b(?!\*)", text))
    for name in sorted(cited - ENV_VARS):
        if name not in names:
            problems.append(f"docs/guide.md cites {name}, which include/ does not declare")

    programs = [b for b in blocks if b.lstrip().startswith(MARK)]
    if not programs:
        problems.append(f"docs/guide.md has no ```c block starting with {MARK}")
    if out is not None:
        os.makedirs(out, exist_ok=True)
        for old in glob.glob(os.path.join(out, "guide_*.c")):
            os.remove(old)
        for i, body in enumerate(programs, 1):
            path = os.path.join(out, f"guide_{i}.c")
            with open(path, "w", encoding="utf-8") as f:
                f.write(body)
            print(path)

    for p in problems:
        print(f"check_guide_snippets: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
