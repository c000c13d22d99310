"""TensorBoard event checksums in C. Nothing happens at import; the TensorBoard logger asks
for them when it opens its writer, and an entry point decides on its first lines
(``expkit.entry.prepare``) without importing TensorBoard or torch (a run with
``logger=none`` never loads TensorBoard)."""
from __future__ import annotations

import sys

_WRITER_MODULE = "tensorboard.summary.writer.record_writer"
_wanted = True


def request(wanted: bool) -> None:
    """Use the C checksums (``True``) or TensorBoard's own (``False``) in this process: at once
    if TensorBoard's writer is loaded, else when the logger opens its writer."""
    global _wanted
    _wanted = wanted
    if wanted and _WRITER_MODULE in sys.modules:
        use_fast_event_checksums()


def use_fast_event_checksums() -> bool:
    """Let TensorBoard's event writer checksum records with google-crc32c's C code.

    Without TensorFlow installed, TensorBoard computes every record's CRC-32C in pure
    Python, about 0.2 us a byte: 1.5 ms for an 8 KB picture, on the writer's thread, which
    holds the interpreter lock while the training loop waits for it. The checksum is the
    same (event files read back unchanged); only its speed differs. Returns whether the
    fast one is in use (False without google-crc32c's compiled extension, or when the
    entry point switched them off).
    """
    if not _wanted:
        return False
    try:
        import google_crc32c
        from tensorboard.summary.writer import record_writer
    except ImportError:
        return False
    if google_crc32c.implementation != "c" or not hasattr(record_writer, "masked_crc32c"):
        return False

    def masked_crc32c(data: bytes) -> int:  # TFRecord's masking of the CRC-32C
        crc = google_crc32c.value(bytes(data))
        return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    record_writer.masked_crc32c = masked_crc32c
    return True
