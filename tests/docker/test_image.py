"""docker/Dockerfile and the configuration it ships, without a Docker engine.

- The Dockerfile is parsed: Debian 12 stages, packages only through
  scripts/install-deps.sh (the script .ci/run runs), a Release build, a
  non-root runtime with EXPOSE, HEALTHCHECK and exec-form ENTRYPOINT/CMD that
  agree with the configuration it ships, and a build context that lets every
  COPY source through.
- That configuration passes the real `quorumgate -t` once the files it names
  exist (and fails, naming each, while they do not); the binary started with
  it answers the image's own HEALTHCHECK command and drains on SIGTERM.
- Every library `ldd` lists for the binary belongs to a package the runtime
  stage installs, to what those pull in, or to the base image; every library
  the binary links itself (DT_NEEDED) to a package the stage names.

The binary is $QUORUMGATE_BIN (default build/quorumgate); without it these
skip, unless QG_REQUIRE_BINARY=1.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import PurePosixPath

import pytest

from tests.docker.helpers import (DOCKER, INSTALL_SCRIPT, ROOT, copies, dockerfile_stages,
                                  dockerignore_allows, exec_form, expand, final_stage,
                                  image_config, image_config_path, install_script_calls,
                                  instructions, need_binary, populate, port_of, referenced_files,
                                  run_commands, runtime_packages)


def test_dockerfile_stages_are_debian_12():
    stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage: a build stage and a runtime stage"
    for st in stages:
        assert st["base"] == "debian:bookworm-slim", "line %d: FROM %s" % (st["line"], st["base"])
    build = stages[0]
    assert build["name"], "the build stage needs a name for COPY --from"
    froms = [frm for src, dest, frm in copies(stages[-1]) if frm]
    assert froms == [build["name"]], "the runtime stage copies only the binary from the build stage"


def test_dockerfile_installs_packages_only_through_install_deps():
    # .ci/run runs the README's test command, which installs with the script
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^\s*(exec\s+)?scripts/test\.sh\b", ci, re.M), ".ci/run must run scripts/test.sh"
    test_sh = (ROOT / "scripts" / "test.sh").read_text()
    assert re.search(r"^\s*%s\s+test\b" % re.escape(INSTALL_SCRIPT), test_sh, re.M), (
        "scripts/test.sh no longer runs %s: the Dockerfile must use the same script" % INSTALL_SCRIPT)
    stages = dockerfile_stages()
    for st in stages:
        for cmd, _ in run_commands(st):
            assert not re.search(r"\bapt(-get)?\s+(-\S+\s+)*install\b|\bdpkg\s+-i\b|\bpip3?\s+install\b",
                                 cmd), "packages installed outside %s: %s" % (INSTALL_SCRIPT, cmd)
    build_calls = install_script_calls(stages[0])
    runtime_calls = install_script_calls(stages[-1])
    assert [m for m, _ in build_calls] == ["build"], build_calls
    assert [m for m, _ in runtime_calls] == ["runtime"], runtime_calls
    # the install steps come before the build, and the build is Release
    build_runs = [c for c, _ in run_commands(stages[0])]
    cmake = [c for c in build_runs if re.search(r"\bcmake\s+-S\b", c)]
    assert cmake and "-DCMAKE_BUILD_TYPE=Release" in cmake[0], build_runs
    installs = [i for i, c in enumerate(build_runs) if "install-deps.sh build" in c]
    assert installs and installs[0] < build_runs.index(cmake[0]), "install-deps.sh build runs first"


def test_install_script_lists_its_packages():
    """The interface the runtime checks below rely on."""
    r = subprocess.run([str(ROOT / INSTALL_SCRIPT), "--list", "runtime", "curl"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    pkgs = r.stdout.split()
    assert "libcurl4" in pkgs and pkgs[-1] == "curl", pkgs
    r = subprocess.run([str(ROOT / INSTALL_SCRIPT), "--list", "nonsense"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2


def test_runtime_stage_user_ports_healthcheck_entrypoint():
    st = final_stage()
    cfg = image_config()
    users = instructions(st, "USER")
    assert users, "the runtime stage must switch to a non-root user"
    user = expand(users[-1][0], st["args"]).split(":")[0]
    assert user not in ("root", "0", ""), user
    assert user.isdigit() or re.match(r"^[a-z_][a-z0-9_-]*$", user), user

    exposed = {int(p.split("/")[0]) for rest, _ in instructions(st, "EXPOSE") for p in rest.split()}
    listener_ports = {port_of(l["address"]) for l in cfg["listeners"]}
    admin_port = port_of(cfg["admin"]["address"])
    assert exposed == listener_ports | {admin_port}, (exposed, listener_ports, admin_port)

    hc = instructions(st, "HEALTHCHECK")
    assert len(hc) == 1, "one HEALTHCHECK"
    cmd = exec_form(hc[0][0].split(" CMD ", 1)[1], "HEALTHCHECK CMD")
    assert cmd[0] in runtime_packages(), "the HEALTHCHECK tool %s must be installed" % cmd[0]
    assert "http://127.0.0.1:%d/healthz" % admin_port in cmd, cmd
    assert "--fail" in cmd or "-f" in cmd, "curl must turn a non-2xx status into a failure"

    eps = instructions(st, "ENTRYPOINT")
    cmds = instructions(st, "CMD")
    assert len(eps) == 1 and len(cmds) == 1
    entry = exec_form(eps[0][0], "ENTRYPOINT")
    args = exec_form(cmds[0][0], "CMD")
    binary = [dest for src, dest, frm in copies(st) if frm]
    assert entry == binary, "ENTRYPOINT runs the binary copied from the build stage"
    assert args == ["-c", image_config_path()], args
    stops = instructions(st, "STOPSIGNAL")
    assert not stops or stops[-1][0] in ("SIGTERM", "15"), stops


def test_build_context_holds_every_copy_source():
    ignore = DOCKER / "Dockerfile.dockerignore"
    patterns = [l.strip() for l in ignore.read_text().splitlines()
                if l.strip() and not l.strip().startswith("#")]
    assert not dockerignore_allows("build/quorumgate", patterns), "build output stays out"
    assert not dockerignore_allows("tests/conftest.py", patterns)
    for st in dockerfile_stages():
        for src, dest, frm in copies(st):
            if frm:
                continue
            for s in src:
                assert (ROOT / s).exists(), "COPY %s: no such file in the repository" % s
                assert dockerignore_allows(s, patterns), "COPY %s is excluded by %s" % (s, ignore.name)


def test_image_config_binds_admin_for_healthcheck_and_prometheus():
    cfg = image_config()
    host = cfg["admin"]["address"].rsplit(":", 1)[0].strip("[]")
    assert host in ("0.0.0.0", "::"), "the admin listener must bind every container address"
    allow = cfg["admin"].get("allow")
    assert allow, "an open admin port needs an explicit allow list"
    assert "127.0.0.0/8" in allow, "the HEALTHCHECK comes from the container's loopback"
    for l in cfg["listeners"]:
        assert l["address"].rsplit(":", 1)[0].strip("[]") in ("0.0.0.0", "::"), l


def test_image_config_passes_quorumgate_check(tmp_path, certs):
    binary = need_binary()
    cfg = image_config()
    files = referenced_files(cfg)
    assert files, "the image's configuration names no files?"
    for rel in files:
        assert not os.path.isabs(rel), (
            "%s: %s is absolute; relative paths resolve against /etc/quorumgate" % (files[rel], rel))
    etc = tmp_path / "etc" / "quorumgate"          # mirrors the container's directory
    etc.mkdir(parents=True)
    conf = etc / PurePosixPath(image_config_path()).name
    shutil.copy(DOCKER / "quorumgate.yaml", conf)

    r = subprocess.run([binary, "-t", "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, "-t must fail while the files are missing:\n" + r.stdout + r.stderr
    for rel, key in files.items():
        assert re.search(r"%s: cannot read '.*%s'" % (re.escape(key.replace(".0.", "[0].")),
                                                       re.escape(rel)), r.stderr), (key, r.stderr)

    populate(etc, files, certs)
    r = subprocess.run([binary, "-t", "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "configuration is valid" in r.stdout


def port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def test_image_config_runs_and_answers_the_healthcheck(tmp_path, certs):
    """The binary with the shipped configuration (its fixed ports) answers the
    Dockerfile's own HEALTHCHECK command and exits 0 on SIGTERM."""
    binary = need_binary()
    cfg = image_config()
    ports = [port_of(l["address"]) for l in cfg["listeners"]] + [port_of(cfg["admin"]["address"])]
    busy = [p for p in ports if not port_free(p)]
    if busy:
        pytest.skip("ports %s are in use on this machine" % busy)
    etc = tmp_path / "etc" / "quorumgate"
    etc.mkdir(parents=True)
    conf = etc / "quorumgate.yaml"
    shutil.copy(DOCKER / "quorumgate.yaml", conf)
    populate(etc, referenced_files(cfg), certs)
    hc = instructions(final_stage(), "HEALTHCHECK")[0][0]
    check = exec_form(hc.split(" CMD ", 1)[1], "HEALTHCHECK CMD")
    if not shutil.which(check[0]):
        pytest.skip("%s is not installed here" % check[0])
    log = open(tmp_path / "qg.log", "w")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        ok = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            r = subprocess.run(check, capture_output=True, text=True, timeout=10)
            if r.returncode == 0:
                ok = r
                break
            assert proc.poll() is None, (tmp_path / "qg.log").read_text()
            time.sleep(0.05)
        assert ok, "the HEALTHCHECK never passed: %s\n%s" % (r.stderr, (tmp_path / "qg.log").read_text())
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=20)
        assert rc == 0, (rc, (tmp_path / "qg.log").read_text()[-2000:])
        assert "drain" in (tmp_path / "qg.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def dpkg_owners(paths):
    """{path: package shipping it, or None} (merged /usr aware), with one dpkg call."""
    cands = {}
    for path in paths:
        c = [path, os.path.realpath(path)]
        for x in list(c):
            if x.startswith("/usr/lib/"):
                c.append(x[len("/usr"):])
            elif x.startswith("/lib"):
                c.append("/usr" + x)
        cands[path] = list(dict.fromkeys(c))
    everything = sorted({x for c in cands.values() for x in c})
    r = subprocess.run(["dpkg", "-S", *everything], capture_output=True, text=True, timeout=60)
    owner = {}
    for line in r.stdout.splitlines():
        if line.startswith("diversion "):
            continue
        pkgs, _, p = line.partition(": ")
        owner.setdefault(p.strip(), pkgs.split(",")[0].strip().split(":")[0])
    return {path: next((owner[x] for x in c if x in owner), None) for path, c in cands.items()}


def installed_packages():
    """{name: (essential_or_required, depends)} from dpkg's status database."""
    fmt = "${Package}\\t${Status}\\t${Essential}\\t${Priority}\\t${Pre-Depends}, ${Depends}\\t${Provides}\\n"
    r = subprocess.run(["dpkg-query", "-W", "-f", fmt], capture_output=True, text=True,
                       timeout=60, check=True)
    pkgs, provides = {}, {}
    for line in r.stdout.splitlines():
        name, status, essential, prio, deps, prov = (line.split("\t") + [""] * 6)[:6]
        if "installed" not in status.split():
            continue
        names = set()
        for dep in deps.split(","):
            for alt in dep.split("|"):
                n = alt.strip().split(" ")[0].split(":")[0]
                if n:
                    names.add(n)
        pkgs[name] = (essential == "yes" or prio == "required", names)
        for p in prov.split(","):
            n = p.strip().split(" ")[0]
            if n:
                provides.setdefault(n, set()).add(name)
    return pkgs, provides


def closure(roots, pkgs, provides):
    seen, todo = set(), list(roots)
    while todo:
        n = todo.pop()
        for real in ({n} if n in pkgs else provides.get(n, set())):
            if real not in seen:
                seen.add(real)
                todo.extend(pkgs[real][1])
    return seen


def test_runtime_packages_provide_every_linked_library():
    binary = need_binary()
    if not shutil.which("dpkg"):
        pytest.skip("not a Debian system")
    runtime = runtime_packages()
    pkgs, provides = installed_packages()
    # what debian:*-slim has already: the essential and required packages
    # and what they depend on (libc6, libgcc-s1, ...)
    base = closure({n for n, (req, _) in pkgs.items() if req}, pkgs, provides)
    available = closure(runtime, pkgs, provides) | base

    r = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    if re.search(r"\blib(asan|ubsan|tsan|lsan)\.so", r.stdout):
        pytest.skip("%s is a sanitizer build; the image builds without (-DCMAKE_BUILD_TYPE=Release)"
                    % binary)
    assert "not found" not in r.stdout, r.stdout
    libs = re.findall(r"=>\s+(/\S+)\s+\(", r.stdout)
    libs += [m for m in re.findall(r"^\s*(/\S+)\s+\(", r.stdout, re.M)]
    assert any("libc.so" in l for l in libs), r.stdout
    unowned, uncovered = [], []
    owners = dpkg_owners(libs)
    for lib in libs:
        owner = owners[lib]
        if owner is None:
            unowned.append(lib)
        elif owner not in available:
            uncovered.append("%s (%s)" % (lib, owner))
    assert not unowned, "libraries no package ships: %s" % unowned
    assert not uncovered, "libraries the runtime stage would not have: %s" % uncovered

    # What the binary links directly must be named, not pulled in by chance.
    r = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True, timeout=30)
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(\S+)\]", r.stdout)
    assert needed, r.stdout
    by_name = {os.path.basename(l): l for l in libs}
    for soname in needed:
        assert soname in by_name, "%s is not in ldd's output" % soname
        owner = owners[by_name[soname]]
        assert owner in runtime or owner in base, (
            "%s comes from %s, which the runtime stage does not list" % (soname, owner))
