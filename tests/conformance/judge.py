"""The server side of one test connection: raw I/O, strict parsing of the
client's frames, and the expectations that case scripts are written with.

Every wait is on a socket event (select) bounded by a deadline; nothing
sleeps to synchronise.  A broken expectation raises CaseFail with a one-line
reason.
"""

import select
import socket
import struct
import time

from wsproto import (OP_BINARY, OP_CLOSE, OP_CONT, OP_NAMES, OP_PING, OP_PONG,
                     OP_TEXT, accept_key, close_code_sendable, close_payload,
                     frame, response, xor_mask)

RECV_SIZE = 1 << 20
SEND_SLICE = 4 << 20
GRACE = 10.0          # after the closing handshake: client must close TCP within this


class CaseFail(Exception):
    """The client broke an expectation; str() is the one-line reason."""


class _Timeout(Exception):
    pass


class Case:
    """One test case.

    expect_exit: "zero" (clean close expected) or "nonzero" (the client must
    fail the connection / the handshake, or the connection is dropped).
    handshake: "auto" sends a valid 101 before the script runs; "manual" lets
    the script answer the upgrade itself.
    """

    def __init__(self, cid, desc, script, expect_exit="zero", handshake="auto", timeout=20.0):
        self.id = cid
        self.desc = desc
        self.script = script
        self.expect_exit = expect_exit
        self.handshake = handshake
        self.timeout = timeout

    @property
    def category(self):
        return self.id.split(".")[0]


class Event:
    __slots__ = ("kind", "op", "data", "code", "frames")

    def __init__(self, kind, op=None, data=b"", code=None, frames=0):
        self.kind = kind      # message | ping | pong | close | eof
        self.op = op
        self.data = data
        self.code = code
        self.frames = frames

    def describe(self):
        if self.kind == "message":
            s = "%s message (%s)" % (OP_NAMES[self.op], describe_bytes(self.data))
            if self.frames > 1:
                s += " in %d frames" % self.frames
            return s
        if self.kind in ("ping", "pong"):
            return "%s (%s)" % (self.kind, describe_bytes(self.data))
        if self.kind == "close":
            if self.code is None:
                return "close frame with empty payload"
            s = "close frame with code %d" % self.code
            if self.data:
                s += " and a %d-byte reason" % len(self.data)
            return s
        return "TCP end of stream without a close frame"


def describe_bytes(b):
    if len(b) <= 16:
        return "%d B: %s" % (len(b), b.hex(" ") if b else "empty")
    return "%d B" % len(b)


def first_difference(a, b):
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n           # binary search the first differing offset
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo if a[lo] != b[lo] else hi


class Conn:
    """Judge for one accepted connection (handed to case scripts as `t`)."""

    def __init__(self, sock, rbuf, case, deadline, fail_fast_wait, key, request_headers):
        self.sock = sock
        self.rbuf = bytearray(rbuf)
        self.rpos = 0
        self.case = case
        self.deadline = deadline
        self.timeout_s = deadline - time.monotonic()
        self.fail_fast_wait = fail_fast_wait
        self.key = key
        self.request_headers = request_headers
        self.eof = False
        self.write_error = None
        self.sent_close = False
        self.msg_op = None
        self.msg_parts = []
        self.msg_frames = 0
        self.keys = []
        self.transcript = []
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    # ---- bookkeeping --------------------------------------------------------

    def note(self, msg):
        if len(self.transcript) < 400:
            self.transcript.append(msg)

    def fail(self, reason):
        self.note("FAIL: " + reason)
        raise CaseFail(reason)

    def _remaining(self, deadline):
        return deadline - time.monotonic()

    # ---- raw I/O -------------------------------------------------------------

    def _recv_some(self):
        try:
            data = self.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except (ConnectionResetError, ConnectionAbortedError):
            self.eof = True
            return
        if not data:
            self.eof = True
        else:
            self.rbuf += data

    def _send_piece(self, data, deadline):
        mv = memoryview(data)
        off = 0
        while off < len(mv):
            if self.write_error:
                return
            rem = self._remaining(deadline)
            if rem <= 0:
                self.fail("timed out writing to the client (%d of %d bytes written): "
                          "the client stopped reading" % (off, len(mv)))
            rl = [] if self.eof else [self.sock]
            r, w, _ = select.select(rl, [self.sock], [], rem)
            if r:
                self._recv_some()     # keep reading so neither side can deadlock
            if w:
                try:
                    off += self.sock.send(mv[off:off + SEND_SLICE])
                except (BlockingIOError, InterruptedError):
                    pass
                except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as e:
                    self.write_error = e
                    self.note("write failed: %s (client gone)" % e)
                    return

    def send(self, data, chop=None):
        """Write bytes (or a list of byte strings, concatenated) to the client.
        chop: write in pieces of that many bytes, one send() each (TCP_NODELAY)."""
        if isinstance(data, (list, tuple)):
            data = b"".join(data)
        self.note("send: %d bytes%s" % (len(data), " in %d-byte writes" % chop if chop else ""))
        deadline = self.deadline
        if not chop or chop >= len(data):
            self._send_piece(data, deadline)
        else:
            for i in range(0, len(data), chop):
                self._send_piece(data[i:i + chop], deadline)
                if self.write_error:
                    break

    def send_each(self, frames):
        """One write per frame."""
        self.note("send: %d frames, one write each" % len(frames))
        for f in frames:
            self._send_piece(f, self.deadline)
            if self.write_error:
                break

    def send_mode(self, frames, mode):
        """mode: "whole" (one write), "frame" (one write per frame),
        "octet" (one write per byte) or an int chop size."""
        if not isinstance(frames, (bytes, bytearray)):
            frames = list(frames)
        if mode == "whole":
            self.send(frames)
        elif mode == "frame":
            self.send_each(frames)
        elif mode == "octet":
            self.send(frames, chop=1)
        else:
            self.send(frames, chop=int(mode))

    def _wait_readable(self, deadline):
        rem = self._remaining(deadline)
        if rem <= 0:
            raise _Timeout()
        r, _, _ = select.select([self.sock], [], [], rem)
        if not r:
            raise _Timeout()
        self._recv_some()

    def client_spoke(self):
        """True if the client has sent anything not yet consumed (or closed);
        never blocks."""
        if len(self.rbuf) > self.rpos or self.eof:
            return True
        r, _, _ = select.select([self.sock], [], [], 0)
        if r:
            self._recv_some()
        return len(self.rbuf) > self.rpos or self.eof

    def _need(self, n, deadline):
        while len(self.rbuf) - self.rpos < n:
            if self.eof:
                return False
            self._wait_readable(deadline)
        return True

    def _take(self, n):
        b = bytes(self.rbuf[self.rpos:self.rpos + n])
        self.rpos += n
        if self.rpos >= (1 << 20) and self.rpos * 2 >= len(self.rbuf):
            del self.rbuf[:self.rpos]
            self.rpos = 0
        return b

    # ---- client frames ---------------------------------------------------------

    def _read_frame(self, deadline):
        """Return (fin, op, payload) of the next client frame, or None at EOF
        (a partial frame at EOF fails).  Strict RFC 6455 §5 client checks."""
        if not self._need(2, deadline):
            if len(self.rbuf) > self.rpos:
                self.fail("client closed TCP in the middle of a frame header")
            return None
        b0, b1 = self.rbuf[self.rpos], self.rbuf[self.rpos + 1]
        fin, rsv, op, masked, l7 = b0 >> 7, (b0 >> 4) & 7, b0 & 15, b1 >> 7, b1 & 127
        if rsv:
            self.fail("client frame (opcode %d) has reserved bits RSV=%d set (no extension "
                      "was negotiated)" % (op, rsv))
        if op not in OP_NAMES:
            self.fail("client sent a frame with reserved opcode %d" % op)
        if not masked:
            self.fail("client %s frame is not masked (RFC 6455 §5.3)" % OP_NAMES[op])
        if op >= 8 and not fin:
            self.fail("client sent a fragmented %s frame" % OP_NAMES[op])
        if op >= 8 and l7 > 125:
            self.fail("client %s frame has a payload longer than 125 bytes" % OP_NAMES[op])
        hl = 2 + (2 if l7 == 126 else 8 if l7 == 127 else 0) + 4
        if not self._need(hl, deadline):
            self.fail("client closed TCP in the middle of a frame header")
        h = self._take(hl)
        if l7 == 126:
            n = struct.unpack("!H", h[2:4])[0]
            if n < 126:
                self.fail("client frame uses a 16-bit length for %d bytes (the minimal "
                          "length encoding is required, RFC 6455 §5.2)" % n)
        elif l7 == 127:
            n = struct.unpack("!Q", h[2:10])[0]
            if n >> 63:
                self.fail("client frame has the most significant bit of the 64-bit length set")
            if n < 65536:
                self.fail("client frame uses a 64-bit length for %d bytes (the minimal "
                          "length encoding is required, RFC 6455 §5.2)" % n)
        else:
            n = l7
        key = h[-4:]
        self.keys.append(key)
        if not self._need(n, deadline):
            self.fail("client closed TCP in the middle of a %s frame payload (%d of %d bytes)"
                      % (OP_NAMES[op], len(self.rbuf) - self.rpos, n))
        payload = xor_mask(self._take(n), key)
        return fin, op, payload

    def _next_event(self, deadline):
        """Next client event: a whole message, a pong, a close, or EOF.
        Client pings are answered and skipped.  Raises _Timeout."""
        while True:
            f = self._read_frame(deadline)
            if f is None:
                if self.msg_op is not None:
                    self.note("EOF inside a fragmented client message")
                self.note("recv: EOF")
                return Event("eof")
            fin, op, payload = f
            if op == OP_PING:
                self.note("recv: ping (%s)" % describe_bytes(payload))
                if not self.sent_close:
                    self.send(frame(OP_PONG, payload))
                continue
            if op == OP_PONG:
                ev = Event("pong", data=payload)
                self.note("recv: " + ev.describe())
                return ev
            if op == OP_CLOSE:
                if len(payload) == 1:
                    self.fail("client close frame has a 1-byte payload")
                code = None
                if len(payload) >= 2:
                    code = struct.unpack("!H", payload[:2])[0]
                    if not close_code_sendable(code):
                        self.fail("client sent close code %d, which must not be sent in a "
                                  "close frame" % code)
                    try:
                        payload[2:].decode("utf-8")
                    except UnicodeDecodeError:
                        self.fail("client close reason is not valid UTF-8")
                ev = Event("close", code=code, data=payload[2:])
                self.note("recv: " + ev.describe())
                return ev
            # data frames
            if op == OP_CONT:
                if self.msg_op is None:
                    self.fail("client sent a continuation frame with no message in progress")
            else:
                if self.msg_op is not None:
                    self.fail("client started a new %s message before finishing its "
                              "fragmented %s message" % (OP_NAMES[op], OP_NAMES[self.msg_op]))
                self.msg_op = op
                self.msg_parts = []
                self.msg_frames = 0
            self.msg_parts.append(payload)
            self.msg_frames += 1
            if fin:
                ev = Event("message", op=self.msg_op, data=b"".join(self.msg_parts),
                           frames=self.msg_frames)
                self.msg_op = None
                self.msg_parts = []
                self.note("recv: " + ev.describe())
                return ev

    def next_event(self, what, deadline=None):
        d = self.deadline if deadline is None else min(deadline, self.deadline)
        try:
            return self._next_event(d)
        except _Timeout:
            self.fail("timed out after %.0f s waiting for %s" % (self.timeout_s, what))

    # ---- handshake -------------------------------------------------------------

    def handshake_headers(self):
        return [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                ("Sec-WebSocket-Accept", accept_key(self.key))]

    def accept(self, headers=None, trailing=b"", chop=None, reason="Switching Protocols"):
        """Send the 101 response (optionally with bytes right behind it)."""
        hs = self.handshake_headers() if headers is None else headers
        self.note("send: 101 response")
        self.send(response(101, reason, hs) + trailing, chop=chop)

    # ---- expectations ------------------------------------------------------------

    def expect_message(self, op, payload, what=None):
        what = what or "the echo of the %s message (%s)" % (OP_NAMES[op], describe_bytes(payload))
        ev = self.next_event(what)
        if ev.kind != "message":
            self.fail("expected %s, got %s" % (what, ev.describe()))
        if ev.op != op:
            self.fail("expected %s, got a %s message instead" % (what, OP_NAMES[ev.op]))
        if ev.data != payload:
            self.fail("echo differs: expected %d bytes, got %d, first difference at offset %d"
                      % (len(payload), len(ev.data), first_difference(payload, ev.data)))
        return ev

    def expect_text(self, payload):
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        return self.expect_message(OP_TEXT, payload)

    def expect_binary(self, payload):
        return self.expect_message(OP_BINARY, payload)

    def expect_pong(self, payload):
        what = "a pong answering the ping (%s)" % describe_bytes(payload)
        ev = self.next_event(what)
        if ev.kind != "pong":
            self.fail("expected %s, got %s" % (what, ev.describe()))
        if ev.data != payload:
            self.fail("pong payload differs from the ping's: expected %s, got %s"
                      % (describe_bytes(payload), describe_bytes(ev.data)))

    def close(self, code=1000, reason=b"", chop=None):
        """Start the closing handshake: the client must echo the code."""
        self.send(frame(OP_CLOSE, close_payload(code, reason)), chop=chop)
        self.sent_close = True
        self.note("send: close %s" % code)
        self.expect_close(code)

    def expect_close(self, code):
        """The server has sent a close with `code` (None: empty payload); the
        client must answer with the same code (an empty close may be answered
        empty or with 1000) and then end cleanly."""
        self.sent_close = True
        what = "the client's close frame answering the server's close (%s)" % (
            "empty" if code is None else code)
        ev = self.next_event(what)
        if ev.kind != "close":
            self.fail("expected %s, got %s" % (what, ev.describe()))
        ok = (ev.code in (None, 1000)) if code is None else (ev.code == code)
        if not ok:
            self.fail("client answered the server's close (%s) with %s"
                      % ("empty" if code is None else code,
                         "an empty close" if ev.code is None else "code %d" % ev.code))
        self._finish()

    def expect_fail(self, code, what, within=None, rest=None):
        """The client must fail the connection with close `code` (RFC 6455
        §7.1.7) and send nothing else.  within: fail-fast bound in seconds
        (the rest of the data is held back until the close arrives)."""
        ctx = "after %s" % what
        if within is not None:
            within = self.fail_fast_wait if within is True else within
            try:
                ev = self._next_event(min(self.deadline, time.monotonic() + within))
            except _Timeout:
                later = ""
                if rest:
                    self.send(rest)
                    try:
                        late = self._next_event(min(self.deadline, time.monotonic() + GRACE))
                        later = "; once the rest of the data was sent it replied with " + late.describe()
                    except (_Timeout, CaseFail):
                        later = "; nothing either after the rest of the data was sent"
                self.fail("client did not fail fast: no close frame within %.0f s %s "
                          "(expected close %d before the rest is sent)%s"
                          % (within, ctx, code, later))
        else:
            ev = self.next_event("the client to fail the connection with close %d %s" % (code, ctx))
        if ev.kind == "eof":
            self.fail("client closed TCP without a close frame %s (expected close code %d)"
                      % (ctx, code))
        if ev.kind != "close":
            self.fail("client sent %s %s; expected a close frame with code %d and nothing else"
                      % (ev.describe(), ctx, code))
        if ev.code != code:
            self.fail("client closed with %s %s, expected code %d"
                      % ("an empty close frame" if ev.code is None else "code %d" % ev.code,
                         ctx, code))
        if not self.sent_close:
            self.send(frame(OP_CLOSE, close_payload(code)))
            self.sent_close = True
        self._finish()

    def _finish(self):
        """After the client's close frame: close our side first (§7.1.1, the
        server closes TCP first) and require no further data and a TCP close."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        deadline = time.monotonic() + GRACE
        try:
            if self._need(1, deadline):
                extra = len(self.rbuf) - self.rpos
                try:
                    f = self._read_frame(deadline)
                    desc = "a %s frame" % OP_NAMES[f[1]] if f else "%d bytes" % extra
                except (_Timeout, CaseFail):
                    desc = "%d bytes" % extra
                self.fail("client sent %s after its close frame" % desc)
        except _Timeout:
            self.fail("client did not close the TCP connection within %.0f s after the "
                      "closing handshake" % GRACE)

    def drop(self):
        """Close the TCP connection without a close frame (abnormal closure):
        the client may still send a close frame; nothing else."""
        self.note("send: TCP FIN without a close frame")
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.sent_close = True
        deadline = time.monotonic() + GRACE
        try:
            while True:
                ev = self._next_event(deadline)
                if ev.kind == "eof":
                    return
                if ev.kind != "close":
                    self.fail("client sent %s after the server dropped the connection"
                              % ev.describe())
        except _Timeout:
            self.fail("client did not close the TCP connection within %.0f s after the "
                      "server closed it" % GRACE)

    def reset(self):
        """Abort the connection with a TCP RST."""
        self.note("send: TCP RST")
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.sock.close()
        except OSError:
            pass

    def expect_refusal_close(self, what):
        """After a refused handshake: the client must send nothing and close
        the TCP connection on its own."""
        deadline = time.monotonic() + GRACE
        try:
            self._need(1, deadline)
        except _Timeout:
            self.fail("client kept the connection open for %.0f s after %s" % (GRACE, what))
        extra = bytes(self.rbuf[self.rpos:self.rpos + 16])
        if extra:
            self.fail("client sent data after %s (%s): it must not send any frame"
                      % (what, describe_bytes(extra)))

    def hold_silent(self, seconds):
        """Answer nothing for `seconds` (upper bound): the client may give up
        earlier; it must not send anything.  Then close."""
        try:
            self._need(1, time.monotonic() + seconds)
        except _Timeout:
            self.note("server gives up waiting and closes")
            return
        extra = bytes(self.rbuf[self.rpos:self.rpos + 16])
        if extra:
            self.fail("client sent data before the handshake was answered (%s)"
                      % describe_bytes(extra))

    def check_masks(self):
        keys = self.keys
        if not keys:
            return
        zero = sum(1 for k in keys if k == b"\0\0\0\0")
        if zero * 2 > len(keys) or (len(keys) == 1 and zero):
            self.fail("client masks %d of %d frames with the all-zero key (masking keys must "
                      "be random, RFC 6455 §5.3)" % (zero, len(keys)))
        if len(keys) >= 4 and len(set(keys)) == 1:
            self.fail("client used the same masking key for all %d frames (keys must be "
                      "unpredictable, RFC 6455 §5.3)" % len(keys))
