#!/usr/bin/env python3
"""Checks that every header under include/segnet/ includes only the folders that
docs/architecture.md's folder map allows for its own folder: the table there is the rule, this
script enforces it (CTest `layering`, run by .ci/run).

    scripts/check_layering.py              # exit 0, or 1 with one line per forbidden include
    scripts/check_layering.py --self-test  # proves that a forbidden include is caught

A header may include its own folder and the folders its row's "may include" cell names in
backticks (`core/`, `backend/cpu/`); other words there (Eigen, CUDA) are outside the library.
The row `segnet/` is the folder's top level (the umbrella header).
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]segnet/([^">]+)[">]')


def folder_rules(architecture_md):
    """{folder: set of folders it may include} from the 'may include' table of the page."""
    rules = {}
    with open(architecture_md) as f:
        lines = f.read().splitlines()
    header = None
    for line in lines:
        if not line.startswith("|"):
            header = None if rules else header
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            if "may include" in cells:
                header = cells
            continue
        if set(line) <= set("|-: "):
            continue
        folder = re.findall(r"`([^`]+)`", cells[0])
        allowed = re.findall(r"`([a-z_/]+/)`", cells[header.index("may include")])
        if folder:
            rules[folder[0].rstrip("/")] = {a.rstrip("/") for a in allowed}
    if not rules:
        sys.exit("check_layering: %s has no table with a 'may include' column" % architecture_md)
    return rules


def header_folder(path, include_root):
    rel = os.path.relpath(os.path.dirname(path), include_root)
    return "segnet" if rel == "." else rel


def violations(include_root, rules):
    found = []
    for base, _, files in os.walk(include_root):
        for name in sorted(files):
            if not name.endswith((".hpp", ".cuh", ".h")):
                continue
            path = os.path.join(base, name)
            folder = header_folder(path, include_root)
            if folder not in rules:
                found.append("%s: folder '%s/' has no row in the folder map" % (path, folder))
                continue
            with open(path) as f:
                for number, line in enumerate(f, 1):
                    m = INCLUDE.match(line)
                    if not m:
                        continue
                    target = os.path.dirname(m.group(1)) or "segnet"
                    if target == folder or target in rules[folder]:
                        continue
                    allowed = ", ".join(sorted(a + "/" for a in rules[folder])) or "nothing of segnet"
                    found.append("%s:%d: %s/ may not include %s/ (segnet/%s); the folder map allows: %s" %
                                 (os.path.relpath(path, os.path.dirname(os.path.dirname(include_root))), number,
                                  folder, target, m.group(1), allowed))
    return found


def check(root):
    rules = folder_rules(os.path.join(root, "docs", "architecture.md"))
    found = violations(os.path.join(root, "include", "segnet"), rules)
    for line in found:
        print(line)
    if not found:
        print("check_layering: ok (%d folders)" % len(rules))
    return 1 if found else 0


def self_test():
    """A copy of the tree where core/ includes layers/ must fail, naming the file and the rule."""
    with tempfile.TemporaryDirectory() as tmp:
        for part in ("include", "docs"):
            shutil.copytree(os.path.join(ROOT, part), os.path.join(tmp, part))
        victim = os.path.join(tmp, "include", "segnet", "core", "shape.hpp")
        with open(victim, "a") as f:
            f.write('\n#include "segnet/layers/conv.hpp"\n')
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "--root", tmp], capture_output=True, text=True)
        caught = [l for l in p.stdout.splitlines() if "core/shape.hpp:" in l and "core/ may not include layers/" in l]
        if p.returncode == 1 and caught:
            print("check_layering: self-test ok: " + caught[0])
            return 0
        print("check_layering: self-test FAILED: a core/ header including layers/ was not reported "
              "(exit %d):\n%s%s" % (p.returncode, p.stdout, p.stderr))
        return 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=ROOT, help="the source tree (default: this checkout)")
    ap.add_argument("--self-test", action="store_true", help="check that a forbidden include is reported")
    args = ap.parse_args()
    sys.exit(self_test() if args.self_test else check(args.root))


if __name__ == "__main__":
    main()
