"""Shared helpers for the bench tests: WebSocket frames as a server writes
them and as the client's arrive. A plain module (not a conftest) so tests
can import from it."""

from __future__ import annotations


def server_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = False) -> bytes:
    """One frame as a server writes it (unmasked, unless `mask`)."""
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        head = bytes((b0, n))
    elif n < 1 << 16:
        head = bytes((b0, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, 127)) + n.to_bytes(8, "big")
    if mask:
        return bytes((head[0], head[1] | 0x80)) + head[2:] + bytes(4) + payload
    return head + payload


def client_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, unmasked payload) of every client frame in `data`."""
    frames, pos = [], 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        assert b1 & 0x80, "a client frame is masked"
        n, pos = b1 & 0x7F, pos + 2
        if n == 126:
            n, pos = int.from_bytes(data[pos : pos + 2], "big"), pos + 2
        key, pos = data[pos : pos + 4], pos + 4
        payload = bytes(byte ^ key[i % 4] for i, byte in enumerate(data[pos : pos + n]))
        frames.append((b0 & 0x0F, payload))
        pos += n
    return frames
