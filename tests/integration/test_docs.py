"""The README's promises: the two commands exist, the configuration
reference is exactly the example file, and the example passes `-t` once the
files it references exist."""
import os
import re
import subprocess

from tests.conftest import REPO_ROOT, quorumgate_binary
from tests.support.procs import make_certs

README = os.path.join(REPO_ROOT, "README.md")
EXAMPLE = os.path.join(REPO_ROOT, "examples", "quorumgate.yaml")


def test_readme_opens_with_the_demo_and_test_commands():
    text = open(README).read()
    first_block = re.search(r"```sh\n(.*?)```", text, re.S).group(1)
    cmds = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert cmds == ["scripts/demo.sh", "scripts/test.sh"]
    for c in cmds:
        assert os.access(os.path.join(REPO_ROOT, c), os.X_OK), c
    ci = open(os.path.join(REPO_ROOT, ".ci", "run")).read()
    assert "scripts/test.sh" in ci


def test_readme_configuration_reference_is_the_example():
    text = open(README).read()
    m = re.search(r"<!-- example:begin -->\n```yaml\n(.*?)```\n<!-- example:end -->", text, re.S)
    assert m, "README lacks the example block"
    assert m.group(1) == open(EXAMPLE).read(), "run scripts/sync-readme.py"


def test_example_configuration_passes_the_check(tmp_path):
    # the example names files under /etc/quorumgate: provide them in a copy
    text = open(EXAMPLE).read()
    pki = make_certs(str(tmp_path / "pki"))
    files = sorted(set(re.findall(r"(/etc/quorumgate/[\w./-]+)", text)))
    for f in files:
        local = tmp_path / os.path.basename(f)
        if f.endswith("hmac.key"):
            local.write_text("k" * 48)
        elif f.endswith(".key"):
            local.write_text(open(pki["key"]).read())
        elif f.endswith(".pem"):
            local.write_text(open(pki["cert"]).read())
        else:
            local.write_text("x\n")
        text = text.replace(f, str(local))
    cfg = tmp_path / "q.yaml"
    cfg.write_text(text)
    r = subprocess.run([quorumgate_binary(), "-t", "-c", str(cfg)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert "configuration is valid" in r.stdout
    # a certificate that is not one is refused with its line
    bad = text.replace(str(tmp_path / "ctrl-ca.pem"), str(tmp_path / "hmac.key"))
    cfg.write_text(bad)
    r = subprocess.run([quorumgate_binary(), "-t", "-c", str(cfg)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0
    assert re.search(re.escape(str(cfg)) + r":\d+: upstream\.tls\.ca: .* holds no PEM certificate",
                     r.stderr), r.stderr
    # and a broken one names file:line
    cfg.write_text(text.replace("interval: 500ms", "interval: 500"))
    r = subprocess.run([quorumgate_binary(), "-t", "-c", str(cfg)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0
    assert re.search(re.escape(str(cfg)) + r":\d+: health\.interval", r.stderr), r.stderr
