"""Requests a stranger can send to make a worker work: the tests' and bench/abuse.py's payloads.

Each is within SERVING_MAX_BODY_BYTES (4 MB by default) and needs no token.
"""

from __future__ import annotations

import base64
import struct

from PIL import Image

from pictures import encode

JSON = {"content-type": "application/json"}


def long_list(items: int = 1_300_000) -> bytes:
    """{"images": [1, 1, ...]}: 2.6 MB, each item an invalid image."""
    return b'{"images": [' + b",".join([b"1"] * items) + b"]}"


def deep_nesting(depth: int = 1_000_000) -> bytes:
    """{"image": [[[...]]]}: 2 MB of brackets."""
    return b'{"image": ' + b"[" * depth + b"]" * depth + b"}"


def many_keys(keys: int = 300_000) -> bytes:
    """{"k0": 1, "k1": 1, ...}: 3.5 MB, each key an unknown field."""
    return b"{" + b",".join(b'"k%d":1' % index for index in range(keys)) + b"}"


def long_key(length: int = 3_000_000) -> bytes:
    """{"AAA...": 1}: one unknown field whose name is 3 MB."""
    return b'{"' + b"A" * length + b'": 1}'


def many_parts(parts: int = 50_000, boundary: str = "x") -> tuple[bytes, dict]:
    """A multipart body of `parts` empty fields (2.5 MB), and its headers."""
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="f"\r\n\r\n\r\n'.encode()
    body = part * parts + f"--{boundary}--\r\n".encode()
    return body, {"content-type": f"multipart/form-data; boundary={boundary}"}


def big_rgba_png(side: int = 4096) -> bytes:
    """An opaque RGBA PNG of side x side pixels with a dark bar (a "1"): 76 KB at 4096."""
    image = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    image.paste((0, 0, 0, 255), (side * 3 // 8, side // 4, side * 5 // 8, side * 3 // 4))
    return encode(image, optimize=True)


def noise_png(side: int = 512, seed: int = 0) -> bytes:
    """A grey PNG of side x side random pixels (nothing compresses: 1 MB at 1024)."""
    return encode(Image.effect_noise((side, side), 64 + seed % 32))


def drawn_png(side: int = 512, seed: int = 0) -> bytes:
    """A grey PNG of side x side pixels with a bar whose place depends on `seed` (2 KB)."""
    image = Image.new("L", (side, side), 0)
    left = side // 4 + seed % (side // 4)
    image.paste(255, (left, side // 5, left + side // 8, side * 4 // 5))
    return encode(image)


def many_images(count: int = 64, side: int = 512) -> bytes:
    """{"images": [...]}: `count` different images of side x side, as a JSON batch (within
    SERVING_MAX_BATCH and SERVING_MAX_BATCH_PIXELS at the defaults: 64 x 512 x 512 pixels)."""
    encoded = [base64.b64encode(drawn_png(side, seed)) for seed in range(count)]
    return b'{"images": ["' + b'", "'.join(encoded) + b'"]}'


def jpeg_header_lies(claimed: int = 4096, holds: int = 32) -> bytes:
    """A JPEG whose header says claimed x claimed pixels and whose data holds holds x holds."""
    image = Image.new("L", (holds, holds), 0)
    image.paste(255, (holds // 4, holds // 4, holds * 3 // 4, holds * 3 // 4))
    data = bytearray(encode(image, "JPEG"))
    frame = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, frame + 5, claimed, claimed)
    return bytes(data)


def gif_on_a_big_canvas(side: int = 4096) -> bytes:
    """A valid 130-byte GIF: a 32 x 32 frame on a side x side screen (the rest background)."""
    image = Image.new("L", (32, 32), 0)
    image.paste(255, (8, 8, 24, 24))
    data = bytearray(encode(image, "GIF"))
    struct.pack_into("<HH", data, 6, side, side)  # the logical screen
    return bytes(data)
