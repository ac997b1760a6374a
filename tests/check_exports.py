#!/usr/bin/env python3
"""The shared library exports exactly the public API: every function declared
with M2PT_API in include/m2pt/*.h, and no other symbol (lib/m2pt.map).

usage: check_exports.py LIBM2PT.so INCLUDE_DIR"""
import pathlib
import re
import subprocess
import sys

# M2PT_API <return type> m2pt_name(  -- the declaration may span lines.
DECLARATION = re.compile(r"\bM2PT_API\b[^;{}()]*?\b(m2pt_\w+)\s*\(")


def declared(include_dir):
    names = {}
    for header in sorted(pathlib.Path(include_dir).glob("*.h")):
        text = re.sub(r"/\*.*?\*/", " ", header.read_text(), flags=re.S)
        for name in DECLARATION.findall(text):
            names[name] = header.name
    return names


def exported(library):
    out = subprocess.run(["nm", "-D", "--defined-only", library], check=True,
                         capture_output=True, text=True).stdout
    symbols = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 2:
            # Drop a version suffix ("m2pt_x@@M2PT_0"); there is none today.
            symbols.add(fields[-1].split("@")[0])
    return symbols


def main():
    library, include_dir = sys.argv[1], sys.argv[2]
    api = declared(include_dir)
    symbols = exported(library)
    failures = []
    if len(api) < 50:
        failures.append("found only %d declarations in %s: is the pattern stale?"
                        % (len(api), include_dir))
    for name in sorted(set(api) - symbols):
        failures.append("declared in %s but not exported: %s" % (api[name], name))
    for name in sorted(symbols - set(api)):
        failures.append("exported but not declared in include/m2pt: %s" % name)
    for line in failures:
        print(line)
    print("%d functions declared, %d symbols exported" % (len(api), len(symbols)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
