"""The test cases, modelled on the Autobahn TestSuite's client case categories
(own implementation; Autobahn's numbering is reused where a case maps).

Each case is a script run against the connected client (see judge.Conn).
Case ids: "<category>.<n>[.<m>]"; the category is the first component.
"""

import functools
import random
import socket
import struct

from judge import Case
from wsproto import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,
                     accept_key, close_payload, fragmented, fragments, frame,
                     header, header_values, response)

CATEGORY_NAMES = {
    "1": "1 Framing",
    "2": "2 Pings/Pongs",
    "3": "3 Reserved bits",
    "4": "4 Reserved opcodes",
    "5": "5 Fragmentation",
    "6": "6 UTF-8 handling",
    "7": "7 Close handling",
    "9": "9 Limits/large messages",
    "10": "10 Misc",
    "hs": "hs Opening handshake",
}

KiB = 1024
MiB = 1024 * 1024
BIG_TIMEOUT = 60.0

_CASES = []


def add(cid, desc, script, **kw):
    _CASES.append(Case(cid, desc, script, **kw))


# ---- payloads ----------------------------------------------------------------

_PATTERN = "Hello-µ@ßöäüàá-UTF-8!! κόσμε 日本語テキスト 😀🎉 ∀∂∈ℝ∧∪≡∞ ".encode("utf-8")


@functools.lru_cache(maxsize=None)
def text_payload(n):
    """Exactly n bytes of valid UTF-8 mixing 1- to 4-byte sequences."""
    b = (_PATTERN * (n // len(_PATTERN) + 1))[:n]
    e = b.decode("utf-8", "ignore").encode("utf-8")
    return e + b"x" * (n - len(e))


@functools.lru_cache(maxsize=None)
def binary_payload(n):
    return random.Random(n).randbytes(n)


def payload(op, n):
    return text_payload(n) if op == OP_TEXT else binary_payload(n)


def raw_frames(*specs):
    """specs: (op, payload, fin[, rsv]) tuples -> list of frames."""
    out = []
    for s in specs:
        op, p, fin = s[0], s[1], s[2]
        rsv = s[3] if len(s) > 3 else 0
        out.append(frame(op, p, fin=fin, rsv=rsv))
    return out


def T(s):
    return s.encode("utf-8") if isinstance(s, str) else s


# ---- case shapes ----------------------------------------------------------------

def echo_case(cid, desc, op, data, frames=None, mode="whole", **kw):
    frames = frames if frames is not None else [frame(op, data)]

    def script(t):
        t.send_mode(frames, mode)
        t.expect_message(op, data)
        t.close()
    add(cid, desc, script, **kw)


def fail_case(cid, desc, code, frames, mode="whole", echoes=(), pongs=(), what=None,
              server_closed=False, **kw):
    """Send frames; expect the listed echoes/pongs (in order: pongs first, then
    echoes), then the client must fail with `code` and send nothing else."""
    what = what or "the invalid frame"

    def script(t):
        t.send_mode(frames, mode)
        for p in pongs:
            t.expect_pong(p)
        for op, p in echoes:
            t.expect_message(op, p)
        if server_closed:
            t.sent_close = True
        t.expect_fail(code, what)
    add(cid, desc, script, expect_exit="nonzero", **kw)


def failfast_case(cid, desc, code, first, rest, **kw):
    """Send `first` (which already holds the invalid data), then hold back
    `rest` until the client's close arrives (bounded wait)."""
    def script(t):
        t.send(first)
        t.expect_fail(code, "the invalid bytes", within=True, rest=rest)
    add(cid, desc, script, expect_exit="nonzero", **kw)


MODES = {"whole": "in one write", "frame": "one write per frame", "octet": "in 1-octet chops"}


# ---- 1 Framing ------------------------------------------------------------------

def _cat1():
    sizes = [0, 125, 126, 127, 128, 65535, 65536]
    for sub, op, name in ((1, OP_TEXT, "text"), (2, OP_BINARY, "binary")):
        for i, n in enumerate(sizes, 1):
            echo_case("1.%d.%d" % (sub, i), "Send %s message with payload length %d" % (name, n),
                      op, payload(op, n))
        echo_case("1.%d.8" % sub, "Send %s message with payload length 65536, in chops of 997 octets"
                  % name, op, payload(op, 65536), mode=997)
        echo_case("1.%d.9" % sub, "Send %s message with payload length 126 in 1-octet chops "
                  "(16-bit length split)" % name, op, payload(op, 126), mode="octet")
        echo_case("1.%d.10" % sub, "Send %s message with payload length 65536 in 1-octet chops "
                  "(64-bit length split)" % name, op, payload(op, 65536), mode="octet")
        echo_case("1.%d.11" % sub, "Send %s message with payload length 125 in 1-octet chops" % name,
                  op, payload(op, 125), mode="octet")
    echo_case("1.1.12", "Send text message with NUL and control characters", OP_TEXT,
              b"\x00\x01\x02\x1f\x7f NUL inside\x00\x00 end")
    echo_case("1.2.12", "Send binary message with every byte value (0x00-0xFF x4)", OP_BINARY,
              bytes(range(256)) * 4)

    # 1.3: several messages back to back
    rnd = random.Random(13)
    msgs = [(OP_TEXT if i % 2 == 0 else OP_BINARY, rnd.randrange(0, 300)) for i in range(100)]
    msgs = [(op, payload(op, n)[:n] if op == OP_BINARY else text_payload(n)) for op, n in msgs]

    def pipelined(ms, mode):
        def script(t):
            t.send_mode([frame(op, p) for op, p in ms], mode)
            for op, p in ms:
                t.expect_message(op, p)
            t.close()
        return script
    only_text = [(OP_TEXT, text_payload(i * 3)) for i in range(100)]
    only_bin = [(OP_BINARY, binary_payload(i * 3)) for i in range(100)]
    add("1.3.1", "Send 100 text messages (0-297 bytes) in one write: all echoed in order",
        pipelined(only_text, "whole"))
    add("1.3.2", "Send 100 binary messages (0-297 bytes) in one write: all echoed in order",
        pipelined(only_bin, "whole"))
    add("1.3.3", "Send 100 alternating text/binary messages in one write", pipelined(msgs, "whole"))
    big = [(OP_BINARY if i % 2 else OP_TEXT, payload(OP_BINARY if i % 2 else OP_TEXT, 65536 + i))
           for i in range(24)]
    add("1.3.4", "Send 24 messages of ~64 KiB (1.5 MiB) in one write while the echoes flow back",
        pipelined(big, "whole"), timeout=BIG_TIMEOUT)
    add("1.3.5", "Send 30 small messages in 1-octet chops", pipelined(msgs[:30], "octet"))


# ---- 2 Pings/Pongs ------------------------------------------------------------------

def _cat2():
    def ping_case(cid, desc, pings, mode="whole", extra_before=()):
        def script(t):
            t.send_mode(list(extra_before) + [frame(OP_PING, p) for p in pings], mode)
            for p in pings:
                t.expect_pong(p)
            t.close()
        add(cid, desc, script)

    ping_case("2.1", "Send ping without payload", [b""])
    ping_case("2.2", "Send ping with small text payload", [b"Hello, world!"])
    ping_case("2.3", "Send ping with small binary (non UTF-8) payload",
              [b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff"])
    ping_case("2.4", "Send ping with binary payload of 125 octets", [binary_payload(125)])
    fail_case("2.5", "Send ping with binary payload of 126 octets: fail 1002, no pong", 1002,
              [frame(OP_PING, binary_payload(126))], what="a 126-byte ping")
    ping_case("2.6", "Send ping with binary payload of 125 octets in 1-octet chops",
              [binary_payload(125)], mode="octet")

    def pong_case(cid, desc, pong, ping=None):
        def script(t):
            fs = [frame(OP_PONG, pong)] + ([frame(OP_PING, ping)] if ping is not None else [])
            t.send(fs)
            if ping is not None:
                t.expect_pong(ping)
            t.close()
        add(cid, desc, script)
    pong_case("2.7", "Send unsolicited pong without payload: ignored", b"")
    pong_case("2.8", "Send unsolicited pong with payload: ignored", b"unsolicited pong payload")
    pong_case("2.9", "Send unsolicited pong, then ping: only the ping is answered",
              b"unsolicited pong payload", ping=b"ping payload")
    tens = [("payload-%d" % i).encode() for i in range(10)]
    ping_case("2.10", "Send 10 pings in one write: 10 pongs in order", tens)
    ping_case("2.11", "Send 10 pings in 1-octet chops: 10 pongs in order", tens, mode="octet")
    ping_case("2.12", "Send ping whose payload is invalid UTF-8: echoed unchanged",
              [b"\xff\xfe\xc0\xaf\xed\xa0\x80"])
    fail_case("2.13", "Send ping with FIN=0 (fragmented control frame): fail 1002", 1002,
              [frame(OP_PING, b"fragmented ping", fin=False)], what="a ping with FIN=0")
    fail_case("2.14", "Send ping with a 16-bit extended length (control length field 126): fail 1002",
              1002, [frame(OP_PING, b"abcd", len_form=16)], what="a ping with length field 126")
    fail_case("2.15", "Send pong with 126-byte payload: fail 1002", 1002,
              [frame(OP_PONG, binary_payload(126))], what="a 126-byte pong")
    def echo_then_pong(t):
        t.send([frame(OP_TEXT, b"first"), frame(OP_PING, b"after text")])
        t.expect_text(b"first")
        t.expect_pong(b"after text")
        t.close()
    add("2.16", "Send ping right after a text message in one write: echo, then pong", echo_then_pong)


# ---- 3 Reserved bits -----------------------------------------------------------------

def _cat3():
    hello = b"Hello, world!"
    fail_case("3.1", "Send small text message with RSV = 1: fail 1002, no echo", 1002,
              [frame(OP_TEXT, hello, rsv=4)], what="a text frame with RSV1 set")
    for cid, rsv, mode in (("3.2", 2, "whole"), ("3.3", 3, "frame"), ("3.4", 4, "octet")):
        fail_case(cid, "Send text, then text with RSV = %d, then ping (%s): echo of the first "
                  "only, fail 1002, no pong" % (rsv, MODES[mode]), 1002,
                  [frame(OP_TEXT, hello), frame(OP_TEXT, hello, rsv=rsv), frame(OP_PING, hello)],
                  mode=mode, echoes=[(OP_TEXT, hello)], what="a text frame with RSV=%d" % rsv)
    fail_case("3.5", "Send small binary message with RSV = 5: fail 1002", 1002,
              [frame(OP_BINARY, bytes(range(8)), rsv=5)], what="a binary frame with RSV=5")
    fail_case("3.6", "Send ping with RSV = 6: fail 1002, no pong", 1002,
              [frame(OP_PING, hello, rsv=6)], what="a ping with RSV=6")
    fail_case("3.7", "Send close with RSV = 7: fail 1002", 1002,
              [frame(OP_CLOSE, close_payload(1000), rsv=7)], what="a close frame with RSV=7",
              server_closed=True)
    fail_case("3.8", "Send fragmented text whose continuation has RSV = 1: fail 1002", 1002,
              [frame(OP_TEXT, b"fragment1", fin=False), frame(OP_CONT, b"fragment2", rsv=4)],
              what="a continuation frame with RSV1 set")
    fail_case("3.9", "Send pong with RSV = 2: fail 1002", 1002,
              [frame(OP_PONG, hello, rsv=2)], what="a pong with RSV=2")


# ---- 4 Reserved opcodes ---------------------------------------------------------------

def _cat4():
    hello = b"Hello, world!"
    for sub, ops in ((1, (3, 4, 5, 6, 7)), (2, (11, 12, 13, 14, 15))):
        kind = "non-control" if sub == 1 else "control"
        a, b, c, d, e = ops
        fail_case("4.%d.1" % sub, "Send frame with reserved %s opcode %d: fail 1002" % (kind, a),
                  1002, [frame(a, b"")], what="opcode %d" % a)
        fail_case("4.%d.2" % sub, "Send frame with reserved %s opcode %d and payload: fail 1002"
                  % (kind, b), 1002, [frame(b, b"reserved opcode payload")], what="opcode %d" % b)
        fail_case("4.%d.3" % sub, "Send text, then reserved %s opcode %d, then ping: echo, fail "
                  "1002, no pong" % (kind, c), 1002,
                  [frame(OP_TEXT, hello), frame(c, b""), frame(OP_PING, hello)],
                  echoes=[(OP_TEXT, hello)], what="opcode %d" % c)
        fail_case("4.%d.4" % sub, "Send text, then reserved %s opcode %d with payload, then ping"
                  % (kind, d), 1002,
                  [frame(OP_TEXT, hello), frame(d, b"reserved opcode payload"), frame(OP_PING, hello)],
                  echoes=[(OP_TEXT, hello)], what="opcode %d" % d)
        fail_case("4.%d.5" % sub, "Send text, then reserved %s opcode %d with payload, then ping, "
                  "in 1-octet chops" % (kind, e), 1002,
                  [frame(OP_TEXT, hello), frame(e, b"reserved opcode payload"), frame(OP_PING, hello)],
                  mode="octet", echoes=[(OP_TEXT, hello)], what="opcode %d" % e)


# ---- 5 Fragmentation ----------------------------------------------------------------------

def _cat5():
    f1, f2 = b"fragment1", b"fragment2"
    fail_case("5.1", "Send ping fragmented into 2 fragments: fail 1002", 1002,
              raw_frames((OP_PING, f1, False), (OP_CONT, f2, True)), what="a fragmented ping")
    fail_case("5.2", "Send pong fragmented into 2 fragments: fail 1002", 1002,
              raw_frames((OP_PONG, f1, False), (OP_CONT, f2, True)), what="a fragmented pong")
    two = raw_frames((OP_TEXT, f1, False), (OP_CONT, f2, True))
    for cid, mode in (("5.3", "whole"), ("5.4", "octet"), ("5.5", "frame")):
        echo_case(cid, "Send text message fragmented into 2 fragments (%s)" % MODES[mode],
                  OP_TEXT, f1 + f2, frames=two, mode=mode)
    with_ping = raw_frames((OP_TEXT, f1, False), (OP_PING, b"ping payload", True), (OP_CONT, f2, True))
    for cid, mode in (("5.6", "whole"), ("5.7", "octet"), ("5.8", "frame")):
        def script(t, mode=mode):
            t.send_mode(with_ping, mode)
            t.expect_pong(b"ping payload")
            t.expect_text(f1 + f2)
            t.close()
        add(cid, "Send text message in 2 fragments with a ping between them (%s): pong, then echo"
            % MODES[mode], script)
    hello = b"Hello, world!"
    for fin, base in ((True, 9), (False, 12)):
        fs = raw_frames((OP_CONT, b"non-continuation payload", fin), (OP_TEXT, hello, True))
        for k, mode in enumerate(("whole", "frame", "octet")):
            fail_case("5.%d" % (base + k), "Send continuation frame with FIN=%d and no message in "
                      "progress, then text (%s): fail 1002, no echo" % (int(fin), MODES[mode]),
                      1002, fs, mode=mode, what="a continuation frame with no message in progress")
    fail_case("5.15", "Send text in 2 fragments, then continuation FIN=0 and text FIN=1 "
              "without a start: echo, then fail 1002", 1002,
              raw_frames((OP_TEXT, f1, False), (OP_CONT, f2, True), (OP_CONT, b"fragment3", False),
                         (OP_TEXT, b"fragment4", True)),
              echoes=[(OP_TEXT, f1 + f2)], what="a continuation frame with no message in progress")
    fail_case("5.16", "Send (continuation FIN=0, text FIN=0, continuation FIN=1) twice: fail 1002",
              1002, raw_frames((OP_CONT, f1, False), (OP_TEXT, f2, False), (OP_CONT, b"fragment3", True)) * 2,
              what="a continuation frame with no message in progress")
    fail_case("5.17", "Send (continuation FIN=1, text FIN=0, continuation FIN=1) twice: fail 1002",
              1002, raw_frames((OP_CONT, f1, True), (OP_TEXT, f2, False), (OP_CONT, b"fragment3", True)) * 2,
              what="a continuation frame with no message in progress")
    fail_case("5.18", "Send text fragment FIN=0, then a new text frame FIN=1: fail 1002", 1002,
              raw_frames((OP_TEXT, f1, False), (OP_TEXT, f2, True)),
              what="a text frame inside a fragmented message")

    def interleaved(mode):
        def script(t):
            parts = [("fragment%d" % i).encode() for i in range(1, 6)]
            t.send_mode([frame(OP_TEXT, parts[0], fin=False), frame(OP_CONT, parts[1], fin=False),
                         frame(OP_PING, b"pongme 1!")], mode)
            t.expect_pong(b"pongme 1!")          # answered while the message is incomplete
            t.send_mode([frame(OP_CONT, parts[2], fin=False), frame(OP_CONT, parts[3], fin=False),
                         frame(OP_PING, b"pongme 2!")], mode)
            t.expect_pong(b"pongme 2!")
            t.send_mode([frame(OP_CONT, parts[4], fin=True)], mode)
            t.expect_text(b"".join(parts))
            t.close()
        return script
    add("5.19", "Send text in 5 fragments with 2 pings in between; each pong awaited before the "
        "next fragments (one write per batch)", interleaved("whole"))
    add("5.20", "Same as 5.19, one write per frame", interleaved("frame"))
    echo_case("5.21", "Send binary message fragmented into 2 fragments", OP_BINARY,
              binary_payload(300), frames=fragments(OP_BINARY, binary_payload(300), [100]))
    p = text_payload(200)
    echo_case("5.22", "Send text in 10 fragments including empty first, middle and last fragments",
              OP_TEXT, p, frames=fragments(OP_TEXT, p, [0, 20, 20, 0, 50, 50, 0, 60, 0]))
    b = binary_payload(100)
    echo_case("5.23", "Send binary in 100 one-byte fragments plus an empty final fragment",
              OP_BINARY, b, frames=fragments(OP_BINARY, b, [1] * 100))
    echo_case("5.24", "Send text message made of 3 empty fragments: empty echo", OP_TEXT, b"",
              frames=fragments(OP_TEXT, b"", [0, 0]))
    p = text_payload(500)
    echo_case("5.25", "Send text in 10 fragments, one write per fragment", OP_TEXT, p,
              frames=fragmented(OP_TEXT, p, 50), mode="frame")
    echo_case("5.26", "Send text in 10 fragments, in 1-octet chops", OP_TEXT, p,
              frames=fragmented(OP_TEXT, p, 50), mode="octet")
    fail_case("5.27", "Send close frame with FIN=0: fail 1002", 1002,
              [frame(OP_CLOSE, close_payload(1000), fin=False)], what="a close frame with FIN=0",
              server_closed=True)
    fail_case("5.28", "Send binary frame inside a fragmented text message: fail 1002", 1002,
              raw_frames((OP_TEXT, f1, False), (OP_BINARY, f2, True)),
              what="a binary frame inside a fragmented message")

    def pingpong_between():
        def script(t):
            parts = [("part%d " % i).encode() for i in range(5)]
            fs = []
            for i, q in enumerate(parts):
                fs.append(frame(OP_TEXT if i == 0 else OP_CONT, q, fin=(i == 4)))
                if i < 4:
                    fs += [frame(OP_PING, b"p%d" % i), frame(OP_PONG, b"unsolicited")]
            t.send(fs)
            for i in range(4):
                t.expect_pong(b"p%d" % i)
            t.expect_text(b"".join(parts))
            t.close()
        return script
    add("5.29", "Send text in 5 fragments with a ping and an unsolicited pong between each: "
        "4 pongs, then echo", pingpong_between())
    big = binary_payload(70000)
    echo_case("5.30", "Send binary as an empty first fragment and a 64-bit-length continuation",
              OP_BINARY, big, frames=fragments(OP_BINARY, big, [0]))


# ---- 6 UTF-8 ----------------------------------------------------------------------------------

KOSME = "κόσμε".encode("utf-8")

VALID = [
    ("ASCII", b"Hello, world!"),
    ("2-byte U+0080", "\u0080".encode()),
    ("2-byte U+07FF", "\u07ff".encode()),
    ("3-byte U+0800", "\u0800".encode()),
    ("3-byte U+D7FF (last before the surrogates)", "\ud7ff".encode()),
    ("3-byte U+E000 (first after the surrogates)", "\ue000".encode()),
    ("3-byte U+FFFD", "\ufffd".encode()),
    ("noncharacters U+FFFE U+FFFF U+FDD0 (valid UTF-8)", "\ufffe\uffff\ufdd0".encode()),
    ("BOM U+FEFF", "\ufeff".encode()),
    ("4-byte U+10000", "\U00010000".encode()),
    ("4-byte U+10FFFF", "\U0010ffff".encode()),
    ("NUL", b"\x00"),
    ("Greek kosme", KOSME),
    ("mixed scripts", "Hello-µ@ßöäüàá-UTF-8!! 日本語 Ελληνικά ∀∂∈ℝ".encode()),
    ("emoji", "😀🎉👍🏽🇩🇪".encode()),
    ("every sequence length boundary",
     "\x00\x7f\u0080\u07ff\u0800\uffff\U00010000\U0010ffff".encode()),
    ("4 KiB of mixed text", None),
]

INVALID = [
    ("lone continuation byte 0x80", b"\x80"),
    ("lone continuation byte 0xBF", b"\xbf"),
    ("continuation bytes 80 BF 80", b"\x80\xbf\x80"),
    ("all 64 continuation bytes", bytes(range(0x80, 0xC0))),
    ("lonely 2-byte start C0 + space", b"\xc0 "),
    ("lonely 2-byte start DF + space", b"\xdf "),
    ("lonely 3-byte start E0 + space", b"\xe0 "),
    ("lonely 3-byte start EF + space", b"\xef "),
    ("lonely 4-byte start F0 + space", b"\xf0 "),
    ("lonely start bytes C2..F4 each + space", b"".join(bytes([c, 0x20]) for c in range(0xC2, 0xF5))),
    ("truncated 2-byte sequence at end (C2)", b"abc\xc2"),
    ("truncated 3-byte sequence at end (E0 A0)", b"abc\xe0\xa0"),
    ("truncated 3-byte sequence at end (EF BF)", b"abc\xef\xbf"),
    ("truncated 4-byte sequence at end (F0 90 80)", b"abc\xf0\x90\x80"),
    ("truncated 4-byte sequence at end (F4 8F BF)", b"abc\xf4\x8f\xbf"),
    ("kosme + truncated sequence (CE)", KOSME + b"\xce"),
    ("truncated 3-byte sequence then ASCII (E0 A0 41)", b"\xe0\xa0A"),
    ("truncated 4-byte sequence then ASCII (F0 90 80 41)", b"\xf0\x90\x80A"),
    ("truncated 2-byte sequence then ASCII (C2 41)", b"\xc2A"),
    ("impossible byte FE", b"\xfe"),
    ("impossible byte FF", b"\xff"),
    ("impossible bytes FE FE FF FF", b"\xfe\xfe\xff\xff"),
    ("start byte F5 (> U+10FFFF)", b"\xf5\x80\x80\x80"),
    ("5-byte sequence F8 88 80 80 80", b"\xf8\x88\x80\x80\x80"),
    ("6-byte sequence FC 84 80 80 80 80", b"\xfc\x84\x80\x80\x80\x80"),
    ("overlong '/' C0 AF", b"\xc0\xaf"),
    ("overlong '/' E0 80 AF", b"\xe0\x80\xaf"),
    ("overlong '/' F0 80 80 AF", b"\xf0\x80\x80\xaf"),
    ("overlong '/' F8 80 80 80 AF", b"\xf8\x80\x80\x80\xaf"),
    ("overlong '/' FC 80 80 80 80 AF", b"\xfc\x80\x80\x80\x80\xaf"),
    ("maximal overlong C1 BF", b"\xc1\xbf"),
    ("maximal overlong E0 9F BF", b"\xe0\x9f\xbf"),
    ("maximal overlong F0 8F BF BF", b"\xf0\x8f\xbf\xbf"),
    ("overlong NUL C0 80", b"\xc0\x80"),
    ("overlong NUL E0 80 80", b"\xe0\x80\x80"),
    ("overlong NUL F0 80 80 80", b"\xf0\x80\x80\x80"),
    ("surrogate U+D800 (ED A0 80)", b"\xed\xa0\x80"),
    ("surrogate U+DB7F (ED AD BF)", b"\xed\xad\xbf"),
    ("surrogate U+DB80 (ED AE 80)", b"\xed\xae\x80"),
    ("surrogate U+DBFF (ED AF BF)", b"\xed\xaf\xbf"),
    ("surrogate U+DC00 (ED B0 80)", b"\xed\xb0\x80"),
    ("surrogate U+DF80 (ED BE 80)", b"\xed\xbe\x80"),
    ("surrogate U+DFFF (ED BF BF)", b"\xed\xbf\xbf"),
    ("surrogate pair U+D800 U+DC00 (CESU-8)", b"\xed\xa0\x80\xed\xb0\x80"),
    ("surrogate pair U+DBFF U+DFFF", b"\xed\xaf\xbf\xed\xbf\xbf"),
    ("above U+10FFFF: F4 90 80 80", b"\xf4\x90\x80\x80"),
    ("above U+10FFFF: F4 BF BF BF", b"\xf4\xbf\xbf\xbf"),
    ("above U+10FFFF: F7 BF BF BF", b"\xf7\xbf\xbf\xbf"),
    ("invalid byte inside valid text", b"Hello\xffworld"),
    ("surrogate inside kosme text", KOSME + b"\xed\xa0\x80edited"),
]


def _check_samples():
    for name, b in VALID:
        if b is not None:
            b.decode("utf-8")
    for name, b in INVALID:
        try:
            b.decode("utf-8")
        except UnicodeDecodeError:
            continue
        raise AssertionError("sample %r is valid UTF-8" % name)


def _cat6():
    _check_samples()
    valid = [(n, b if b is not None else text_payload(4096)) for n, b in VALID]
    # 6.1 empty payloads
    echo_case("6.1.1", "Send text message of length 0", OP_TEXT, b"")
    echo_case("6.1.2", "Send fragmented text message, 3 fragments each of length 0", OP_TEXT, b"",
              frames=fragments(OP_TEXT, b"", [0, 0]))
    echo_case("6.1.3", "Send fragmented text message, 3 fragments, first and last of length 0",
              OP_TEXT, b"middle", frames=fragments(OP_TEXT, b"middle", [0, 6]))
    # 6.2 valid UTF-8, differently split
    s = "Hello-µ@ßöäüàá-UTF-8!!".encode()
    echo_case("6.2.1", "Send valid UTF-8 text message in one fragment", OP_TEXT, s)
    echo_case("6.2.2", "Send valid UTF-8 text message in 2 fragments, split on a code point",
              OP_TEXT, s, frames=fragments(OP_TEXT, s, [s.index("ß".encode())]))
    echo_case("6.2.3", "Send valid UTF-8 text message in 1-octet chops", OP_TEXT, s, mode="octet")
    echo_case("6.2.4", "Send valid UTF-8 text message in 1-byte fragments (code points split "
              "across frames)", OP_TEXT, s, frames=fragments(OP_TEXT, s, [1] * (len(s) - 1)))
    e = "😀".encode()
    echo_case("6.2.5", "Send a 4-byte character split across 4 fragments", OP_TEXT, e,
              frames=fragments(OP_TEXT, e, [1, 1, 1]))
    # 6.3 invalid UTF-8 in later fragments / across fragments
    n = 0

    def inv3(desc, frames, mode="whole", **kw):
        nonlocal n
        n += 1
        fail_case("6.3.%d" % n, desc + ": fail 1007, no echo", 1007, frames, mode=mode,
                  what="the invalid UTF-8", **kw)
    inv3("Send invalid UTF-8 text message in one fragment",
         [frame(OP_TEXT, KOSME + b"\xed\xa0\x80edited")])
    inv3("Send invalid UTF-8 text message in 1-octet chops",
         [frame(OP_TEXT, KOSME + b"\xed\xa0\x80edited")], mode="octet")
    inv3("Send text in 3 fragments, invalid byte in the second",
         raw_frames((OP_TEXT, b"Hello ", False), (OP_CONT, b"wor\xffld", False), (OP_CONT, b"!", True)))
    inv3("Send text in 3 fragments, invalid byte in the last",
         raw_frames((OP_TEXT, b"Hello ", False), (OP_CONT, b"world", False), (OP_CONT, b"!\xff", True)))
    inv3("Send text whose first fragment ends with E2 82 and whose next starts with 'A'",
         raw_frames((OP_TEXT, b"Hello \xe2\x82", False), (OP_CONT, b"A", True)))
    inv3("Send text ending in an incomplete sequence split over fragments (F0 9F | 98)",
         raw_frames((OP_TEXT, b"ab\xf0\x9f", False), (OP_CONT, b"\x98", True)))
    inv3("Send text whose last fragment is empty after an incomplete sequence",
         raw_frames((OP_TEXT, b"ab\xf0\x9f\x98", False), (OP_CONT, b"", True)))
    inv3("Send text with a surrogate split across fragments (ED | A0 80)",
         raw_frames((OP_TEXT, b"x\xed", False), (OP_CONT, b"\xa0\x80", True)))
    inv3("Send text with an overlong sequence split across fragments (E0 | 80 AF)",
         raw_frames((OP_TEXT, b"x\xe0", False), (OP_CONT, b"\x80\xafy", True)))
    inv3("Send valid text message, then invalid one: echo of the first only",
         [frame(OP_TEXT, b"valid"), frame(OP_TEXT, b"in\xc0\xafvalid")],
         echoes=[(OP_TEXT, b"valid")])
    inv3("Send invalid text in a fragment after a ping between fragments (pong, then 1007)",
         raw_frames((OP_TEXT, b"ok ", False), (OP_PING, b"pp", True), (OP_CONT, b"\xff", True)),
         pongs=[b"pp"])
    # 6.4 fail fast: hold the rest back until the client's close arrives
    ff = [
        ("fragmented: valid first fragment, invalid second fragment (F4 90 80 80); third held back",
         frame(OP_TEXT, KOSME, fin=False) + frame(OP_CONT, b"\xf4\x90\x80\x80", fin=False),
         frame(OP_CONT, b"edited", fin=True)),
        ("fragmented: first fragment ends with F4, second starts 90 80 80; third held back",
         frame(OP_TEXT, KOSME + b"\xf4", fin=False) + frame(OP_CONT, b"\x90\x80\x80", fin=False),
         frame(OP_CONT, b"edited", fin=True)),
        ("one frame: header + valid text + F4 90 80 80 sent, rest of the payload held back",
         header(OP_TEXT, len(KOSME) + 4 + 6) + KOSME + b"\xf4\x90\x80\x80", b"edited"),
        ("one frame: header + valid text + F4 90 sent (already invalid), rest held back",
         header(OP_TEXT, len(KOSME) + 4 + 6) + KOSME + b"\xf4\x90", b"\x80\x80edited"),
        ("one frame: header + 'Hello' + FF sent, rest held back",
         header(OP_TEXT, 5 + 1 + 100) + b"Hello\xff", b"x" * 100),
        ("one frame: header + C0 sent (never valid), rest held back",
         header(OP_TEXT, 1 + 50) + b"\xc0", b"\xaf" + b"x" * 49),
        ("one frame: header + ED A0 sent (surrogate), rest held back",
         header(OP_TEXT, 2 + 50) + b"\xed\xa0", b"\x80" + b"x" * 49),
        ("fragmented: first fragment is a lone FF; the final fragment is held back",
         frame(OP_TEXT, b"\xff", fin=False), frame(OP_CONT, b"world", fin=True)),
        ("1 MiB text frame: header + 16 bytes with invalid UTF-8 sent, the rest held back",
         header(OP_TEXT, MiB) + b"0123456789ab\xed\xbf\xbf!", b"x" * (MiB - 16)),
    ]
    for i, (desc, first, rest) in enumerate(ff, 1):
        failfast_case("6.4.%d" % i, "Fail fast on invalid UTF-8, " + desc, 1007, first, rest)
    # 6.5 valid samples in one frame
    for i, (name, b) in enumerate(valid, 1):
        echo_case("6.5.%d" % i, "Send valid UTF-8 text message: %s" % name, OP_TEXT, b)
    # 6.6 prefixes of kosme: valid iff cut on a code point boundary
    for i in range(1, len(KOSME) + 1):
        pre = KOSME[:i]
        try:
            pre.decode("utf-8")
            echo_case("6.6.%d" % i, "Send text message with the first %d bytes of 'κόσμε' (valid)"
                      % i, OP_TEXT, pre)
        except UnicodeDecodeError:
            fail_case("6.6.%d" % i, "Send text message with the first %d bytes of 'κόσμε' "
                      "(truncated sequence): fail 1007" % i, 1007, [frame(OP_TEXT, pre)],
                      what="the truncated UTF-8 sequence")
    # 6.7 invalid samples, one frame; 6.8 the same one byte per fragment
    for i, (name, b) in enumerate(INVALID, 1):
        fail_case("6.7.%d" % i, "Send invalid UTF-8 text message: %s: fail 1007" % name, 1007,
                  [frame(OP_TEXT, b)], what="the invalid UTF-8 (%s)" % name)
        fail_case("6.8.%d" % i, "Send invalid UTF-8 text, one byte per fragment: %s: fail 1007"
                  % name, 1007, fragments(OP_TEXT, b, [1] * (len(b) - 1)),
                  what="the invalid UTF-8 (%s)" % name)
    # 6.9 valid samples one byte per fragment
    for i, (name, b) in enumerate(valid, 1):
        echo_case("6.9.%d" % i, "Send valid UTF-8 text one byte per fragment: %s" % name, OP_TEXT,
                  b, frames=fragments(OP_TEXT, b, [1] * max(0, len(b) - 1)))
    # 6.10 a few invalid samples in 1-octet TCP chops
    picks = [0, 4, 13, 21, 25, 36, 45, 49]
    for i, k in enumerate(picks, 1):
        name, b = INVALID[k]
        fail_case("6.10.%d" % i, "Send invalid UTF-8 text in 1-octet chops: %s: fail 1007" % name,
                  1007, [frame(OP_TEXT, b"prefix " + b)], mode="octet",
                  what="the invalid UTF-8 (%s)" % name)


# ---- 7 Close handling ---------------------------------------------------------------------------

def _cat7():
    hello = b"Hello, world!"

    def seq_case(cid, desc, frames, echoes=(), pongs=(), close=1000):
        def script(t):
            t.send(frames)
            for p in pongs:
                t.expect_pong(p)
            for op, p in echoes:
                t.expect_message(op, p)
            t.expect_close(close)
        add(cid, desc, script)
    c1000 = frame(OP_CLOSE, close_payload(1000))
    seq_case("7.1.1", "Send text message, then close (one write): echo, then close 1000",
             [frame(OP_TEXT, hello), c1000], echoes=[(OP_TEXT, hello)])
    seq_case("7.1.2", "Send two close frames: exactly one close reply", [c1000, c1000])
    seq_case("7.1.3", "Send close, then ping: no pong after the close", [c1000, frame(OP_PING, hello)])
    seq_case("7.1.4", "Send close, then text before the client replied: text ignored",
             [c1000, frame(OP_TEXT, hello)])
    seq_case("7.1.5", "Send text fragment, close, then the final fragment: close reply only "
             "(control frames may come between fragments)",
             [frame(OP_TEXT, b"fragment1", fin=False), c1000, frame(OP_CONT, b"fragment2")])
    big = text_payload(256 * KiB)
    seq_case("7.1.6", "Send 256 KiB text message, then close, then ping: echo, close reply, no pong",
             [frame(OP_TEXT, big), c1000, frame(OP_PING, hello)], echoes=[(OP_TEXT, big)])

    def close_case(cid, desc, code, reason=b"", chop=None):
        def script(t):
            t.close(code, reason, chop=chop)
        add(cid, desc, script)
    close_case("7.2.1", "Send close 1000 in 1-octet chops", 1000, b"bye", chop=1)
    close_case("7.2.2", "Send close 1000 with a multi-byte UTF-8 reason", 1000, "κόσμε 😀".encode())
    for i, (name, reason) in enumerate((("truncated sequence", b"abc\xe2\x82"),
                                        ("surrogate", b"x\xed\xa0\x80"),
                                        ("overlong", b"\xc0\xaf")), 3):
        fail_case("7.2.%d" % i, "Send close with a reason holding a %s: fail 1007" % name, 1007,
                  [frame(OP_CLOSE, close_payload(1000, reason))], server_closed=True,
                  what="a close reason that is not UTF-8")
    close_case("7.3.1", "Send close with empty payload: reply with an empty close (or 1000)", None)
    fail_case("7.3.2", "Send close with 1-byte payload: fail 1002", 1002,
              [frame(OP_CLOSE, b"\x03")], server_closed=True, what="a 1-byte close payload")
    close_case("7.3.3", "Send close 1000 without reason", 1000)
    close_case("7.3.4", "Send close 1000 with a short reason", 1000, b"Hello World!")
    close_case("7.3.5", "Send close 1000 with a 123-byte reason (payload 125)", 1000, b"*" * 123)
    fail_case("7.3.6", "Send close 1000 with a 124-byte reason (payload 126): fail 1002", 1002,
              [frame(OP_CLOSE, close_payload(1000, b"*" * 124))], server_closed=True,
              what="a 126-byte close frame")
    fail_case("7.5.1", "Send close whose reason is invalid UTF-8: fail 1007", 1007,
              [frame(OP_CLOSE, close_payload(1000, KOSME + b"\xed\xa0\x80edited"))],
              server_closed=True, what="a close reason that is not UTF-8")
    valid_codes = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
                   1012, 1013, 1014]
    for i, code in enumerate(valid_codes, 1):
        close_case("7.7.%d" % i, "Send close with valid code %d: echoed, clean exit" % code, code)
    invalid_codes = [0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999, 1015]
    for i, code in enumerate(invalid_codes, 1):
        fail_case("7.9.%d" % i, "Send close with invalid code %d: fail 1002" % code, 1002,
                  [frame(OP_CLOSE, close_payload(code))], server_closed=True,
                  what="close code %d" % code)
    for i, code in enumerate((5000, 65535), 1):
        fail_case("7.13.%d" % i, "Send close with invalid code %d: fail 1002" % code, 1002,
                  [frame(OP_CLOSE, close_payload(code))], server_closed=True,
                  what="close code %d" % code)

    # 7.6 abnormal closures by the server: the client must exit non-zero
    def ab(cid, desc, script):
        add(cid, desc, script, expect_exit="nonzero")

    def drop_now(t):
        t.drop()

    def drop_after_echo(t):
        t.send(frame(OP_TEXT, hello))
        t.expect_text(hello)
        t.drop()

    def drop_mid_frame(t):
        t.send(header(OP_BINARY, 1000) + b"x" * 500)
        t.drop()

    def drop_mid_message(t):
        t.send(frame(OP_TEXT, b"fragment1", fin=False))
        t.drop()

    def reset_after_echo(t):
        t.send(frame(OP_BINARY, b"abc"))
        t.expect_binary(b"abc")
        t.reset()
    ab("7.6.1", "Server closes TCP right after the handshake, without a close frame", drop_now)
    ab("7.6.2", "Server closes TCP after an echo, without a close frame", drop_after_echo)
    ab("7.6.3", "Server closes TCP in the middle of a frame", drop_mid_frame)
    ab("7.6.4", "Server closes TCP in the middle of a fragmented message", drop_mid_message)
    ab("7.6.5", "Server resets the TCP connection (RST) after an echo", reset_after_echo)


# ---- 9 Limits / large messages ---------------------------------------------------------

def _cat9():
    sizes = [64 * KiB, 256 * KiB, 1 * MiB, 4 * MiB, 8 * MiB, 16 * MiB]

    def human(n):
        return "%d MiB" % (n // MiB) if n >= MiB else "%d KiB" % (n // KiB)
    for sub, op, name in ((1, OP_TEXT, "text"), (2, OP_BINARY, "binary")):
        for i, n in enumerate(sizes, 1):
            echo_case("9.%d.%d" % (sub, i), "Send %s message of %s in one frame" % (name, human(n)),
                      op, payload(op, n), timeout=BIG_TIMEOUT)
    frag_sizes = [64, 256, 1 * KiB, 4 * KiB, 16 * KiB, 64 * KiB, 256 * KiB, 1 * MiB, 4 * MiB]
    for sub, op, name in ((3, OP_TEXT, "text"), (4, OP_BINARY, "binary")):
        for i, fs in enumerate(frag_sizes, 1):
            p = payload(op, 4 * MiB)
            echo_case("9.%d.%d" % (sub, i), "Send %s message of 4 MiB in fragments of %s"
                      % (name, human(fs) if fs >= KiB else "%d B" % fs),
                      op, p, frames=_lazy_fragments(op, 4 * MiB, fs), timeout=BIG_TIMEOUT)
    chops = [64, 128, 256, 512, 1024, 2048]
    for sub, op, name in ((5, OP_TEXT, "text"), (6, OP_BINARY, "binary")):
        for i, c in enumerate(chops, 1):
            echo_case("9.%d.%d" % (sub, i), "Send %s message of 1 MiB in chops of %d octets"
                      % (name, c), op, payload(op, MiB), mode=c, timeout=BIG_TIMEOUT)
    rt = [0, 16, 64, 256, 1024, 4096]
    for sub, op, name in ((7, OP_TEXT, "text"), (8, OP_BINARY, "binary")):
        for i, n in enumerate(rt, 1):
            def script(t, op=op, n=n):
                p = payload(op, n)
                f = frame(op, p)
                for _ in range(1000):
                    t.send(f)
                    t.expect_message(op, p)
                t.close()
            add("9.%d.%d" % (sub, i), "Send 1000 %s messages of %d bytes, each after the previous "
                "echo" % (name, n), script, timeout=BIG_TIMEOUT)
    # 9.9 too big
    failfast_case("9.9.1", "Send binary frame header announcing 2^62 bytes: fail 1009 before "
                  "any payload arrives", 1009, header(OP_BINARY, 1 << 62), b"\0" * 4096)
    failfast_case("9.9.2", "Send text frame header announcing 1 TiB: fail 1009 before any "
                  "payload arrives", 1009, header(OP_TEXT, 1 << 40), b"x" * 4096)
    fail_case("9.9.3", "Send frame whose 64-bit length has the most significant bit set: fail 1002",
              1002, [bytes([0x82, 127]) + struct.pack("!Q", (1 << 63) + 5) + b"hello"],
              what="a 64-bit length with the top bit set")

    def growing(t):
        chunk = binary_payload(MiB)
        t.send(frame(OP_BINARY, chunk, fin=False))
        sent = MiB
        while sent < 64 * MiB and not t.client_spoke():
            t.send(frame(OP_CONT, chunk, fin=False))
            sent += MiB
        if not t.client_spoke():
            t.send(frame(OP_CONT, b"end", fin=True))
        t.expect_fail(1009, "a fragmented message growing past the size limit (%d MiB sent)"
                      % (sent // MiB))
    add("9.9.4", "Send a fragmented binary message in 1 MiB fragments until the client fails "
        "it with 1009 (limit must be <= 64 MiB; stws: 16 MiB)", growing, expect_exit="nonzero",
        timeout=BIG_TIMEOUT)
    p = text_payload(16 * MiB)
    echo_case("9.10.1", "Send text message of 16 MiB in 64 KiB fragments", OP_TEXT, p,
              frames=_lazy_fragments(OP_TEXT, 16 * MiB, 64 * KiB), timeout=BIG_TIMEOUT)
    echo_case("9.10.2", "Send binary message of 16 MiB in 64 KiB fragments, in chops of 4093 "
              "octets", OP_BINARY, payload(OP_BINARY, 16 * MiB),
              frames=_lazy_fragments(OP_BINARY, 16 * MiB, 64 * KiB), mode=4093, timeout=BIG_TIMEOUT)


class _lazy_fragments:
    """A frame list built on first use (keeps start-up fast and memory low)."""

    def __init__(self, op, n, size):
        self.args = (op, n, size)

    def __iter__(self):
        op, n, size = self.args
        return iter(fragmented(op, payload(op, n), size))


# ---- 10 Misc ---------------------------------------------------------------------------

def _cat10():
    p = text_payload(65536)
    echo_case("10.1.1", "Send text message of 65536 bytes in fragments of 1300 bytes", OP_TEXT, p,
              frames=fragmented(OP_TEXT, p, 1300))
    key = b"\x37\xfa\x21\x3d"
    fail_case("10.2.1", "Send masked text frame (servers must not mask): fail 1002", 1002,
              [frame(OP_TEXT, b"Hello", mask=key)], what="a masked frame")
    fail_case("10.2.2", "Send masked ping: fail 1002, no pong", 1002,
              [frame(OP_PING, b"Hello", mask=key)], what="a masked ping")
    fail_case("10.2.3", "Send masked close: fail 1002", 1002,
              [frame(OP_CLOSE, close_payload(1000), mask=key)], what="a masked close",
              server_closed=True)
    fail_case("10.2.4", "Send masked binary frame with an all-zero key: fail 1002", 1002,
              [frame(OP_BINARY, b"Hello", mask=b"\0\0\0\0")], what="a masked frame")

    def mix(t):
        fs, exp = [], []
        for i in range(50):
            tp, bp, pp = ("text %d" % i).encode(), binary_payload(i + 1), b"ping %d" % i
            fs += [frame(OP_TEXT, tp), frame(OP_PING, pp), frame(OP_BINARY, bp)]
            exp += [("m", OP_TEXT, tp), ("p", None, pp), ("m", OP_BINARY, bp)]
        t.send(fs)
        for kind, op, q in exp:
            if kind == "m":
                t.expect_message(op, q)
            else:
                t.expect_pong(q)
        t.close()
    add("10.3.1", "Send 50 x (text, ping, binary) in one write: echoes and pongs in order", mix)

    def many(t):
        ms = [binary_payload(i % 7) for i in range(1000)]
        t.send([frame(OP_BINARY, m) for m in ms])
        for m in ms:
            t.expect_binary(m)
        t.close()
    add("10.3.2", "Send 1000 tiny binary messages in one write", many)


# ---- hs Opening handshake ------------------------------------------------------------------

def _cat_hs():
    def refusal(cid, desc, build, half_close=False):
        def script(t):
            t.send(build(t))
            if half_close:
                try:
                    t.sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            t.expect_refusal_close("the refused handshake")
        add(cid, desc + ": exit non-zero, send no frame", script, expect_exit="nonzero",
            handshake="manual")

    def std(t, drop=(), extra=(), accept=None):
        hs = [(n, v) for n, v in t.handshake_headers() if n.lower() not in drop]
        if accept is not None:
            hs = [(n, accept if n == "Sec-WebSocket-Accept" else v) for n, v in hs]
        return response(101, "Switching Protocols", hs + list(extra))

    body = b"<html>not a websocket endpoint</html>"
    refusal("hs.1.1", "Server answers 200 OK with a body",
            lambda t: response(200, "OK", [("Content-Type", "text/html"),
                                           ("Content-Length", str(len(body)))], body))
    refusal("hs.1.2", "Server answers 404 Not Found",
            lambda t: response(404, "Not Found", [("Content-Length", "9")], b"not found"))
    refusal("hs.1.3", "Server answers 302 Found (the target, if followed, answers 404)",
            lambda t: response(302, "Found", [
                ("Location", "ws://%s/case/%s/redirected"
                 % (header_values(t.request_headers, "host")[0], t.case.id)),
                ("Content-Length", "0")]))
    refusal("hs.1.4", "Server answers 101 with a wrong Sec-WebSocket-Accept",
            lambda t: std(t, accept=accept_key(b"dGhlIHNhbXBsZSBub25jZQ==" if t.key !=
                                               "dGhlIHNhbXBsZSBub25jZQ==" else b"AAAAAAAAAAAAAAAAAAAAAA==")))
    refusal("hs.1.5", "Server answers 101 without an Upgrade header", lambda t: std(t, drop=("upgrade",)))
    refusal("hs.1.6", "Server answers 101 without a Connection header",
            lambda t: std(t, drop=("connection",)))

    def unreq_ext(t):
        offered = ",".join(header_values(t.request_headers, "sec-websocket-extensions")).lower()
        ext = "x-conformance-unrequested" if "permessage-deflate" in offered else "permessage-deflate"
        return std(t, extra=[("Sec-WebSocket-Extensions", ext)])
    refusal("hs.1.7", "Server answers 101 with an unrequested Sec-WebSocket-Extensions", unreq_ext)

    def unreq_proto(t):
        offered = [p.strip() for v in header_values(t.request_headers, "sec-websocket-protocol")
                   for p in v.split(",")]
        proto = "chat" if "chat" not in offered else "x-conformance-unrequested"
        return std(t, extra=[("Sec-WebSocket-Protocol", proto)])
    refusal("hs.1.8", "Server answers 101 with an unrequested Sec-WebSocket-Protocol", unreq_proto)

    def silent(t):
        t.hold_silent(3.0)
    add("hs.1.9", "Server never answers the upgrade (gives up after 3 s and closes): exit "
        "non-zero, send no frame", silent, expect_exit="nonzero", handshake="manual")
    refusal("hs.1.10", "Server answers 101 with Upgrade: h2c",
            lambda t: std(t, drop=("upgrade",), extra=[("Upgrade", "h2c")]))
    refusal("hs.1.11", "Server answers 101 with Connection: keep-alive (no upgrade token)",
            lambda t: std(t, drop=("connection",), extra=[("Connection", "keep-alive")]))
    refusal("hs.1.12", "Server answers 101 without Sec-WebSocket-Accept",
            lambda t: std(t, drop=("sec-websocket-accept",)))
    refusal("hs.1.13", "Server sends a truncated 101 response and closes",
            lambda t: b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConn",
            half_close=True)
    refusal("hs.1.14", "Server answers 401 Unauthorized",
            lambda t: response(401, "Unauthorized", [("WWW-Authenticate", 'Basic realm="x"'),
                                                     ("Content-Length", "0")]))
    refusal("hs.1.15", "Server answers 503 Service Unavailable",
            lambda t: response(503, "Service Unavailable", [("Retry-After", "1"),
                                                            ("Content-Length", "0")]))
    refusal("hs.1.16", "Server answers with something that is not HTTP",
            lambda t: b"SSH-2.0-OpenSSH_9.2\r\n\r\n")

    def endless(t):
        filler = b"X-Filler: " + b"a" * 1000 + b"\r\n"
        return b"HTTP/1.1 101 Switching Protocols\r\n" + filler * 1024
    refusal("hs.1.17", "Server sends a 101 whose header block never ends (1 MiB, then closes)",
            endless, half_close=True)
    refusal("hs.1.18", "Server answers 101 with an empty Sec-WebSocket-Accept",
            lambda t: std(t, accept=""))

    # hs.2: unusual but valid responses the client must accept
    def accepted(cid, desc, build, trailing=b"", chop=None, after=None):
        def script(t):
            t.send(build(t) + trailing, chop=chop)
            if after:
                after(t)
            else:
                t.send(frame(OP_TEXT, b"Hello, handshake!"))
                t.expect_text(b"Hello, handshake!")
                t.close()
        add(cid, desc + ": accepted, then echo and clean close", script, handshake="manual")
    accepted("hs.2.1", "101 with header names and values in unusual case",
             lambda t: response(101, "Switching Protocols", [
                 ("UPGRADE", "WebSocket"), ("connection", "UPGRADE"),
                 ("sec-websocket-ACCEPT", accept_key(t.key))]))
    accepted("hs.2.2", "101 with Connection: keep-alive, Upgrade",
             lambda t: std(t, drop=("connection",), extra=[("Connection", "keep-alive, Upgrade")]))
    accepted("hs.2.3", "101 with extra headers and a different reason phrase",
             lambda t: response(101, "Web Socket Protocol Handshake", t.handshake_headers() + [
                 ("Server", "conformance/1.0"), ("Date", "Thu, 01 Jan 1970 00:00:00 GMT"),
                 ("X-Extra", "a, b; c"), ("Set-Cookie", "x=y; Path=/")]))
    accepted("hs.2.4", "101 response in 1-octet chops", lambda t: std(t), chop=1)

    def first_text(t):
        t.expect_text(b"in the same segment")
        t.close()

    def first_ping(t):
        t.expect_pong(b"early ping")
        t.close()

    def first_close(t):
        t.expect_close(1000)
    accepted("hs.2.5", "101 and the first text frame in the same write", lambda t: std(t),
             trailing=frame(OP_TEXT, b"in the same segment"), after=first_text)
    accepted("hs.2.6", "101 and a ping in the same write", lambda t: std(t),
             trailing=frame(OP_PING, b"early ping"), after=first_ping)
    accepted("hs.2.7", "101 and a close frame in the same write", lambda t: std(t),
             trailing=frame(OP_CLOSE, close_payload(1000)), after=first_close)
    accepted("hs.2.8", "101 with optional whitespace around the header values",
             lambda t: (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade:   websocket  \r\n"
                        b"Connection:\tUpgrade\t\r\nSec-WebSocket-Accept:  "
                        + accept_key(t.key).encode() + b"  \r\n\r\n"))


def all_cases():
    if not _CASES:
        _cat1()
        _cat2()
        _cat3()
        _cat4()
        _cat5()
        _cat6()
        _cat7()
        _cat9()
        _cat10()
        _cat_hs()
        ids = [c.id for c in _CASES]
        dup = {i for i in ids if ids.count(i) > 1}
        assert not dup, "duplicate case ids: %s" % sorted(dup)
    return list(_CASES)


def category_name(cat):
    return CATEGORY_NAMES.get(cat, cat)
