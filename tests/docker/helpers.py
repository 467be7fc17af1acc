"""What the tests in tests/docker/ share: parsers for docker/Dockerfile,
docker/compose.yml (with compose's ${VAR:-default} interpolation),
docker/.env.example and docker/quorumgate.yaml, and the files that
configuration names.  No Docker engine is needed anywhere."""
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest
import yaml

from tests.conftest import quorumgate_binary

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
COMPOSE = DOCKER / "compose.yml"
ENV_EXAMPLE = DOCKER / ".env.example"
INSTALL_SCRIPT = "scripts/install-deps.sh"
CONTROLLERS = ("ziti-controller1", "ziti-controller2", "ziti-controller3")


def need_binary():
    binary = quorumgate_binary()
    if not os.access(binary, os.X_OK):
        msg = "quorumgate binary not found at %s (set QUORUMGATE_BIN)" % binary
        if os.environ.get("QG_REQUIRE_BINARY") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return binary


def parse_dockerfile(path=DOCKERFILE):
    """[(instruction, arguments, line)] with continuations joined and
    comment lines (also those inside a continued instruction) dropped."""
    out, cur, start = [], "", 0
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        s = raw.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if cur and s.startswith("#"):
            continue
        if not cur:
            start = n
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        cur += s
        word, _, rest = cur.partition(" ")
        out.append((word.upper(), rest.strip(), start))
        cur = ""
    assert not cur, "Dockerfile ends inside a continued line"
    return out


def expand(text, args):
    return re.sub(r"\$\{(\w+)\}|\$(\w+)",
                  lambda m: args.get(m.group(1) or m.group(2), m.group(0)), text)


def dockerfile_stages():
    """Stages with their base image (global ARG defaults applied), name,
    ARG defaults and instructions."""
    global_args, stages = {}, []
    for ins, rest, line in parse_dockerfile():
        if ins == "FROM":
            words = rest.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append({"base": expand(words[0], global_args), "name": name,
                           "args": dict(global_args), "ins": [], "line": line})
        elif not stages:
            assert ins == "ARG", "only ARG may come before the first FROM (line %d)" % line
            k, _, v = rest.partition("=")
            global_args[k.strip()] = v.strip().strip('"')
        else:
            st = stages[-1]
            if ins == "ARG":
                k, _, v = rest.partition("=")
                st["args"][k.strip()] = v.strip().strip('"') if v else st["args"].get(k.strip(), "")
            st["ins"].append((ins, rest, line))
    return stages


def instructions(stage, name):
    return [(rest, line) for ins, rest, line in stage["ins"] if ins == name]


def copies(stage):
    """[(sources, dest, from_stage)] of the stage's COPY instructions, dest
    resolved against WORKDIR."""
    out, workdir = [], "/"
    for ins, rest, _ in stage["ins"]:
        if ins == "WORKDIR":
            workdir = str(PurePosixPath(workdir) / rest)
        if ins != "COPY":
            continue
        words = shlex.split(rest)
        flags = [w for w in words if w.startswith("--")]
        paths = [w for w in words if not w.startswith("--")]
        src, dest = paths[:-1], paths[-1]
        if not dest.startswith("/"):
            dest = str(PurePosixPath(workdir) / dest)
        frm = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
        out.append((src, dest, frm))
    return out


def run_commands(stage):
    """(command text, WORKDIR) of every RUN."""
    out, workdir = [], "/"
    for ins, rest, _ in stage["ins"]:
        if ins == "WORKDIR":
            workdir = str(PurePosixPath(workdir) / rest)
        if ins == "RUN":
            out.append((rest, workdir))
    return out


def exec_form(text, what):
    try:
        v = json.loads(text)
    except ValueError:
        pytest.fail("%s is not in exec (JSON array) form: %s" % (what, text))
    assert isinstance(v, list) and all(isinstance(x, str) for x in v) and v, what
    return v


def install_script_calls(stage):
    """[(mode, extra packages)] of every install-deps.sh invocation in RUN
    commands, each checked to run the copy of scripts/install-deps.sh."""
    script_dests = {dest if not dest.endswith("/") else dest + "install-deps.sh"
                    for src, dest, frm in copies(stage) if frm is None and src == [INSTALL_SCRIPT]}
    calls = []
    for cmd, workdir in run_commands(stage):
        for part in re.split(r"&&|\|\||;", cmd):
            words = shlex.split(part)
            while words and re.match(r"^\w+=", words[0]):      # VAR=value command
                words = words[1:]
            for i, w in enumerate(words):
                # the script as the command run (or bash/sh running it); a
                # mention elsewhere (rm -f .../install-deps.sh) is no call
                if not w.endswith("install-deps.sh") or not (
                        i == 0 or i == 1 and words[0] in ("bash", "sh", "/bin/bash", "/bin/sh")):
                    continue
                path = w if w.startswith("/") else str(PurePosixPath(workdir) / w)
                assert path in script_dests, (
                    "RUN calls %s, which is not a COPY of %s (copies: %s)"
                    % (w, INSTALL_SCRIPT, script_dests))
                calls.append((words[i + 1], words[i + 2:]))
    return calls


def final_stage():
    return dockerfile_stages()[-1]


def image_config_path():
    """Where the runtime stage puts docker/quorumgate.yaml (and CMD -c names)."""
    dests = [dest for src, dest, frm in copies(final_stage())
             if frm is None and src == ["docker/quorumgate.yaml"]]
    assert len(dests) == 1, "the runtime stage must COPY docker/quorumgate.yaml once"
    return dests[0]


def image_config():
    return yaml.safe_load((DOCKER / "quorumgate.yaml").read_text())


def port_of(address):
    return int(address.rsplit(":", 1)[1])


def runtime_packages():
    """Packages the runtime stage installs, as the install script lists them."""
    calls = install_script_calls(final_stage())
    pkgs = set()
    for mode, extra in calls:
        r = subprocess.run([str(ROOT / INSTALL_SCRIPT), "--list", mode, *extra],
                           capture_output=True, text=True, timeout=30, check=True)
        pkgs |= set(r.stdout.split())
    return pkgs


def dockerignore_allows(path, patterns):
    """True when BuildKit's last matching pattern for path (or a parent
    directory) is an exception."""
    parts = PurePosixPath(path).parts
    allowed = True
    for pat in patterns:
        neg = pat.startswith("!")
        p = pat[1:] if neg else pat
        p = p.rstrip("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if PurePosixPath(sub).match(p) and len(PurePosixPath(p).parts) == i:
                allowed = neg
    return allowed


def dockerfile_has_healthcheck():
    return bool(instructions(final_stage(), "HEALTHCHECK"))


FILE_KEYS = [("listeners", "*", "tls", "cert"), ("listeners", "*", "tls", "key"),
             ("listeners", "*", "tls", "client_ca"), ("upstream", "tls", "ca"),
             ("upstream", "tls", "cert"), ("upstream", "tls", "key"),
             ("secrets", "hmac_key_file"), ("admin", "basic_auth", "password_file"),
             ("redis", "password_file"), ("gate", "management", "password_file")]


def referenced_files(cfg):
    """{path as written: key} of every file-valued key present."""
    found = {}

    def walk(node, path, keys):
        if not path:
            if isinstance(node, str):
                found[node] = ".".join(keys)
            return
        head, rest = path[0], path[1:]
        if head == "*" and isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, rest, keys + ["%d" % i])
        elif isinstance(node, dict) and head in node and node[head] is not None:
            walk(node[head], rest, keys + [head])

    for p in FILE_KEYS:
        walk(cfg, p, [])
    return found


def populate(directory, files, certs):
    """Realistic content for each referenced file, at its path below directory."""
    for rel, key in files.items():
        target = directory / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if key.endswith("tls.cert"):
            shutil.copy(certs["cert"], target)
        elif key.endswith("tls.key"):
            shutil.copy(certs["key"], target)
        elif key.endswith("ca"):
            shutil.copy(certs["ca"], target)
        elif key == "secrets.hmac_key_file":
            target.write_text(os.urandom(32).hex() + "\n")
        else:
            target.write_text("not-a-real-password\n")
        os.chmod(target, 0o600)


VAR = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}|\$(\w+)")


def interpolate(value, env):
    def sub(m):
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, default = m.group(2), m.group(3)
        v = env.get(name)
        if op in (":-", ":?") and not v or op in ("-", "?") and v is None:
            assert op not in (":?", "?"), "%s is required" % name
            return default or ""
        return v if v is not None else ""
    return VAR.sub(sub, value)


def walk_strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from walk_strings(k)
            yield from walk_strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk_strings(v)


def resolve(node, env):
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {k: resolve(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v, env) for v in node]
    return node


def raw_compose():
    return yaml.safe_load(COMPOSE.read_text())


def compose(env=None):
    """The compose file with every variable at its default (no .env)."""
    return resolve(raw_compose(), env or {})


def env_example():
    out = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            k, _, v = line.partition("=")
            assert k not in out, "%s twice in .env.example" % k
            out[k] = v
    return out


def volume_mounts(service):
    """[(source, target, read_only)] in short or long syntax."""
    out = []
    for v in service.get("volumes", []):
        if isinstance(v, str):
            parts = v.split(":")
            src, tgt = parts[0], parts[1]
            ro = len(parts) > 2 and "ro" in parts[2].split(",")
        else:
            src, tgt, ro = v.get("source"), v["target"], bool(v.get("read_only"))
        out.append((src, tgt, ro))
    return out


def is_bind(src):
    return src.startswith((".", "/", "~"))


def env_of(service):
    e = service.get("environment", {})
    if isinstance(e, list):
        e = dict(x.split("=", 1) for x in e)
    return {k: "" if v is None else str(v) for k, v in e.items()}


def image_tag(image):
    name, _, tag = image.rpartition(":")
    return tag if name and "/" not in tag else ""
