"""Fault-injection integration tests: `stws cat` and `stws listen`
($STWS_BUILD/stws) against real servers (python-websockets peers from
ws_peer.py, the mock coordinator tools/mock_coordinator.py), through
fault_proxy.py, a TCP proxy on 127.0.0.1 that stalls, trickles one byte per
write, pauses its reads, half-closes or resets (SO_LINGER 0) at exact byte
offsets; and a wss:// peer that stops reading (issue 13, finding 1).

What is promised, and asserted:
  - non-destructive faults (stalls, 1-byte writes, paused reads,
    back-pressure): every message in both directions arrives exactly once,
    in order, byte-exact, and the closing handshake completes;
  - destructive faults (reset or FIN inside a frame or a TLS record): the
    conn reports one clear error (result, detail naming a cut TLS record),
    close code 1006, and delivers exactly the messages that were complete
    before the cut, each once, in order, nothing of the cut one;
  - the Stream client reconnects after a reset and its send queue sends what
    it had not yet written: nothing duplicated, nothing reordered.  What it
    HAD written (handed to its kernel) when the reset came may be lost: a
    bare socket cannot know what the peer received.  Such a loss can only be
    a run of lines at the switch between two connections; it is asserted to
    be only that, and reported.
Offsets are checked after the fact: the proxy keeps every forwarded byte, so
a test parses the frames / TLS records and asserts the cut really was inside
one.  Waits are on events (peer output, proxy events, stws output) with
generous bounds; the only sleeps pace a load generator.

Run: STWS_BUILD=build /usr/bin/python3 tests/integration/test_faults.py
"""

import contextlib
import json
import os
import re
import signal
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402
import test_listen as tl  # noqa: E402  (its helpers for `stws listen` and the mock's record)
from fault_proxy import Fault, FaultProxy  # noqa: E402
from ws_peer import parse_frame  # noqa: E402

WAIT = 60.0
API_KEY = "faults-test-key"
SECRET = "faults-test-s3cret"


def line(i, size):
    """ASCII line i of about size bytes (no newline)."""
    head = "%06d " % i
    return head + ("abcdefghijklmnopqrstuvwxyz0123456789"[i % 36] * max(0, size - len(head)))


def http_head_len(data):
    end = data.find(b"\r\n\r\n")
    assert end >= 0, "no HTTP head in %r" % data[:200]
    return end + 4


def frames(data):
    """Complete WebSocket frames in data (after the HTTP head) as (opcode,
    payload), and the number of bytes of a frame left incomplete at the end."""
    buf = bytearray(data[http_head_len(data):])
    out = []
    while True:
        f = parse_frame(buf)
        if f is None:
            return out, len(buf)
        fin, opcode, payload, used = f
        out.append((opcode, payload))
        del buf[:used]


def tls_records(data):
    """(complete records, bytes of an incomplete last record)."""
    pos, n = 0, 0
    while pos + 5 <= len(data):
        size = int.from_bytes(data[pos + 3:pos + 5], "big")
        if pos + 5 + size > len(data):
            break
        pos += 5 + size
        n += 1
    return n, len(data) - pos


class FaultsTest(unittest.TestCase):
    maxDiff = 4000

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="stws-faults-")
        cls.tls = peers.tls_material(cls.tmp.name)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def setUp(self):
        peers.require_stws()
        self.t_start = time.monotonic()

    def tearDown(self):
        if os.environ.get("STWS_TIMINGS"):
            sys.stderr.write("[%s %.1f s] " % (self._testMethodName, time.monotonic() - self.t_start))

    # ---- helpers -----------------------------------------------------------

    def server(self, mode, secure, **kw):
        return peers.ws_server(mode, tls=self.tls.server if secure else None, **kw)

    def cat_args(self, port, secure, *extra):
        url = "%s://127.0.0.1:%d/" % ("wss" if secure else "ws", port)
        return ["cat", url, "--events"] + (["--ca", self.tls.ca] if secure else []) + list(extra)

    def assertOnceInOrder(self, got, sent, what):
        if got == sent:
            return
        dups = len(got) - len(set(got))
        missing = len(set(sent) - set(got))
        first = next((i for i, (a, b) in enumerate(zip(got, sent)) if a != b), min(len(got), len(sent)))
        self.fail("%s: %d of %d messages, %d missing, %d duplicated, first difference at %d"
                  % (what, len(got), len(sent), missing, dups, first))

    def run_cat(self, peer_port, secure, lines, pace=0, echo=True, peer=None):
        """stws cat: write lines (pace: sleep 10 ms after every `pace` lines,
        the load generator's rhythm), wait for the echoes (if echo), close
        stdin; returns the StwsResult."""
        with peers.stws_process(self.cat_args(peer_port, secure)) as s:
            for i, l in enumerate(lines):
                try:
                    s.write(l + "\n")
                except BrokenPipeError:
                    r = s.wait(WAIT)
                    self.fail("stws ended after %d of %d lines\n%s%s" % (
                        i, len(lines), r.describe(), "\n" + peer.diagnostics() if peer else ""))
                if pace and i % pace == pace - 1:
                    time.sleep(0.005)  # the load generator's rhythm
            if echo:
                got = s.wait_lines(len(lines), timeout=WAIT)
                self.assertOnceInOrder(got[:len(lines)], lines, "echoed to stws")
            elif peer is not None:
                peer.wait_event("message", count=len(lines), timeout=WAIT)
            s.close_stdin()
            r = s.wait(WAIT)
        self.assertEqual(r.status, 0, r.describe() + ("\n" + peer.diagnostics() if peer else ""))
        self.assertIn("stws: event close: code=1000 clean=1", r.stderr)
        return r

    def assertPeerGot(self, peer, lines):
        c = peer.wait_closed()
        self.assertEqual(c["code"], 1000, peer.diagnostics())
        self.assertTrue(c["client_first"])
        self.assertOnceInOrder([m["data"] for m in peer.messages()], lines, "received by the peer")

    # ---- the proxy itself: exact offsets, real RSTs, half-closes, pauses -------

    def test_proxy_selfcheck(self):
        """Raw sockets through the proxy: a reset forwards exactly K bytes
        and both ends see ECONNRESET; a half-close forwards K bytes, then EOF,
        while the other direction still flows; a pause holds the bytes back
        for its time; a trickle forwards everything."""
        import socket as so

        def pair(faults):
            ls = so.socket()
            ls.bind(("127.0.0.1", 0))
            ls.listen(1)
            fp = FaultProxy(ls.getsockname()[1], faults)
            c = so.create_connection(("127.0.0.1", fp.port), timeout=WAIT)
            srv, _ = ls.accept()
            srv.settimeout(WAIT)
            ls.close()
            fp.wait_event("accept")
            return fp, c, srv

        def read_until_end(sck):
            got = bytearray()
            try:
                while True:
                    b = sck.recv(65536)
                    if not b:
                        return bytes(got), "eof"
                    got += b
            except ConnectionResetError:
                return bytes(got), "reset"

        payload = bytes(range(256)) * 100  # 25,600 bytes
        fp, c, srv = pair([Fault("s2c", "reset", after=10000)])
        with fp, c, srv:
            srv.sendall(payload)
            got, how = read_until_end(c)
            self.assertEqual((len(got), how), (10000, "reset"))
            self.assertEqual(got, payload[:10000])
            fp.wait_event("reset")
            with self.assertRaises((ConnectionResetError, BrokenPipeError)):
                for _ in range(100):  # the server's end was reset too
                    srv.sendall(b"x" * 65536)
        fp, c, srv = pair([Fault("s2c", "half_close", after=777)])
        with fp, c, srv:
            srv.sendall(payload[:5000])
            got, how = read_until_end(c)
            self.assertEqual((got, how), (payload[:777], "eof"))
            c.sendall(b"still flowing")
            self.assertEqual(srv.recv(100), b"still flowing")
        fp, c, srv = pair([Fault("c2s", "pause", after=3, seconds=1.0), Fault("c2s", "trickle", after=3)])
        with fp, c, srv:
            c.sendall(b"abcdefgh")
            t0 = time.monotonic()
            got = bytearray()
            while len(got) < 8:
                b = srv.recv(100)
                self.assertTrue(b, "early EOF")
                got += b
                if len(got) == 3:
                    t3 = time.monotonic()
            self.assertEqual(bytes(got), b"abcdefgh")
            self.assertLess(t3 - t0, 0.9, "the first 3 bytes came at once")
            self.assertGreaterEqual(time.monotonic() - t0, 0.9, "the pause held the bytes back")
            fp.wait_event("resume", action="pause")

    # ---- finding 1, the natural case ----------------------------------------

    def test_wss_server_that_stops_reading_gets_every_message(self):
        """A wss:// peer stops reading for 6 s after the first message
        while stws trickles 20,000 lines in bursts of 50 (~9 MB: more than the
        sockets hold -- the client's send buffer autotunes to 4 MB on loopback
        -- so the TLS layer's writes would-block with less than a record
        queued and the next write offers more).  Before the fix mbedTLS reported the larger offers
        written; the peer then lost messages or saw a broken frame (1002)."""
        lines = [line(i, 250 + (i * 37) % 400) for i in range(20000)]
        with self.server("pause-read:6", True) as p:
            self.run_cat(p.port, True, lines, pace=50, echo=False, peer=p)
            p.wait_event("resumed")
            self.assertPeerGot(p, lines)

    # ---- non-destructive faults, ws:// and wss:// -----------------------------

    def test_one_byte_writes_both_ways(self):
        lines = [line(i, 1 + (i * 53) % 500) for i in range(40)]
        for secure in (False, True):
            with self.subTest(secure=secure), self.server("echo", secure) as p, \
                    FaultProxy(p.port, [Fault("c2s", "trickle"), Fault("s2c", "trickle")]) as fp:
                self.run_cat(fp.port, secure, lines, peer=p)
                self.assertPeerGot(p, lines)
                fp.wait_event("closed", conn=1)
                self.assertEqual(len(fp.find("fault", action="trickle")), 2)

    def test_stall_both_ways(self):
        lines = [line(i, 10 + (i * 97) % 3000) for i in range(300)]
        for secure in (False, True):
            with self.subTest(secure=secure), self.server("echo", secure) as p, \
                    FaultProxy(p.port, [Fault("c2s", "stall", after=20000, seconds=2)]) as fp:
                self.run_cat(fp.port, secure, lines, peer=p)
                self.assertPeerGot(p, lines)
                self.assertEqual(len(fp.find("resume", action="stall")), 1, fp.events)

    def test_paused_reads_back_pressure(self):
        """The proxy stops reading the client (small socket buffers) while
        the client keeps trickling, ~7 MB for wss:// (more than the client's
        4 MB send buffer: finding 1 again, through a proxy), less for ws://:
        back-pressure reaches stws's socket, then everything flows again; the
        server's handshake answer was paused too."""
        for secure, n, pause in ((False, 3000, 2), (True, 16000, 6)):
            lines = [line(i, 200 + (i * 31) % 500) for i in range(n)]
            with self.subTest(secure=secure), self.server("record", secure) as p, \
                    FaultProxy(p.port, [Fault("c2s", "pause", after=4000, seconds=pause),
                                        Fault("s2c", "pause", after=150, seconds=1)]) as fp:
                self.run_cat(fp.port, secure, lines, pace=50, echo=False, peer=p)
                self.assertPeerGot(p, lines)
                self.assertEqual(len(fp.find("resume", action="pause")), 2, fp.events)

    # ---- destructive faults, server to client -------------------------------

    SPEC = "send:text=alpha,text=beta,text:100000,hold"

    def cut_server_to_client(self, secure, action):
        with self.server(self.SPEC, secure) as p, \
                FaultProxy(p.port, [Fault("s2c", action, after=50000)]) as fp:
            with peers.stws_process(self.cat_args(fp.port, secure, "--timeout", "10")) as s:
                r = s.wait(WAIT)
            fp.wait_event("closed", conn=1)
            data = fp.data(1, "s2c")
        self.assertEqual(len(data), 50000)
        self.assertEqual(r.status, 1, r.describe())
        # exactly the messages complete before the cut, once; nothing of the cut one
        self.assertEqual(r.stdout, b"alpha\nbeta\n", r.describe())
        self.assertEqual(r.stderr.count("stws: event error: "), 1, r.describe())
        self.assertEqual(r.stderr.count("stws: event close: code=1006 clean=0"), 1, r.describe())
        return r, data

    def test_reset_inside_a_frame(self):
        r, data = self.cut_server_to_client(False, "reset")
        fs, partial = frames(data)
        self.assertEqual([p for _, p in fs], [b"alpha", b"beta"])
        self.assertGreater(partial, 0, "the reset must cut a frame")
        self.assertIn("stws: event error: send or receive failed: receive: send or receive failed\n",
                      r.stderr)

    def test_fin_inside_a_frame(self):
        r, data = self.cut_server_to_client(False, "half_close")
        fs, partial = frames(data)
        self.assertEqual(len(fs), 2)
        self.assertGreater(partial, 0)
        self.assertIn("stws: event error: connection closed by the peer without a close frame: "
                      "receive: connection closed by the peer without a close frame\n", r.stderr)

    def test_reset_inside_a_tls_record(self):
        r, data = self.cut_server_to_client(True, "reset")
        n, partial = tls_records(data)
        self.assertGreater(partial, 5, "the reset must cut a TLS record after its header")
        self.assertIn("stws: event error: send or receive failed: receive: send or receive failed: "
                      "the transport failed %d bytes into a TLS record\n" % partial, r.stderr)

    def test_fin_inside_a_tls_record(self):
        r, data = self.cut_server_to_client(True, "half_close")
        n, partial = tls_records(data)
        self.assertGreater(partial, 5)
        self.assertIn("receive: connection closed by the peer without a close frame: "
                      "TLS record cut short: the stream ended %d bytes into a record\n" % partial,
                      r.stderr)

    # ---- destructive faults, client to server -------------------------------

    def test_reset_and_fin_inside_a_client_frame(self):
        """Five short lines, then a 100 kB one; the proxy cuts the client's
        stream inside the long one.  The peer gets exactly the five, once."""
        short = [line(i, 40 + i) for i in range(5)]
        for secure in (False, True):
            for action in ("reset", "half_close"):
                with self.subTest(secure=secure, action=action), self.server("record", secure) as p, \
                        FaultProxy(p.port, [Fault("c2s", action, after=50000)]) as fp:
                    with peers.stws_process(self.cat_args(fp.port, secure, "--timeout", "10")) as s:
                        s.write("".join(l + "\n" for l in short))
                        p.wait_event("message", count=5)
                        s.write(line(99, 100000) + "\n")
                        r = s.wait(WAIT)
                    fp.wait_event("closed", conn=1)
                    p.wait_closed()
                    data = fp.data(1, "c2s")
                    self.assertEqual(len(data), 50000)
                    self.assertEqual([m["data"] for m in p.messages()], short, p.diagnostics())
                    if not secure:
                        fs, partial = frames(data)
                        self.assertEqual([x.decode() for _, x in fs], short)
                        self.assertGreater(partial, 0)
                    else:
                        self.assertGreater(tls_records(data)[1], 0)
                    self.assertEqual(r.status, 1, r.describe())
                    self.assertEqual(r.stderr.count("stws: event close: code=1006 clean=0"), 1,
                                     r.describe())
                    # a reset fails the next send or receive.  A FIN towards the
                    # server makes it drop the connection; the client then sees
                    # the end, or (when the proxy's close met bytes the client
                    # was still sending) a reset on its next send: either is
                    # the one clear error, with 1006.
                    errors = re.findall(r"^stws: event error: (.*)$", r.stderr, re.M)
                    self.assertEqual(len(errors), 1, r.describe())
                    io = "send or receive failed: "
                    eof = "connection closed by the peer without a close frame: receive: "
                    if action == "reset":
                        self.assertTrue(errors[0].startswith(io), r.describe())
                    else:
                        self.assertTrue(errors[0].startswith((io, eof)), r.describe())

    # ---- the Stream client through the proxy --------------------------------

    def listen(self, proxy):
        return tl.listen(["--url", "ws://127.0.0.1:%d/api/v2/connect" % proxy.port,
                          "--api-key", API_KEY, "--user-id", "alice", "--secret", SECRET])

    def test_listen_reset_while_sending_reconnects_and_resends(self):
        """Numbered lines go into `stws listen` at a steady pace; the proxy
        resets connection 1 inside a client frame.  The client reconnects
        (connection 2, no faults) and sends from its queue every line it had
        not yet handed to its kernel, and the lines written while it was
        down: all of them arrive, once, in order.  Connection 1 delivered
        exactly the frames complete before the cut.  Between the two, the
        lines that sat in the client's kernel (the proxy stopped reading at
        the cut) are lost: the documented limit of a bare socket (header,
        DELIVERY); their count is reported."""
        rec = os.path.join(self.tmp.name, "listen-reset.jsonl")
        with contextlib.ExitStack() as st:
            m = st.enter_context(peers.mock_coordinator("--api-key", API_KEY, "--secret", SECRET,
                                                        "--record", rec))
            fp = st.enter_context(FaultProxy(m.port, [Fault("c2s", "reset", after=30000, conns=[1])]))
            p = st.enter_context(self.listen(fp))
            p.wait_err(r"^stws: connected")
            n = 0
            while not fp.find("reset"):  # until the proxy cut connection 1
                n += 1
                p.write(tl.numbered_line(n))
                time.sleep(0.002)  # pacing of the load generator
                self.assertLess(n, 100000, "the proxy never reset connection 1")
            cut_at = n
            for _ in range(50):  # while disconnected (or reconnecting)
                n += 1
                p.write(tl.numbered_line(n))
            p.wait_err(r"^stws: reconnected")
            for _ in range(50):
                n += 1
                p.write(tl.numbered_line(n))
            last = n
            tl.wait_record(rec, lambda recs: any(k == last for k, _ in tl.recorded_lines(recs)),
                           timeout=WAIT, what="line %d recorded" % last, diag=p.diagnostics)
            p.signal(signal.SIGTERM)
            self.assertEqual(p.wait_exit(), 0, p.diagnostics())
            m.terminate()
            data = fp.data(1, "c2s")
        got = tl.recorded_lines(tl.read_record(rec))
        numbers = [k for k, _ in got]
        self.assertEqual(len(numbers), len(set(numbers)), "duplicated lines")
        self.assertEqual(numbers, sorted(numbers), "lines out of order")
        # connection 1: exactly the complete frames before the cut
        fs, partial = frames(data)
        self.assertGreater(partial, 0, "the reset must cut a frame")
        sent1 = [json.loads(x)["n"] for op, x in fs if op == 1 and b'"test.line"' in x]
        self.assertEqual([k for k, c in got if c == 1], sent1)
        # everything else, after a possible run lost in the client's kernel
        # at the switch, went over connection 2
        after = [k for k, c in got if c == 2]
        self.assertEqual(after, list(range(after[0], last + 1)), "connection 2 lost lines")
        lost = list(range(sent1[-1] + 1, after[0]))
        self.assertLessEqual(after[0], cut_at + 1,
                             "lines written while disconnected must not be lost")
        sys.stderr.write("[reset at line %d: %d lines on connection 1, %d lost in the kernel, "
                         "%d on connection 2] " % (cut_at, len(sent1), len(lost), len(after)))

    def test_listen_reset_inside_a_server_event_reconnects(self):
        """The mock streams events; the proxy resets connection 1 inside an
        event frame.  stws listen prints exactly the events complete before
        the cut (no partial line), reconnects, and prints connection 2's."""
        with contextlib.ExitStack() as st:
            m = st.enter_context(peers.mock_coordinator("--api-key", API_KEY, "--secret", SECRET,
                                                        "--events-per-second", "200"))
            fp = st.enter_context(FaultProxy(m.port, [Fault("s2c", "reset", after=20000, conns=[1])]))
            p = st.enter_context(self.listen(fp))
            p.wait_err(r"^stws: reconnected")
            p.wait_events(lambda evs: sum(1 for e in evs if e.get("type") == "connection.ok") >= 2
                          and evs[-1].get("type") != "connection.ok",
                          what="an event on connection 2")
            p.signal(signal.SIGTERM)
            self.assertEqual(p.wait_exit(), 0, p.diagnostics())
            m.terminate()
            data = fp.data(1, "s2c")
        fs, partial = frames(data)
        self.assertGreater(partial, 0, "the reset must cut a frame")
        conn1 = [x.decode() for op, x in fs if op == 1]
        out = p.out()
        second = [i for i, l in enumerate(out) if '"connection.ok"' in l][1]
        self.assertEqual(out[:second], conn1, "connection 1's events as printed")
        seqs = [json.loads(l).get("seq") for l in out[second:]]
        seqs = [s for s in seqs if s is not None]
        self.assertEqual(seqs, list(range(1, len(seqs) + 1)), "connection 2's events")
        self.assertEqual(p.count_err(r"^stws: disconnected"), 1, p.diagnostics())


if __name__ == "__main__":
    unittest.main(verbosity=2)
