"""A tiny block-style YAML writer for quorumgate test configurations (so a
config error points at a real line, as `quorumgate -t` reports file:line)."""
import json
import re

_PLAIN = re.compile(r"^[A-Za-z0-9_./@][A-Za-z0-9_./:@+-]*$")
_SPECIAL = {"true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"}
_NUMBERISH = re.compile(r"^[-+]?(\d[\d_]*)?(\.\d*)?([eE][-+]?\d+)?$")


def scalar(v):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return repr(v)
    s = str(v)
    if s and _PLAIN.match(s) and s.lower() not in _SPECIAL and not _NUMBERISH.match(s) and not s.endswith(":"):
        return s
    return json.dumps(s)   # a JSON string is a valid YAML double-quoted scalar


def dump_yaml(obj, indent=0):
    pad = " " * indent
    lines = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, dict) and v:
                lines.append("%s%s:" % (pad, k))
                lines.append(dump_yaml(v, indent + 2))
            elif isinstance(v, list) and v:
                lines.append("%s%s:" % (pad, k))
                lines.append(dump_yaml(v, indent + 2))
            elif isinstance(v, (dict, list)):
                lines.append("%s%s: %s" % (pad, k, "{}" if isinstance(v, dict) else "[]"))
            else:
                lines.append("%s%s: %s" % (pad, k, scalar(v)))
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, dict) and v:
                sub = dump_yaml(v, indent + 2).splitlines()
                lines.append("%s- %s" % (pad, sub[0].lstrip()))
                lines.extend(sub[1:])
            elif isinstance(v, list) and v:
                lines.append("%s-" % pad)
                lines.append(dump_yaml(v, indent + 2))
            else:
                lines.append("%s- %s" % (pad, scalar(v) if not isinstance(v, (dict, list)) else
                                         ("{}" if isinstance(v, dict) else "[]")))
    else:
        lines.append(pad + scalar(obj))
    return "\n".join(lines) + ("\n" if indent == 0 else "")
