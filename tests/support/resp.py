"""The Redis protocol (RESP2) for the tests' own assertions on what
quorumgate keeps in Redis: one encoder, one parser, one small synchronous
client.

    c = RedisClient(redis_server.port)
    c("SET", "k", "v"); c("SMEMBERS", "s"); c.dump(); c.close()
"""
import socket


def resp_encode(*args):
    """One command as a RESP2 array of bulk strings."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


class _Incomplete(Exception):
    pass


def resp_parse(data):
    """Minimal RESP2 parser: returns (value, rest); _Incomplete when more
    bytes are needed.  Errors come back as RuntimeError values."""
    if not data:
        raise _Incomplete()
    t = data[:1]
    i = data.find(b"\r\n")
    if i < 0:
        raise _Incomplete()
    line, rest = data[1:i], data[i + 2:]
    if t == b"+":
        return line.decode(), rest
    if t == b"-":
        return RuntimeError(line.decode()), rest
    if t == b":":
        return int(line), rest
    if t == b"$":
        n = int(line)
        if n < 0:
            return None, rest
        if len(rest) < n + 2:
            raise _Incomplete()
        return rest[:n], rest[n + 2:]
    if t == b"*":
        n = int(line)
        if n < 0:
            return None, rest
        out = []
        for _ in range(n):
            v, rest = resp_parse(rest)
            out.append(v)
        return out, rest
    raise ValueError("bad RESP: %r" % data[:40])


class RedisClient:
    """A tiny synchronous Redis client for assertions (one connection)."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def close(self):
        self.sock.close()

    def __call__(self, *args):
        self.sock.sendall(resp_encode(*args))
        while True:
            try:
                v, self.buf = resp_parse(self.buf)
            except _Incomplete:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    raise ConnectionError("redis closed the connection")
                self.buf += chunk
                continue
            if isinstance(v, RuntimeError):
                raise v
            return v

    def dump(self):
        """Every key with its type, TTL (ms) and full contents (bytes)."""
        out = {}
        cursor = b"0"
        while True:
            cursor, keys = self("SCAN", cursor, "COUNT", 1000)
            for k in keys:
                t = self("TYPE", k)
                if t == "string":
                    v = [self("GET", k)]
                elif t == "hash":
                    v = self("HGETALL", k)
                elif t == "set":
                    v = self("SMEMBERS", k)
                elif t == "list":
                    v = self("LRANGE", k, 0, -1)
                elif t == "zset":
                    v = self("ZRANGE", k, 0, -1, "WITHSCORES")
                else:
                    v = []
                out[k] = {"type": t, "ttl": self("PTTL", k), "values": v}
            if cursor == b"0":
                return out
