#!/usr/bin/env python3
"""Runs a program and fails unless its stdout equals the expected text file."""
import subprocess
import sys

expected_path, program = sys.argv[1], sys.argv[2:]
with open(expected_path) as f:
    expected = f.read()
result = subprocess.run(program, capture_output=True, text=True)
sys.stderr.write(result.stderr)
if result.returncode != 0:
    sys.exit("%s exited with %d" % (program[0], result.returncode))
if result.stdout != expected:
    sys.exit("output differs\n--- expected\n%s--- got\n%s" % (expected, result.stdout))
print("output matches %s" % expected_path)
