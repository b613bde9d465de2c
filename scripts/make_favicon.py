"""Draws the app's icon (the sidebar's indigo square with a white target) into assets/favicon.ico.

Written with the standard library (zlib + struct: a PNG inside an ICO, which every current browser
reads) because the project has no imaging library and a 32 px icon does not justify adding one.
Run again only if the icon changes: `python scripts/make_favicon.py`.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

SIZE = 32
INDIGO = (62, 99, 221)  # Radix indigo 9, the sidebar's logo background
WHITE = (255, 255, 255)


def pixel(x: int, y: int) -> tuple[int, int, int, int]:
    cx = cy = (SIZE - 1) / 2
    # A rounded square (radius 7) ...
    dx, dy = max(abs(x - cx) - (SIZE / 2 - 7), 0), max(abs(y - cy) - (SIZE / 2 - 7), 0)
    if math.hypot(dx, dy) > 7:
        return (0, 0, 0, 0)
    # ... with a target: two rings and a dot.
    r = math.hypot(x - cx, y - cy)
    white = 9.5 <= r <= 12 or 4.5 <= r <= 7 or r <= 2
    return (*(WHITE if white else INDIGO), 255)


def png() -> bytes:
    rows = b"".join(b"\x00" + b"".join(bytes(pixel(x, y)) for x in range(SIZE)) for y in range(SIZE))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


def ico(image: bytes) -> bytes:
    directory = struct.pack("<HHH", 0, 1, 1)
    entry = struct.pack("<BBBBHHII", SIZE, SIZE, 0, 0, 1, 32, len(image), 6 + 16)
    return directory + entry + image


if __name__ == "__main__":
    target = Path(__file__).resolve().parent.parent / "assets" / "favicon.ico"
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(ico(png()))
    print(f"wrote {target} ({target.stat().st_size} bytes)")
