"""RFC 6455 building blocks for the conformance server (standard library only).

Server-side frame encoding (deliberately able to produce invalid frames),
masking, close payloads, the opening-handshake accept key and the HTTP
request parser used to judge the client's upgrade request.
"""

import base64
import hashlib
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

OP_NAMES = {OP_CONT: "continuation", OP_TEXT: "text", OP_BINARY: "binary",
            OP_CLOSE: "close", OP_PING: "ping", OP_PONG: "pong"}

# Close codes an endpoint may put in a close frame (RFC 6455 §7.4.1, the
# IANA-registered 1012-1014, and 3000-4999 per §7.4.2).
def close_code_sendable(code):
    return (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999)


def accept_key(key):
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (str or bytes)."""
    if isinstance(key, str):
        key = key.encode("ascii")
    return base64.b64encode(hashlib.sha1(key + GUID).digest()).decode("ascii")


def xor_mask(data, key):
    """Apply (or remove) a 4-byte masking key; fast for large payloads."""
    n = len(data)
    if n == 0:
        return b""
    reps = key * (n // 4 + 1)
    a = int.from_bytes(data, "little")
    b = int.from_bytes(reps[:n], "little")
    return (a ^ b).to_bytes(n, "little")


def frame(op, payload=b"", fin=True, rsv=0, mask=None, length=None, len_form=None):
    """Encode one frame as the server sends it.

    rsv: 3-bit value (RSV1 = 4, RSV2 = 2, RSV3 = 1).
    mask: 4-byte key to set the MASK bit (servers must not; used to test
          that the client rejects it).
    length: override the announced payload length (header-only frames).
    len_form: force the length encoding: 7, 16 or 64 (None = minimal).
    """
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (op & 0x0F)
    n = len(payload) if length is None else length
    mbit = 0x80 if mask is not None else 0
    form = len_form or (7 if n < 126 else 16 if n < 65536 else 64)
    if form == 7:
        hdr = bytes([b0, mbit | n])
    elif form == 16:
        hdr = bytes([b0, mbit | 126]) + struct.pack("!H", n)
    else:
        hdr = bytes([b0, mbit | 127]) + struct.pack("!Q", n)
    if mask is not None:
        return hdr + mask + xor_mask(payload, mask)
    return hdr + payload


def header(op, n, fin=True, rsv=0):
    """Just the header of a frame announcing n payload bytes."""
    return frame(op, b"", fin=fin, rsv=rsv, length=n)


def close_payload(code=None, reason=b""):
    if isinstance(reason, str):
        reason = reason.encode("utf-8")
    if code is None:
        return b""
    return struct.pack("!H", code) + reason


def fragments(op, payload, sizes):
    """Split payload into a fragmented message: sizes is a list of fragment
    lengths (the last fragment takes the rest).  Returns a list of frames."""
    parts = []
    pos = 0
    for s in sizes:
        parts.append(payload[pos:pos + s])
        pos += s
    parts.append(payload[pos:])
    return [frame(op if i == 0 else OP_CONT, p, fin=(i == len(parts) - 1))
            for i, p in enumerate(parts)]


def split_every(payload, size):
    """Fragment sizes that cut payload into pieces of `size` bytes."""
    n = len(payload)
    k = max(1, (n + size - 1) // size)
    return [size] * (k - 1)


def fragmented(op, payload, size):
    return fragments(op, payload, split_every(payload, size))


# ---- HTTP ------------------------------------------------------------------

class HttpError(Exception):
    pass


def parse_request(raw):
    """Parse an HTTP/1.1 request head (bytes up to and including CRLFCRLF).

    Returns (method, target, version, headers) where headers is a list of
    (lower-cased name, value) pairs.  Raises HttpError on malformed input.
    """
    if not raw.endswith(b"\r\n\r\n"):
        raise HttpError("request head does not end with CRLF CRLF")
    lines = raw[:-4].split(b"\r\n")
    for ln in lines:
        if b"\n" in ln or b"\r" in ln:
            raise HttpError("bare CR or LF inside the request head")
    try:
        text = [ln.decode("ascii") for ln in lines]
    except UnicodeDecodeError:
        raise HttpError("non-ASCII bytes in the request head")
    parts = text[0].split(" ")
    if len(parts) != 3:
        raise HttpError("malformed request line %r" % text[0])
    method, target, version = parts
    headers = []
    for ln in text[1:]:
        if not ln or ln[0] in " \t":
            raise HttpError("obsolete line folding or empty header line %r" % ln)
        name, sep, value = ln.partition(":")
        if not sep or not name or name != name.strip() or any(c in name for c in " \t()<>@,;\\\"/[]?={}"):
            raise HttpError("malformed header line %r" % ln)
        headers.append((name.lower(), value.strip(" \t")))
    return method, target, version, headers


def header_values(headers, name):
    return [v for n, v in headers if n == name]


def tokens(headers, name):
    out = []
    for v in header_values(headers, name):
        out.extend(t.strip().lower() for t in v.split(",") if t.strip())
    return out


def response(status, reason, headers=(), body=b""):
    head = "HTTP/1.1 %d %s\r\n" % (status, reason)
    for n, v in headers:
        head += "%s: %s\r\n" % (n, v)
    return head.encode("latin-1") + b"\r\n" + body
