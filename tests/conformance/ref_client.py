#!/usr/bin/python3
"""Reference echo client for validating the conformance judge.

Same CLI and exit-status contract as `stws echo URL`, built on Debian's
python3-websockets 10.4 sans-I/O ClientConnection: it echoes text and binary
messages with the same opcode, websockets answers pings and close frames, and
the exit status is 0 only after a clean closing handshake (non-zero with a
one-line reason on stderr otherwise).

websockets parses whole frames only; this driver feeds it one frame at a time
(the header as soon as it is complete, the payload once it is all there) so
that messages are echoed in order before a later bad frame fails the
connection, and it validates text messages' UTF-8 per fragment with an
incremental decoder (websockets 10.4's sans-I/O layer does not).

REF_CLIENT_BUG=<name> injects a deliberate defect, to check that the judge
catches it: unmasked, zero-mask, rsv, no-pong, corrupt-echo, close1000,
no-close-reply, exit0, exit1.

    /usr/bin/python3 tests/conformance/ref_client.py echo ws://127.0.0.1:PORT/case/ID
"""

import codecs
import os
import socket
import struct
import sys

from websockets.client import ClientConnection
from websockets.connection import CLOSED, CONNECTING, OPEN, SEND_EOF
from websockets.frames import OP_BINARY, OP_CLOSE, OP_CONT, OP_PONG, OP_TEXT, Frame
from websockets.uri import parse_uri

MAX_SIZE = 16 << 20
BUG = os.environ.get("REF_CLIENT_BUG", "")


def die(msg, code=1):
    print("ref_client: %s" % msg, file=sys.stderr)
    if BUG == "exit0":
        code = 0
    sys.exit(code)


def frame_lengths(buf, pos):
    """(header length, total length) of the frame at pos, or None if the
    header is not complete yet."""
    avail = len(buf) - pos
    if avail < 2:
        return None
    b1 = buf[pos + 1]
    l7 = b1 & 0x7F
    ext = 2 if l7 == 126 else 8 if l7 == 127 else 0
    hl = 2 + ext + (4 if b1 & 0x80 else 0)
    if avail < hl:
        return None
    if l7 == 126:
        n = struct.unpack("!H", bytes(buf[pos + 2:pos + 4]))[0]
    elif l7 == 127:
        n = struct.unpack("!Q", bytes(buf[pos + 2:pos + 10]))[0]
    else:
        n = l7
    return hl, hl + n


def mutate(data):
    """Apply REF_CLIENT_BUG to one outgoing frame (client frames are masked)."""
    b0, b1 = data[0], data[1]
    op = b0 & 0x0F
    hl, _ = frame_lengths(data, 0)
    key = data[hl - 4:hl]
    payload = bytes(a ^ key[i % 4] for i, a in enumerate(data[hl:])) if len(data) - hl < 4096 \
        else None
    if BUG == "no-pong" and op == OP_PONG:
        return b""
    if BUG == "no-close-reply" and op == OP_CLOSE:
        return b""
    if BUG == "rsv":
        return bytes([b0 | 0x40]) + data[1:]
    if payload is None:
        return data
    if BUG == "unmasked":
        return bytes([b0, b1 & 0x7F]) + data[2:hl - 4] + payload
    if BUG == "zero-mask":
        return data[:hl - 4] + b"\0\0\0\0" + payload
    if BUG == "corrupt-echo" and op in (OP_TEXT, OP_BINARY) and payload:
        p = bytearray(payload)
        p[-1] = ord("#") if p[-1] != ord("#") else ord("$")
        return data[:hl] + bytes(a ^ key[i % 4] for i, a in enumerate(p))
    if BUG == "close1000" and op == OP_CLOSE and len(payload) >= 2:
        p = struct.pack("!H", 1000) + payload[2:]
        return data[:hl] + bytes(a ^ key[i % 4] for i, a in enumerate(p))
    return data


class Client:
    def __init__(self, url):
        self.uri = parse_uri(url)
        self.proto = ClientConnection(self.uri, max_size=MAX_SIZE)
        self.sock = None
        self.inbuf = bytearray()
        self.pos = 0
        self.header_fed = False
        self.msg_op = None
        self.parts = []
        self.decoder = None
        self.failed = None

    def flush(self):
        for data in self.proto.data_to_send():
            if data == SEND_EOF:
                try:
                    self.sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                continue
            if BUG and self.proto.state is not CONNECTING:
                data = mutate(data)
            try:
                self.sock.sendall(data)
            except OSError:
                pass

    def on_events(self):
        for ev in self.proto.events_received():
            if not isinstance(ev, Frame):
                continue
            if ev.opcode in (OP_TEXT, OP_BINARY):
                self.msg_op = ev.opcode
                self.parts = []
                self.decoder = codecs.getincrementaldecoder("utf-8")("strict") \
                    if ev.opcode == OP_TEXT else None
            elif ev.opcode is not OP_CONT:
                continue          # ping / pong / close: websockets handled them
            self.parts.append(ev.data)
            if self.decoder is not None:
                try:
                    self.decoder.decode(ev.data, final=ev.fin)
                except UnicodeDecodeError as e:
                    self.failed = "invalid UTF-8 in a text message: %s" % e.reason
                    self.proto.fail(1007, "invalid UTF-8")
                    return
            if ev.fin:
                data = b"".join(self.parts)
                self.parts = []
                if self.proto.state is OPEN:
                    if self.msg_op == OP_TEXT:
                        self.proto.send_text(data)
                    else:
                        self.proto.send_binary(data)
                self.msg_op = None

    def feed(self, data):
        self.proto.receive_data(bytes(data))
        self.on_events()
        self.flush()

    def pump(self):
        """Feed whole frames (and complete headers early) from inbuf."""
        while True:
            if self.proto.state is not OPEN:
                if len(self.inbuf) > self.pos:
                    rest = self.inbuf[self.pos:]
                    self.pos = len(self.inbuf)
                    self.feed(rest)
                return
            fl = frame_lengths(self.inbuf, self.pos)
            if fl is None:
                return
            hl, total = fl
            if not self.header_fed:
                self.feed(self.inbuf[self.pos:self.pos + hl])
                self.header_fed = True
                if self.proto.state is not OPEN:
                    self.pos += hl
                    continue
            if len(self.inbuf) - self.pos < total:
                return
            self.feed(self.inbuf[self.pos + hl:self.pos + total])
            self.pos += total
            self.header_fed = False
            if self.pos > (1 << 20):
                del self.inbuf[:self.pos]
                self.pos = 0

    def run(self):
        self.sock = socket.create_connection((self.uri.host, self.uri.port), timeout=30)
        self.proto.send_request(self.proto.connect())
        self.flush()
        # opening handshake, fed byte by byte so frames behind the response
        # stay in our buffer
        while self.proto.state is CONNECTING and self.proto.handshake_exc is None:
            data = self.sock.recv(65536)
            if not data:
                die("connection closed during the opening handshake")
            for i in range(len(data)):
                try:
                    self.proto.receive_data(data[i:i + 1])
                except Exception as e:  # malformed HTTP
                    die("invalid handshake response: %s" % (e or type(e).__name__))
                if self.proto.state is not CONNECTING or self.proto.handshake_exc is not None:
                    self.inbuf += data[i + 1:]
                    break
        self.proto.events_received()
        if self.proto.handshake_exc is not None:
            die("handshake failed: %s" % self.proto.handshake_exc)
        while True:
            self.pump()
            if self.proto.state is CLOSED:
                break
            data = self.sock.recv(1 << 20)
            if not data:
                if len(self.inbuf) > self.pos and self.proto.state is OPEN:
                    self.feed(self.inbuf[self.pos:])   # partial frame
                    self.pos = len(self.inbuf)
                self.proto.receive_eof()
                self.on_events()
                self.flush()
                break
            self.inbuf += data
        self.sock.close()
        p = self.proto
        if self.failed:
            die("failed the connection: %s" % self.failed)
        if p.parser_exc is not None:
            die("connection failed: %s: %s" % (type(p.parser_exc).__name__, p.parser_exc))
        if p.close_rcvd is None or p.close_sent is None:
            die("connection closed without a closing handshake")
        if BUG == "exit1":
            die("deliberate failure")
        return 0


def main(argv):
    if len(argv) != 3 or argv[1] != "echo":
        print("usage: ref_client.py echo ws://HOST:PORT/PATH", file=sys.stderr)
        return 2
    try:
        return Client(argv[2]).run()
    except socket.timeout:
        die("timed out")
    except OSError as e:
        die("network error: %s" % e)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
