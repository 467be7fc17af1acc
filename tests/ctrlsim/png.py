"""A tiny real PNG (the QR code stand-in).

The controller answers /current-identity/mfa/qr-code with a 256 px QR code of
the provisioning URL (controller/model/mfa_manager.go QrCodePng, go-qrcode).
The simulator draws a deterministic 256x256 greyscale pattern derived from the
URL instead of a scannable QR code: a valid PNG, image/png, same size.
"""
import hashlib
import struct
import zlib


def _chunk(kind, data):
    c = struct.pack(">I", len(data)) + kind + data
    return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def pattern_png(text, size=256, cells=32):
    digest = b""
    seed = text.encode()
    while len(digest) * 8 < cells * cells:
        seed = hashlib.sha256(seed).digest()
        digest += seed
    bits = [(digest[i // 8] >> (i % 8)) & 1 for i in range(cells * cells)]
    scale = size // cells
    rows = []
    for y in range(size):
        cy = min(y // scale, cells - 1)
        row = bytearray([0])  # filter type 0
        for x in range(size):
            cx = min(x // scale, cells - 1)
            row.append(0 if bits[cy * cells + cx] else 255)
        rows.append(bytes(row))
    ihdr = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + _chunk(b"IEND", b""))
