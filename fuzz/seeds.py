"""Writes the seed corpora in fuzz/corpus/ from what the tests use (run from
the repository root: python3 fuzz/seeds.py).  Each seed is one file named by
the SHA-1 of its content, as libFuzzer names what it finds."""
import glob
import hashlib
import json
import os
import re
import sys

sys.path.insert(0, os.getcwd())
from tests.ctrlsim import tokens  # noqa: E402

OUT = "fuzz/corpus"


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def resp(v):
    """RESP2 encoding of a Python value (str -> bulk, int, list, None)."""
    if v is None:
        return b"$-1\r\n"
    if isinstance(v, int):
        return b":%d\r\n" % v
    if isinstance(v, (list, tuple)):
        return b"*%d\r\n" % len(v) + b"".join(resp(x) for x in v)
    if isinstance(v, Exception):
        return b"-%s\r\n" % str(v).encode()
    v = v.encode() if isinstance(v, str) else v
    return b"$%d\r\n%s\r\n" % (len(v), v)


def main():
    # framing: the smuggling tests' requests, plus credentials
    src = open("tests/integration/test_core_smuggling.py").read()
    for lit in re.findall(r'b"((?:[A-Z]+ /[^"\\]*|[^"]*\\r\\n)(?:\\.|[^"\\])*)"', src):
        put("framing", lit.encode().decode("unicode_escape").encode("latin-1"))
    put("framing", "POST /edge/client/v1/current-identity/mfa HTTP/1.1\r\nHost: x\r\n"
                   "Authorization: Bearer a.b.c\r\nAuthorization: Bearer d.e.f\r\nContent-Length: 2\r\n\r\n{}")
    put("framing", "GET /oidc/login/password?authRequestID=abc HTTP/1.1\r\nHost: x\r\nzt-session: s\r\n"
                   "X-Forwarded-For: 1.2.3.4\r\nForwarded: for=1.2.3.4\r\n\r\n")
    put("framing", "POST /oidc/oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                   "\r\ngrant_type=authorization_code&code=XYZ&code_verifier=v")
    # config: the example and every configuration the tests load
    for p in ["examples/quorumgate.yaml"] + sorted(glob.glob("tests/configs/*/*.yaml")):
        put("config", open(p, "rb").read())
    # json: selector byte + controller answers
    ctrls = {"data": [{"id": "c1", "name": "c1", "apiAddresses": {"edge-client": [
        {"url": "https://ctrl1.example:1280/edge/client/v1", "version": "v1"}]}}], "meta": {}}
    version = {"data": {"apiVersions": {"edge-client": {"v1": {"apiBaseUrls": ["https://ctrl1.example:1280/edge/client/v1"],
                                                              "path": "/edge/client/v1"}}}, "version": "v1.5.4"}}
    err = {"error": {"code": "UNHANDLED", "message": "x", "cause": {"message": "could not update MFA status"}}}
    mfa = {"data": {"id": "mfa-id", "isVerified": True, "createdAt": "2026-11-26T11:31:27.123Z"}, "meta": {}}
    key = tokens.new_key()
    jwks = {"keys": [key.jwk("kid1")]}
    tok = tokens.sign({"sub": "id", "exp": 1800000000}, "kid1", key)
    for sel, doc in [(1, ctrls), (0, version), (2, err), (3, mfa), (4, jwks)]:
        put("json", bytes([sel]) + json.dumps(doc).encode())
    put("json", b"\x05" + tok.encode())
    # location
    for v in ["https://ctrl1.example:1280/oidc/login/username?authRequestID=abc",
              "/oidc/login/username?authRequestID=abc",
              "https://10.0.0.3:1280/cb?code=XYZ&state=1#frag", "http://evil.example/?id=1"]:
        put("location", v)
    # relay: event lines as the simulator writes them
    ev = {"namespace": "entityChange", "eventType": "committed", "metadata": {"raft_index": 12},
          "entityType": "mfas", "isParentEvent": False, "eventSrcId": "ctrl1",
          "timestamp": "2026-11-26T11:31:27.123456Z",
          "finalState": {"id": "mfa-id", "identityId": "id", "isVerified": True, "secret": "S"}}
    put("relay", json.dumps(ev))
    ev2 = dict(ev, eventType="deleted", finalState={"id": "mfa-id", "identityId": "id"})
    put("relay", json.dumps(ev2))
    # redis: selector byte + replies the acknowledgement store reads
    put("redis", b"\x00" + resp(["c1", "c2"]))
    put("redis", b"\x01" + resp([["status", "pending", "replication", "acked=c1", "deadline", "1800000000000"],
                                 ["c1"]]))
    put("redis", b"\x02" + resp([["ab" * 32, ["c2", "1800000000000", "c3", "1"]]]))
    put("redis", b"\x02" + resp(Exception("ERR nope")))
    # h1parse: selector byte (bit 0 HEAD, the rest a split point) + the
    # answers the upstream client's tests script
    src = open("tests/integration/test_h1client.py").read()
    for i, lit in enumerate(re.findall(r'b"(HTTP/1\.1 (?:\\.|[^"\\])*)"', src)):
        put("h1parse", bytes([i * 37 % 256]) + lit.encode().decode("unicode_escape").encode("latin-1"))
    put("h1parse", b"\x40HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"5;a=b\r\nhello\r\n0\r\nT: 1\r\n\r\n")
    put("h1parse", b"\x01HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
    put("h1parse", b"\x7eHTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\nto the end")
    # h1req: selector byte (bit 0 small limits, the rest a split point) +
    # what a client sends the front: the smuggling tests' requests, then
    # well-framed ones, pipelined
    src = open("tests/integration/test_core_smuggling.py").read()
    ns = {}
    exec(src[src.index("SMUGGLED = "):src.index("\n\n\n@pytest")], ns)
    for i, name in enumerate(sorted(ns["CASES"])):
        put("h1req", bytes([i * 37 % 256 & 0xfe]) + ns["CASES"][name])
    put("h1req", b"\x40POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                 b"\r\nGET /b?q=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    put("h1req", b"\x20PUT /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                 b"Expect: 100-continue\r\n\r\n5;a=b;q=\"x\\\"y\"\r\nhello\r\n0\r\nT: 1\r\n\r\n")
    put("h1req", b"\x61GET /caf\xc3\xa9 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                 b"GET / HTTP/1.0\r\n\r\n")


if __name__ == "__main__":
    main()
