#!/usr/bin/env python3
"""Fails unless the README shows examples/linear.c and its output verbatim."""
import re
import sys

readme_path, example_path, expected_path = sys.argv[1:4]
readme = open(readme_path).read()
m = re.search(r"<!-- example: examples/linear.c -->\n```c\n(.*?)```\n\nIt prints:\n\n```\n(.*?)```",
              readme, re.S)
if not m:
    sys.exit("README has no example block")
if m.group(1) != open(example_path).read():
    sys.exit("README's example differs from %s" % example_path)
if m.group(2) != open(expected_path).read():
    sys.exit("README's example output differs from %s" % expected_path)
print("README example matches")
