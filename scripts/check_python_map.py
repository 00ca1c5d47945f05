#!/usr/bin/env python3
"""Checks docs/python_to_c.md, the Python->C table (issue 16).

1. Every C name the file cites in backticks (mp_..., MP_..., and struct.field) is
   declared in include/ (a function, type, macro, enum member, MP_E* code of
   MP_ERRNO_MAP, or a field of that struct): comments do not count.
2. Every table row has a C counterpart or, with "—", a reason in its notes.
3. With a Python 3.13 (--python PATH, else python3.13 on PATH, else pyenv's 3.13.*):
   every name of each module's __all__ has a row in that module's section, and so has
   every public member of the documented classes. Without one this part is skipped.

Usage: python3 scripts/check_python_map.py [--python PATH] [repo root]
Exit 1 with one line per problem.
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys

NONE = "—"

# Runs under the Python 3.13 being compared against: prints {module: [names]} for the
# modules' __all__ and {section: {row prefix: [members]}} for the documented classes.
PROBE = r'''
import ast, importlib, json, os, sys, threading
import multiprocessing
pkg = os.path.dirname(multiprocessing.__file__)
mods = ["multiprocessing"] + ["multiprocessing." + m for m in (
    "context", "connection", "managers", "pool", "process", "queues", "synchronize",
    "sharedctypes", "shared_memory", "heap", "reduction", "util", "dummy",
    "dummy.connection", "spawn", "forkserver", "resource_tracker", "resource_sharer",
    "popen_fork", "popen_forkserver", "popen_spawn_posix", "popen_spawn_win32")]

def static_all(path):
    # __all__ of a module that does not import here (popen_spawn_win32 on posix), with
    # every platform's "__all__ += [...]".
    names = []
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
                if isinstance(node.value, (ast.List, ast.Tuple)):
                    names += [e.value for e in node.value.elts if isinstance(e, ast.Constant)]
    return names

alls = {}
for m in mods:
    path = os.path.join(pkg, *m.split(".")[1:])
    path = path + "/__init__.py" if os.path.isdir(path) else path + ".py"
    names = static_all(path) if m != "multiprocessing" else []
    try:
        names += list(getattr(importlib.import_module(m), "__all__", []))
    except ImportError:
        pass
    alls[m] = sorted(set(n for n in names if n != "__all__"))

import multiprocessing.process as P, multiprocessing.connection as C
import multiprocessing.queues as Q, multiprocessing.synchronize as S
import multiprocessing.pool as PL, multiprocessing.managers as M
import multiprocessing.shared_memory as SM, multiprocessing.util as U
semlock = ["acquire", "release"]  # methods of the C type _multiprocessing.SemLock
classes = [  # section, class, row prefixes that may document a member, extra members
    ("multiprocessing.process", P.BaseProcess, ["Process"], []),
    ("multiprocessing.connection", C.Connection, ["Connection"], []),
    ("multiprocessing.connection", C.Listener, ["Listener"], []),
    ("multiprocessing.queues", Q.Queue, ["Queue"], []),
    ("multiprocessing.queues", Q.SimpleQueue, ["SimpleQueue"], []),
    ("multiprocessing.queues", Q.JoinableQueue, ["JoinableQueue", "Queue"], []),
    ("multiprocessing.synchronize", S.Lock, ["Lock"], semlock),
    ("multiprocessing.synchronize", S.RLock, ["RLock"], semlock),
    ("multiprocessing.synchronize", S.Semaphore, ["Semaphore"], semlock),
    ("multiprocessing.synchronize", S.BoundedSemaphore, ["BoundedSemaphore", "Semaphore"], semlock),
    ("multiprocessing.synchronize", S.Condition, ["Condition"], []),
    ("multiprocessing.synchronize", S.Event, ["Event"], []),
    ("multiprocessing.synchronize", S.Barrier, ["Barrier"], []),
    ("multiprocessing.pool", PL.Pool, ["Pool"], []),
    ("multiprocessing.pool", PL.ApplyResult, ["AsyncResult"], []),
    ("multiprocessing.managers", M.BaseManager, ["BaseManager"], ["shutdown"]),
    ("multiprocessing.managers", M.SyncManager, ["SyncManager", "BaseManager"], ["shutdown"]),
    ("multiprocessing.managers", M.SharedMemoryManager, ["SharedMemoryManager", "BaseManager"], ["shutdown"]),
    ("multiprocessing.managers", M.BaseProxy, ["BaseProxy"], ["_callmethod", "_getvalue"]),
    ("multiprocessing.shared_memory", SM.SharedMemory, ["SharedMemory"], []),
    ("multiprocessing.shared_memory", SM.ShareableList, ["ShareableList"], []),
    ("multiprocessing.util", U.Finalize, ["Finalize"], []),
]
members = []
for section, cls, prefixes, extra in classes:
    names = set(extra)
    for k in cls.__mro__:
        if k.__module__.startswith(("multiprocessing", "threading")):
            names |= {n for n in vars(k) if not n.startswith("_")}
    members.append([section, prefixes, sorted(names)])
print(json.dumps({"version": sys.version.split()[0], "all": alls, "members": members}))
'''


def strip_comments(text):
    return re.sub(r"//[^\n]*", "", re.sub(r"/\*.*?\*/", " ", text, flags=re.S))


def declared(root):
    """Names declared in include/ and the field names of each struct."""
    names, fields = set(), {}
    paths = glob.glob(os.path.join(root, "include", "*.h"))
    paths += glob.glob(os.path.join(root, "include", "multiproc", "*.h*"))
    for path in paths:
        raw = open(path, encoding="utf-8").read()
        names |= {"MP_" + e for e in re.findall(r"\bX\((E[A-Z0-9_]+),", raw)}
        text = strip_comments(raw)
        for line in text.splitlines():
            if "MP_API" in line or "static inline" in line:
                names |= set(re.findall(r"\b(mp_\w+)\s*\(", line))
        names |= set(re.findall(r"\(\*\s*(mp_\w+)\)\s*\(", text))  # function pointer types
        names |= set(re.findall(r"#define\s+(MP_\w+)", text))
        names |= set(re.findall(r"\btypedef\s+(?:struct|enum)\s+(mp_\w+)", text))
        names |= set(re.findall(r"\btypedef\b[^;{]*?\b(mp_\w+)\s*;", text))
        names |= set(re.findall(r"^\}\s*(mp_\w+)\s*;", text, re.M))
        for body in re.findall(r"\benum\s*\w*\s*\{(.*?)\}", text, re.S):
            names |= set(re.findall(r"\b(MP_[A-Z0-9_]+)\s*(?:=|,|$)", body))
        for name, body in re.findall(r"\bstruct\s+(mp_\w+)\s*\{(.*?)\}\s*\w*\s*;", text, re.S):
            fields[name] = set(re.findall(r"\b(\w+)\s*(?:;|\)\s*\()", body))
    return names, fields


def sections(doc):
    """[(modules of the heading, [rows as lists of cells])] in order."""
    out = []
    for line in doc.splitlines():
        if line.startswith("## "):
            out.append((re.findall(r"`([\w.]+)`", line), []))
        elif line.startswith("|") and out:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 3 and not set(cells[0]) <= set("-: ") and cells[0] != "Python name":
                out[-1][1].append(cells)
    return out


def find_python():
    """A Python 3.13 of this machine: pyenv's, else python3.13 on PATH (a pyenv shim
    there may fail when that version is not selected)."""
    home = os.path.expanduser("~")
    hits = sorted(glob.glob(os.path.join(home, ".pyenv", "versions", "3.13.*", "bin", "python3")))
    return hits[-1] if hits else shutil.which("python3.13")


def main(argv):
    python, rest = None, []
    it = iter(argv)
    for a in it:
        if a == "--python":
            python = next(it, None)
        else:
            rest.append(a)
    root = rest[0] if rest else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    doc = open(os.path.join(root, "docs", "python_to_c.md"), encoding="utf-8").read()
    problems = []

    names, fields = declared(root)
    cited = set()
    for span in re.findall(r"`([^`\n]+)`", doc):
        # "MP_E*" names a family, not one identifier.
        cited |= set(re.findall(r"\b((?:mp|MP)_\w+(?![\w*])(?:\.\w+)?)", span))
    for c in sorted(cited):
        base, _, field = c.partition(".")
        if base not in names:
            problems.append(f"not declared in include/: {c}")
        elif field and field not in fields.get(base, ()):
            problems.append(f"no field {field} in struct {base}")

    secs = sections(doc)
    nrows = 0
    for mods, rows in secs:
        for cells in rows:
            nrows += 1
            has_c = re.search(r"`[^`]*\b(?:mp|MP)_\w+", cells[1])
            if not has_c and not (cells[1] == NONE and cells[2]):
                problems.append(f"row without a C name or a reason: {cells[0]}")

    covered = "skipped (no Python 3.13 found; --python PATH)"
    given = python is not None
    python = python or find_python()
    if python:
        try:
            probe = json.loads(subprocess.run([python, "-c", PROBE], check=True,
                                              capture_output=True, text=True).stdout)
        except (OSError, subprocess.CalledProcessError, ValueError) as e:
            probe = None
            covered = f"not run ({python} failed)"
            if given:
                problems.append(f"cannot ask {python} for its names: {e}")
            else:
                covered = f"skipped ({python} does not run; --python PATH)"
        if probe and not probe["version"].startswith("3.13"):
            problems.append(f"{python} is Python {probe['version']}, not 3.13")
        elif probe:
            firsts = {}
            for mods, rows in secs:
                for m in mods:
                    firsts.setdefault(m, []).extend(cells[0] for cells in rows)

            def has_row(module, name):
                pat = re.compile(r"(^|[`,(\s])" + re.escape(name) + r"([`(\s.\[,]|$)")
                return any(pat.search(f) for f in firsts.get(module, ()))

            n = 0
            for module, all_names in probe["all"].items():
                if module not in firsts:
                    problems.append(f"no section for {module}")
                    continue
                for name in all_names:
                    n += 1
                    if not has_row(module, name):
                        problems.append(f"{module}.{name} (in __all__) has no row")
            for module, prefixes, member_names in probe["members"]:
                for name in member_names:
                    n += 1
                    if not any(has_row(module, p + "." + name) for p in prefixes):
                        problems.append(f"{module}: {prefixes[0]}.{name} has no row")
            covered = f"{n} Python names of {probe['version']} ({python}) have rows"

    for p in problems:
        print("python_to_c.md: " + p)
    print(f"check_python_map: {len(cited)} C names cited, {nrows} rows; coverage: {covered}"
          + ("" if not problems else f"; {len(problems)} problem(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
