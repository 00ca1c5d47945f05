#!/usr/bin/env python3
"""Checks that the API reference lists each public function's errors (docs/reference.md).

Reads include/multiproc.h and include/multiproc/*.h and, for every MP_API declaration:
1. a function returning int has an error list in the Doxygen comment just before it:
   "@retval MP_E...  condition" lines, or an "@par Errors" paragraph (which also says
   "None" for the few int functions that return a count, a level or an OS number, not
   a code). The comment counts only when nothing but space separates it from MP_API;
2. every MP_E* name cited in a doc comment is a code of MP_ERRNO_MAP in
   include/multiproc.h (or MP_OK).

Usage: python3 scripts/check_reference_errors.py [repo root]
Exit 1 with one line per problem (header:line: function: what is missing).
"""
import glob
import os
import re
import sys


def codes(root):
    text = open(os.path.join(root, "include", "multiproc.h"), encoding="utf-8").read()
    names = set("MP_" + m for m in re.findall(r"\bX\((E[A-Z0-9_]+)\s*,", text))
    if not names:
        sys.exit("check_reference_errors: no MP_ERRNO_MAP found in include/multiproc.h")
    names.add("MP_OK")
    return names


# A doc comment, then (blank space only) one MP_API declaration up to its '(' .
DECL = re.compile(r"/\*\*(?P<doc>(?:(?!\*/).)*?)\*/\s*(?=MP_API)|"
                  r"MP_API\s+(?P<ret>[^;(]*?)\b(?P<name>mp_\w+)\s*\(", re.S)


def check(root):
    known = codes(root)
    headers = [os.path.join(root, "include", "multiproc.h")]
    headers += sorted(glob.glob(os.path.join(root, "include", "multiproc", "*.h")))
    problems = []
    count = 0
    for path in headers:
        text = open(path, encoding="utf-8").read()
        rel = os.path.relpath(path, root)
        # MP_E* names cited in any doc comment of the header.
        for m in re.finditer(r"/\*\*.*?\*/", text, re.S):
            for name in re.findall(r"\bMP_E[A-Z0-9_]*\b(?!\*|\.\.\.)", m.group(0)):
                if name not in known:
                    line = text.count("\n", 0, m.start()) + 1
                    problems.append("%s:%d: %s is not an MP_E* code of MP_ERRNO_MAP"
                                    % (rel, line, name))
        doc = None
        for m in DECL.finditer(text):
            if m.group("doc") is not None:
                doc = m.group("doc")
                continue
            ret = " ".join(m.group("ret").split())
            name = m.group("name")
            line = text.count("\n", 0, m.start()) + 1
            this_doc, doc = doc, None
            # The comment belongs to this declaration only if nothing but space is between.
            if this_doc is not None:
                end = text.rfind("*/", 0, m.start())
                if text[end + 2:m.start()].strip():
                    this_doc = None
            if ret != "int":
                continue
            count += 1
            if this_doc is None:
                problems.append("%s:%d: %s: no doc comment (and so no error list)"
                                % (rel, line, name))
            elif not re.search(r"@retval\s+MP_E|@par\s+Errors", this_doc):
                problems.append("%s:%d: %s: no error list (@retval MP_E... or @par Errors)"
                                % (rel, line, name))
    if count == 0:
        problems.append("include/: no MP_API function returning int found (the parser is out of "
                        "step with the headers)")
    return problems, count


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    problems, count = check(os.path.abspath(root))
    for p in problems:
        print(p)
    if problems:
        print("check_reference_errors: FAILED: %d problem(s)" % len(problems))
        return 1
    print("check_reference_errors: OK (%d int functions list their errors)" % count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
