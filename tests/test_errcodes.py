"""The envelope error codes quorumgate answers itself are declared once, in
base/errcodes.def (code, HTTP status, default message):

- the README's table "Errors quorumgate answers itself" lists exactly those
  codes with those statuses;
- no source names a code as a string at an emission site (call sites use
  enum errcode); KNOWN lists files not converted yet (it may only shrink:
  an entry that no longer has such a site fails the test too), and every
  code they name must still be in the table with the status they use.
"""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = ["base", "config", "io", "metrics", "retry", "routing", "consistency", "proxy"]

# files that still spell codes at their emission sites (none)
KNOWN = set()

_ENTRY = re.compile(r'ERRCODE\((\w+),\s*(\d+),\s*((?:"(?:[^"\\]|\\.)*"\s*)+)\)')
# an envelope answer with a literal code: f(..., [status,] "CODE", ...)
_SITE = re.compile(
    r'\b(\w*(?:envelope_error|respond_error|local_error|answer_error|'
    r'as_upstream_or))\(([^;]*?)"([A-Z][A-Z0-9_]{3,})"', re.S)
_ASSIGN = re.compile(r'error_code\s*=[^;]*?"([A-Z][A-Z0-9_]{3,})"', re.S)


def table():
    with open(os.path.join(ROOT, "base", "errcodes.def"), encoding="utf-8") as f:
        text = f.read()
    out = {}
    for m in _ENTRY.finditer(text):
        assert m.group(1) not in out, "%s declared twice" % m.group(1)
        msg = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(3)))
        out[m.group(1)] = (int(m.group(2)), msg)
    return out


def readme_rows():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    start = text.index("**Errors quorumgate answers itself**")
    rows = {}
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            m = re.match(r"\|\s*(\d{3})\s*\|\s*`([A-Z0-9_]+)`\s*\|", line)
            if m:
                assert m.group(2) not in rows, "README lists %s twice" % m.group(2)
                rows[m.group(2)] = int(m.group(1))
        elif rows:
            break
    return rows


def sources():
    for layer in LAYERS:
        for name in sorted(os.listdir(os.path.join(ROOT, layer))):
            if name.endswith(".c"):
                path = "%s/%s" % (layer, name)
                with open(os.path.join(ROOT, path), encoding="utf-8") as f:
                    yield path, f.read()


def literal_sites(text):
    """(code, status or None) of each emission site naming a code as a string."""
    out = []
    for m in _SITE.finditer(text):
        st = re.findall(r"\b([1-5]\d\d)\b", m.group(2))
        out.append((m.group(3), int(st[-1]) if st else None))
    out.extend((code, None) for code in _ASSIGN.findall(text))
    return out


def test_table_is_sound():
    t = table()
    assert len(t) >= 15
    for code, (status, msg) in t.items():
        assert 400 <= status <= 599, (code, status)
        assert msg.strip(), code


def test_readme_lists_the_table():
    t = table()
    rows = readme_rows()
    assert rows == {c: s for c, (s, _m) in t.items()}, (
        "README table vs base/errcodes.def: only in README %s, only in the table %s, "
        "status differs %s" % (
            sorted(set(rows) - set(t)), sorted(set(t) - set(rows)),
            sorted(c for c in set(rows) & set(t) if rows[c] != t[c][0])))


def test_no_code_is_spelled_at_an_emission_site():
    t = table()
    found = set()
    for path, text in sources():
        if path == "base/errcodes.c":
            continue
        sites = literal_sites(text)
        if not sites:
            continue
        found.add(path)
        assert path in KNOWN, "%s names envelope codes as strings: %s (use enum errcode)" % (
            path, sorted({c for c, _s in sites}))
        for code, status in sites:
            assert code in t, "%s answers %s, which base/errcodes.def lacks" % (path, code)
            assert status is None or status == t[code][0], (path, code, status)
    assert found == KNOWN, "KNOWN lists files that no longer spell codes: %s" % sorted(
        KNOWN - found)


def test_the_checks_can_fail():
    # a literal site is seen, with its status
    assert literal_sites('request_answer_error(rq, 503, "PROXY_GATE_BUSY", NULL);') == [
        ("PROXY_GATE_BUSY", 503)]
    assert literal_sites('listener_respond_error(ex, l, 413,\n "REQUEST_ENTITY_TOO_LARGE", m);') \
        == [("REQUEST_ENTITY_TOO_LARGE", 413)]
    assert literal_sites('ex->error_code = "REQUEST_TIMEOUT";') == [("REQUEST_TIMEOUT", None)]
    # the enum form is not
    assert literal_sites('request_answer_error(rq, ERR_PROXY_GATE_BUSY, "why");') == []
