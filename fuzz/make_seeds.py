#!/usr/bin/env python3
"""Write the seed corpora for fuzz/fuzz_codec.c, fuzz/fuzz_handshake.c, fuzz/fuzz_client.c
and fuzz/fuzz_client_tls.c.

    python3 fuzz/make_seeds.py      (from the repository root)

fuzz_codec seeds are one configuration byte (see fuzz_codec.c) followed by
a server->client byte stream; fuzz_handshake seeds are raw HTTP responses.
The regress_* seeds are fuzzer-found inputs of fixed bugs, kept by hand.
"""
import os
import struct

ROOT = os.path.dirname(os.path.abspath(__file__))


def frame(opcode, payload=b"", fin=True, rsv=0, mask=None):
    """One frame; mask (4 bytes) sets the MASK bit and masks the payload."""
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    mbit = 0x80 if mask is not None else 0
    if n < 126:
        h = bytes([b0, mbit | n])
    elif n <= 0xFFFF:
        h = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    else:
        h = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    if mask is not None:
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        h += bytes(mask)
    return h + payload


def close(code=None, reason=b""):
    return frame(0x8, b"" if code is None else struct.pack(">H", code) + reason)


CODEC = {
    # RFC 6455 §5.7 examples (unmasked, as a server sends them)
    "rfc_single_text": frame(0x1, b"Hello"),
    "rfc_fragmented_text": frame(0x1, b"Hel", fin=False) + frame(0x0, b"lo"),
    "rfc_ping": frame(0x9, b"Hello"),
    "rfc_pong": frame(0xA, b"Hello"),
    "rfc_binary_256": frame(0x2, bytes(range(256))),
    "rfc_masked_text_violation": frame(0x1, b"Hello", mask=b"\x37\xfa\x21\x3d"),
    # messages
    "empty_text": frame(0x1),
    "utf8_text": frame(0x1, "κόσμε €𝄞".encode()),
    "binary_64bit_len": bytes([0x82, 127]) + struct.pack(">Q", 3) + b"abc",  # non-minimal length
    "fragmented_with_pings": frame(0x1, b"frag", fin=False) + frame(0x9, b"p1")
    + frame(0x0, b"ment", fin=False) + frame(0xA) + frame(0x9) + frame(0x0, b"ed"),
    "fragmented_utf8_split": frame(0x1, b"\xe2\x82", fin=False) + frame(0x0, b"\xac!"),
    "many_messages": frame(0x1, b"a") + frame(0x2, b"bc") + frame(0x9, b"x") + frame(0x1, b"d" * 130),
    # close frames
    "close_1000": close(1000),
    "close_reason": close(1001, b"going away"),
    "close_empty": close(),
    "close_4000_then_data": close(4000, b"app") + frame(0x1, b"ignored"),
    # violations
    "close_1_byte": frame(0x8, b"\x03"),
    "close_1005": close(1005),
    "close_bad_utf8": close(1000, b"\xc3\x28"),
    "rsv1_set": frame(0x1, b"x", rsv=4),
    "reserved_opcode": frame(0x3, b"x"),
    "reserved_control_opcode": frame(0xB),
    "control_fragmented": frame(0x9, b"x", fin=False),
    "control_too_long": frame(0x9, b"p" * 126),
    "unexpected_continuation": frame(0x0, b"x"),
    "expected_continuation": frame(0x1, b"a", fin=False) + frame(0x1, b"b"),
    "invalid_utf8": frame(0x1, b"\xc3\x28"),
    "truncated_utf8": frame(0x1, b"ok\xe2\x82"),
    "surrogate_utf8": frame(0x1, b"\xed\xa0\x80"),
    "length_msb_set": bytes([0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1]) + b"x",
    "frame_too_big_small": frame(0x2, b"z" * 101),
    "message_too_big_small": frame(0x2, b"y" * 90, fin=False) + frame(0x0, b"y" * 90, fin=False)
    + frame(0x0, b"y" * 90),
}

# configuration byte per seed name (default: all at once)
CONFIG = {
    "rfc_fragmented_text": 0x01,      # byte by byte
    "fragmented_with_pings": 0x05,    # 1,2,3.. cycling
    "fragmented_utf8_split": 0x01,
    "many_messages": 0x06,            # pseudo-random sizes
    "rfc_binary_256": 0x07,           # length boundaries
    "close_4000_then_data": 0x02,
    "frame_too_big_small": 0x08,      # small limits
    "message_too_big_small": 0x09,
    "rfc_ping": 0x10,                 # our close first: no pong
    "binary_64bit_len": 0x03,
}

KEY_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
OK101 = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: " + KEY_ACCEPT + "\r\n\r\n")

HANDSHAKE = {
    "valid_101": OK101,
    "valid_101_odd_case": "HTTP/1.1 101 Switching Protocols\r\nuPgRaDe:  WebSocket \r\n"
    "CONNECTION: keep-alive, Upgrade\r\nsec-websocket-accept:\t" + KEY_ACCEPT + "\r\n\r\n",
    "valid_101_subprotocol": OK101[:-2] + "Sec-WebSocket-Protocol: chat\r\n\r\n",
    "valid_101_then_frame": OK101 + "\x81\x05Hello",
    "extension": OK101[:-2] + "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
    "wrong_accept": OK101.replace("s3pP", "s3pQ"),
    "redirect_302": "HTTP/1.1 302 Found\r\nLocation: wss://edge.example.com/x\r\nContent-Length: 0\r\n\r\n",
    "ok_200": "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi",
    "upgrade_required_426": "HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n\r\n",
    "partial": OK101[:60],
    "obs_fold": "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n  , h2c\r\n\r\n",
}


# fuzz_client seeds are programs (see fuzz/fuzz_client.c): two PRNG bytes,
# a configuration byte (bit 0 push delivery, 1 small queue limit, 2
# max_attempts 3, 3 URL with a query, 4 fast health checks, 5 connect at
# once), a second one (bit 0 token provider, 1 sends and closes from push
# callbacks, 2 on_reconnecting, 3 max_message_size 300, 4 watchdog 2 s,
# 5 dead timer 3 s), then ops.
C_STEP, C_TIME, C_SEND, C_OK, C_EV, C_HEALTH, C_ERR, C_CLOSEF, C_MISC = 0, 3, 4, 7, 9, 11, 12, 13, 14
C_KNOBS, C_CALM, C_CLOSE, C_CONNECT, C_RECREATE, C_PULL, C_PULL1, C_STEPPULL = 15, 16, 17, 18, 19, 20, 22, 23
M_PING, M_FRAG, M_GARBAGE, M_BINARY, M_END, M_BIG = 0, 1, 2, 3, 4, 5


def prog(cfg, *ops, rng=(0x12, 0x34), cfg2=0):
    return bytes(rng) + bytes([cfg, cfg2]) + bytes(b for op in ops for b in op)


def steps(n=8):
    return (C_STEP, n - 1)


def up():
    """step until the upgrade is answered, connection.ok, events pulled"""
    return [steps(), (C_OK, 3), (C_STEPPULL,), steps(), (C_PULL,)]


def drop(eof=True):
    return [(C_MISC, M_END, 1 if eof else 0), (C_STEPPULL,), (C_STEPPULL,)]


CLIENT = {
    "connect_send_events": prog(0x20, *up(), (C_SEND, 10), (C_STEPPULL,), (C_EV,), (C_EV,), (C_STEPPULL,),
                                (C_SEND, 245), (C_SEND, 199), steps(), (C_PULL,)),
    "push_mode": prog(0x21, *up(), (C_SEND, 1), (C_EV,), steps(), (C_HEALTH,), steps()),
    "reconnect_resend": prog(0x20, *up(), (C_SEND, 50), (C_SEND, 60), *drop(), (C_TIME, 8), (C_STEPPULL,),
                             (C_TIME, 6), *up(), (C_SEND, 70), steps(), (C_PULL,)),
    "would_block_partial": prog(0x20, (C_KNOBS, 0x3F, 0x0B, 0x01), *up(), (C_SEND, 30), (C_SEND, 250),
                                (C_SEND, 130), steps(), steps(), *drop(False), (C_TIME, 7), (C_STEPPULL,),
                                *up(), steps(), (C_CALM,), steps()),
    "want_write_always": prog(0x20, (C_KNOBS, 0x07, 0x00, 0x02), *up(), (C_SEND, 90), steps(), steps()),
    "close_connect": prog(0x20, *up(), (C_SEND, 5), (C_CLOSE,), (C_STEPPULL,), (C_SEND, 6), (C_CONNECT,),
                          (C_STEPPULL,), *up(), (C_STEPPULL,)),
    "close_after_eof": prog(0x20, *up(), (C_SEND, 5), (C_MISC, M_END, 1), steps(2), (C_CLOSE,),
                            (C_PULL,), (C_CONNECT,), *up(), (C_SEND, 8), steps()),
    "recreate": prog(0x20, *up(), (C_SEND, 5), (C_RECREATE, 0x23, 0x00), *up(), (C_SEND, 9), steps(), (C_PULL,)),
    "conn_error_retry": prog(0x20, steps(), (C_ERR, 7), (C_STEPPULL,), (C_STEPPULL,), (C_TIME, 7),
                             *up(), (C_SEND, 3), steps()),
    "conn_error_fatal": prog(0x24, steps(), (C_ERR, 3), (C_STEPPULL,), (C_SEND, 3), (C_CONNECT,), *up()),
    "server_close": prog(0x20, *up(), (C_CLOSEF, 1), (C_STEPPULL,), (C_TIME, 7), *up(), (C_CLOSEF, 0),
                         (C_STEPPULL,)),
    "fragments_garbage": prog(0x20, *up(), (C_MISC, M_FRAG, 5, 9, 1), (C_MISC, M_PING), (C_STEPPULL,),
                              (C_MISC, M_GARBAGE, 5, 0x81, 0x7e, 0xff, 0x00, 0x12), (C_STEPPULL,)),
    "timers": prog(0x30, *up(), (C_TIME, 7), (C_STEPPULL,), (C_TIME, 15), (C_STEPPULL,), (C_TIME, 15),
                   (C_STEPPULL,), (C_TIME, 7), (C_STEPPULL,)),
    "slow_open_404": prog(0x20, (C_KNOBS, 0x00, 0x00, 0xEC), steps(), (C_STEPPULL,), (C_TIME, 7),
                          (C_STEPPULL,), (C_CALM,), (C_TIME, 8), *up()),
    "provider_reconnecting": prog(0x20, *up(), (C_SEND, 4), *drop(), (C_TIME, 8), (C_STEPPULL,), (C_TIME, 8),
                                  *up(), (C_ERR, 0), (C_STEPPULL,), (C_TIME, 9), *up(), steps(), cfg2=0x05),
    "push_callbacks": prog(0x21, *up(), (C_EV,), (C_EV,), steps(), (C_MISC, M_BIG, 1), (C_EV,), steps(),
                           *drop(), (C_TIME, 8), steps(), *up(), steps(), cfg2=0x02),
    "small_limits": prog(0x30, *up(), (C_MISC, M_BIG, 0), (C_STEPPULL,), (C_TIME, 8), steps(), *up(),
                         (C_TIME, 9), (C_STEPPULL,), cfg2=0x38),
    "small_queue": prog(0x22, (C_SEND, 190), (C_SEND, 190), (C_SEND, 190), (C_SEND, 190), *up(), steps()),
}


def write(directory, name, data):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def main():
    for name, stream in CODEC.items():
        write(os.path.join(ROOT, "corpus", "fuzz_codec"), name, bytes([CONFIG.get(name, 0)]) + stream)
    for name, data in CLIENT.items():  # the TLS variant runs the same programs
        write(os.path.join(ROOT, "corpus", "fuzz_client"), name, data)
        write(os.path.join(ROOT, "corpus", "fuzz_client_tls"), name, data)
    for name, text in HANDSHAKE.items():
        write(os.path.join(ROOT, "corpus", "fuzz_handshake"), name, text.encode("latin-1"))


if __name__ == "__main__":
    main()
