"""A minimal PNG encoder for TensorBoard's images: 8-bit grey or RGB, no filtering, fast zlib.

Our pictures (a confusion matrix, a grid of small inputs) are flat-coloured, so plain
zlib at level 1 already makes them a few KB. PIL's encoder spends about three times as long
on the same pixels (it tries a filter per row), and TensorBoard decodes either the same way.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOUR_TYPES = {1: 0, 3: 2}  # channels -> PNG colour type: greyscale, truecolour


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(pixels: np.ndarray, level: int = 1) -> bytes:
    """PNG bytes of an ``H x W x C`` uint8 array with 1 or 3 channels."""
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] not in COLOUR_TYPES:
        raise ValueError(f"encode_png: expected an H x W x 1 or 3 uint8 array, got {pixels.dtype} {pixels.shape}")
    height, width, channels = pixels.shape
    rows = np.zeros((height, 1 + width * channels), dtype=np.uint8)  # each row: filter type 0, then its bytes
    rows[:, 1:] = pixels.reshape(height, width * channels)
    header = struct.pack(">IIBBBBB", width, height, 8, COLOUR_TYPES[channels], 0, 0, 0)
    return (SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows.tobytes(), level))
            + _chunk(b"IEND", b""))
