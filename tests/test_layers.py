"""One-way layers (DESIGN.md "Layout", docs/HACKING.md): a source folder never
includes a header from a folder above it.  Lower layers report upward through
callbacks and result structs.

The order, bottom first, is written here once.  KNOWN would list upward
includes tolerated for a while (none are); it may only shrink: an entry
that no longer occurs fails the test too, so that it is deleted.
"""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LAYERS = ["base", "config", "io", "metrics", "retry", "routing", "consistency", "proxy"]

# (including file, included header) pairs still pointing upward: none left.
KNOWN = set()

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def _sources():
    for layer in LAYERS:
        d = os.path.join(ROOT, layer)
        for name in sorted(os.listdir(d)):
            if name.endswith((".c", ".h", ".def")):
                yield layer, "%s/%s" % (layer, name)


RANK = {name: i for i, name in enumerate(LAYERS)}


def _upward_in(layer, path, text):
    """The headers named by text's #include lines that live above layer."""
    out = []
    for inc in INCLUDE.findall(text):
        top = inc.split("/", 1)[0]
        assert "/" in inc and top in RANK, \
            "%s includes \"%s\": includes name the folder (layer/file.h)" % (path, inc)
        if RANK[top] > RANK[layer]:
            out.append(inc)
    return out


def _upward():
    found = set()
    for layer, path in _sources():
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            found.update((path, inc) for inc in _upward_in(layer, path, f.read()))
    return found


def test_every_source_folder_is_a_layer():
    skip = {"tests", "fuzz", "bench", "docker", "docs", "examples", "scripts", "build"}  # fuzz: harnesses, like tests
    dirs = set()
    for name in os.listdir(ROOT):
        full = os.path.join(ROOT, name)
        if name.startswith(".") or name in skip or name.startswith("build") \
                or not os.path.isdir(full):
            continue
        if any(f.endswith((".c", ".h")) for f in os.listdir(full)):
            dirs.add(name)
    assert dirs == set(LAYERS)


def test_no_new_upward_include():
    new = sorted(_upward() - KNOWN)
    assert not new, "upward includes (lower layer -> higher layer): %s" % new


def test_known_list_only_shrinks():
    gone = sorted(KNOWN - _upward())
    assert not gone, "no longer upward, delete from KNOWN: %s" % gone


def test_check_sees_an_upward_include():
    # The check itself can fail: upward and sideways-unnamed includes are seen.
    text = '#include "base/util.h"\n#  include "proxy/app.h"\n#include "io/redis.h"\n'
    assert _upward_in("routing", "routing/x.c", text) == ["proxy/app.h"]
    assert _upward_in("proxy", "proxy/x.c", text) == []
    try:
        _upward_in("base", "base/x.c", '#include "util.h"\n')
    except AssertionError:
        pass
    else:
        raise AssertionError("an include without its folder was accepted")
