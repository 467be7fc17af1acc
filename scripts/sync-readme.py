#!/usr/bin/env python3
"""Copy examples/quorumgate.yaml into README.md between the example markers
(tests/integration/test_docs.py fails when they differ)."""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN, END = "<!-- example:begin -->", "<!-- example:end -->"


def block(example):
    return "%s\n```yaml\n%s```\n%s" % (BEGIN, example, END)


def main():
    readme = open(os.path.join(ROOT, "README.md")).read()
    example = open(os.path.join(ROOT, "examples", "quorumgate.yaml")).read()
    pat = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pat.search(readme):
        sys.exit("README.md has no example markers")
    new = pat.sub(lambda m: block(example), readme)
    if new != readme:
        open(os.path.join(ROOT, "README.md"), "w").write(new)
        print("README.md updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
