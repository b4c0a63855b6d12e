"""Self-checks of the integration-test harness (peers.py, ws_peer.py): every
peer mode against python-websockets or a raw socket, the TLS material, the
tinyproxy tunnel, and that no process outlives its context.  Needs no stws."""

import asyncio
import base64
import hashlib
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402
import websockets  # noqa: E402
from websockets.exceptions import ConnectionClosed, ConnectionClosedError  # noqa: E402

BOUND = 30  # seconds any one client exchange may take


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, BOUND))


def connect(url, **kw):
    kw.setdefault("max_size", None)
    kw.setdefault("compression", None)
    kw.setdefault("open_timeout", 10)
    kw.setdefault("close_timeout", 10)
    return websockets.connect(url, **kw)


def key(d):
    return (d["type"], d["len"], d["sha256"])


def raw_handshake(port, path="/", sock=None):
    """A raw client: upgrade over a fresh socket; returns (socket, leftover bytes)."""
    s = sock or socket.create_connection(("127.0.0.1", port), timeout=BOUND)
    k = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
               % (path, port, k)).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError("connection closed during the handshake: %r" % buf)
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    assert ("Sec-WebSocket-Accept: " + peers.accept_key(k)).encode() in head, head
    return s, rest


def raw_frames(s, buf, until):
    """Read frames until until(frames) is true; returns the frames
    [(fin, opcode, payload)]."""
    frames = []
    buf = bytearray(buf)
    while not until(frames):
        f = peers.parse_frame(buf)
        if f is None:
            chunk = s.recv(65536)
            if not chunk:
                raise AssertionError("EOF after frames %r" % [(a, b, len(c)) for a, b, c in frames])
            buf += chunk
            continue
        fin, opcode, payload, used = f
        del buf[:used]
        frames.append((fin, opcode, payload))
    return frames


class GeneratorsTest(unittest.TestCase):
    def test_generated_content_is_exact_and_deterministic(self):
        for n in (0, 1, 2, 3, 125, 126, 65535, 65536, 1 << 20):
            t = peers.gen_text(n, 3)
            self.assertEqual(len(t.encode("utf-8")), n)
            self.assertEqual(t, peers.gen_text(n, 3))
            b = peers.gen_binary(n, 3)
            self.assertEqual(len(b), n)
            self.assertEqual(b, peers.gen_binary(n, 3))
        self.assertNotEqual(peers.gen_binary(64, 1), peers.gen_binary(64, 2))
        self.assertGreater(len(peers.gen_text(4096)), len(set(peers.gen_text(4096))))  # multi-byte
        self.assertTrue(any(ord(c) > 0xFFFF for c in peers.gen_text(200)))
        self.assertEqual(len(set(peers.gen_binary(65536))), 256)

    def test_spec_parsing(self):
        items = peers.parse_spec("text:3,binary=00ff,text=a%2Cb,await:2,close:4000:bye%20now")
        self.assertEqual(items[1:], [("send", b"\x00\xff"), ("send", "a,b"), ("await", 2),
                                     ("close", (4000, "bye now"))])
        self.assertEqual(len(items[0][1].encode()), 3)
        with self.assertRaises(ValueError):
            peers.parse_spec("bogus:1")


class WsModesTest(unittest.TestCase):
    def test_echo_round_trip(self):
        msgs = ["", "x", peers.gen_text(125), peers.gen_text(70000, 1), b"", b"\x00",
                peers.gen_binary(126), peers.gen_binary(1 << 20, 2)]
        with peers.ws_server("echo") as p:
            async def go():
                async with connect(p.url("/echo?x=1")) as ws:
                    for m in msgs:
                        await ws.send(m)
                        back = await ws.recv()
                        self.assertEqual(type(back), type(m))
                        self.assertEqual(back, m)
            run(go())
            closed = p.wait_closed()
            self.assertEqual(closed["code"], 1000)
            self.assertTrue(closed["client_first"])
            self.assertEqual(p.events("connect")[0]["path"], "/echo?x=1")
            self.assertEqual([key(e) for e in p.messages()], [key(peers.describe(m)) for m in msgs])
            self.assertEqual([key(e) for e in p.sent()], [key(peers.describe(m)) for m in msgs])

    def test_record_records_without_answering(self):
        msgs = ["hello", b"\x01\x02", peers.gen_binary(65536)]
        with peers.ws_server("record", subprotocols=("chat",)) as p:
            async def go():
                async with connect(p.url(), subprotocols=["chat"],
                                   extra_headers={"X-Test": "42"}) as ws:
                    self.assertEqual(ws.subprotocol, "chat")
                    for m in msgs:
                        await ws.send(m)
                    await ws.close(4001, "done")
                    self.assertEqual(ws.close_code, 4001)
            run(go())
            p.wait_closed()
            self.assertEqual([key(e) for e in p.messages()], [key(peers.describe(m)) for m in msgs])
            self.assertEqual(p.messages()[0]["data"], "hello")
            self.assertEqual(p.messages()[1]["data"], "0102")
            self.assertEqual(p.sent(), [])
            c = p.events("connect")[0]
            self.assertIn(["X-Test", "42"], c["headers"])
            self.assertEqual(c["subprotocol"], "chat")
            self.assertEqual(p.events("closed")[0]["code"], 4001)

    def test_send_spec_then_close_code(self):
        spec = "text:0,binary:0,text:125,binary:65536,text=a%2Cb,binary=00ff,await:6,close:4000:bye%20now"
        expect = peers.spec_messages(spec)
        with peers.ws_server("send:" + spec) as p:
            async def go():
                got = []
                async with connect(p.url()) as ws:
                    try:
                        while True:
                            m = await ws.recv()
                            got.append(m)
                            await ws.send(m)
                    except ConnectionClosed:
                        pass
                    self.assertEqual(ws.close_code, 4000)
                    self.assertEqual(ws.close_reason, "bye now")
                return got
            got = run(go())
            self.assertEqual(got, expect)
            closed = p.wait_closed()
            self.assertEqual((closed["code"], closed["sent_code"], closed["client_first"]),
                             (4000, 4000, False))
            self.assertEqual([key(e) for e in p.sent()], [key(peers.describe(m)) for m in expect])
            self.assertEqual([key(e) for e in p.messages()], [key(e) for e in p.sent()])

    def test_send_await_times_out_when_nothing_comes_back(self):
        with peers.ws_server("send:text=x,await:1,close:1000", wait_timeout=1) as p:
            async def go():
                async with connect(p.url()) as ws:
                    self.assertEqual(await ws.recv(), "x")
                    await ws.wait_closed()
            run(go())
            p.wait_event("await_timeout", want=1, have=0)
            self.assertEqual(p.wait_closed()["sent_code"], 1000)

    def test_fragmented_reassembled_by_python_client(self):
        with peers.ws_server("fragmented") as p:
            async def go():
                got = []
                async with connect(p.url()) as ws:
                    try:
                        while True:
                            m = await ws.recv()
                            got.append(m)
                            await ws.send(m)
                    except ConnectionClosed:
                        pass
                return got
            got = run(go())
            self.assertEqual(p.wait_closed()["code"], 1000)
            self.assertEqual(len(got), 5)
            self.assertEqual(got[0], "fragmented tëxt €𝄞")
            self.assertEqual(got[2], "café split")
            self.assertEqual(got[3], "ping-interleaved")
            self.assertEqual([key(peers.describe(m)) for m in got], [key(e) for e in p.sent()])
            self.assertEqual([key(e) for e in p.messages()], [key(e) for e in p.sent()])
            p.wait_event("pong", data=b"mid-fragment".hex())
            self.assertEqual(p.wait_closed()["code"], 1000)

    def test_fragmented_really_fragments(self):
        with peers.ws_server("fragmented", wait_timeout=1) as p:
            s, rest = raw_handshake(p.port)
            with s:
                def five_messages(frames):
                    return sum(1 for fin, op, _ in frames if fin and op in (0, 1, 2)) >= 5
                frames = raw_frames(s, rest, five_messages)
        data = [(fin, op, pl) for fin, op, pl in frames]
        # message 1: text, 4 fragments + empty final continuation
        self.assertEqual(data[0], (False, 1, b"frag"))
        self.assertEqual([d[1] for d in data[1:5]], [0, 0, 0, 0])
        self.assertEqual(data[4], (True, 0, b""))
        # message 2: binary with an empty fragment
        self.assertEqual(data[5], (False, 2, b"\x00\x01"))
        self.assertEqual(data[6], (False, 0, b""))
        # message 3: "é" split across frames
        self.assertEqual(data[9], (False, 1, b"caf\xc3"))
        self.assertEqual(data[10], (True, 0, b"\xa9 split"))
        # message 4: a ping between its fragments
        self.assertEqual(data[11], (False, 1, b"ping-"))
        self.assertEqual(data[12], (True, 9, b"mid-fragment"))
        self.assertEqual(data[13], (False, 0, b"inter"))
        # message 5: 300 fragments + final
        self.assertEqual(sum(1 for d in data[16:] if d[1] in (0, 2)), 301)

    def test_ping_pongs_recorded(self):
        with peers.ws_server("ping") as p:
            async def go():
                async with connect(p.url()) as ws:  # websockets answers pings itself
                    await ws.wait_closed()
                    self.assertEqual(ws.close_code, 1000)
            run(go())
            self.assertEqual(p.wait_closed()["code"], 1000)
            pongs = [e["data"] for e in p.events("pong")]
            self.assertEqual(pongs, ["", b"ping-1".hex(), bytes(range(125)).hex()])
            self.assertEqual(p.events("pong_timeout"), [])
            self.assertEqual(p.wait_closed()["code"], 1000)

    def test_ping_without_pong_is_recorded_as_timeout(self):
        with peers.ws_server("ping", wait_timeout=1) as p:
            s, rest = raw_handshake(p.port)
            with s:
                frames = raw_frames(s, rest, lambda fr: len(fr) >= 1)
                self.assertEqual(frames[0], (True, 9, b""))
                p.wait_event("pong_timeout", data="")
            self.assertEqual(p.events("pong"), [])

    def test_close_codes(self):
        for code in (1000, 1001, 4000):
            with self.subTest(code=code), peers.ws_server("close:%d" % code) as p:
                async def go():
                    async with connect(p.url()) as ws:
                        await ws.send("first")
                        with self.assertRaises(ConnectionClosed):
                            await ws.recv()
                        self.assertEqual(ws.close_code, code)
                        self.assertEqual(ws.close_reason, "closing with %d" % code)
                run(go())
                closed = p.wait_closed()
                self.assertEqual((closed["code"], closed["sent_code"], closed["client_first"]),
                                 (code, code, False))
                self.assertEqual(p.messages()[0]["data"], "first")

    def test_abort_midframe(self):
        with peers.ws_server("abort-midframe") as p:
            async def go():
                async with connect(p.url()) as ws:
                    with self.assertRaises(ConnectionClosedError):
                        await ws.recv()
                    self.assertEqual(ws.close_code, 1006)
            run(go())
            p.wait_event("aborted")
            s, rest = raw_handshake(p.port)
            with s:
                data = rest
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            self.assertEqual(data, b"\x82\x7e\x01\x00" + bytes(range(100)))

    def test_stall_never_answers_but_logs_frames(self):
        with peers.ws_server("stall") as p:
            async def go():
                async with connect(p.url(), close_timeout=1) as ws:
                    await ws.send("hello")
                    with self.assertRaises(asyncio.TimeoutError):
                        await asyncio.wait_for(ws.recv(), 0.5)
                    t0 = time.monotonic()
                    await ws.close(1000)
                    self.assertGreaterEqual(time.monotonic() - t0, 0.9)  # waited for a reply
                    self.assertIsNone(ws.close_rcvd)
            run(go())
            p.wait_event("upgraded")
            self.assertEqual(p.wait_event("frame", opcode=1)["data"], b"hello".hex())
            self.assertEqual(p.wait_event("frame", opcode=8)["close_code"], 1000)
            p.wait_event("eof")

    def test_stall_noread(self):
        with peers.ws_server("stall-noread") as p:
            async def go():
                async with connect(p.url(), close_timeout=0.5) as ws:
                    await ws.send("hello")
                    with self.assertRaises(asyncio.TimeoutError):
                        await asyncio.wait_for(ws.recv(), 0.5)
                    ws.transport.abort()  # a close would wait for nothing
            run(go())
            p.wait_event("upgraded")
            self.assertEqual(p.events("frame"), [])

    def test_no_upgrade(self):
        with peers.ws_server("no-upgrade") as p:
            async def go():
                with self.assertRaises(asyncio.TimeoutError):
                    async with connect(p.url("/nothing"), open_timeout=1):
                        pass
            run(go())
            req = p.wait_event("request")
            self.assertEqual(req["request_line"], "GET /nothing HTTP/1.1")
            self.assertIn("websocket", [v.lower() for k, v in req["headers"] if k.lower() == "upgrade"])
            p.wait_event("eof")
            # a raw client sees no answer at all
            with socket.create_connection(("127.0.0.1", p.port), timeout=BOUND) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                p.wait_event("request", count=2)
                s.settimeout(0.5)
                with self.assertRaises(socket.timeout):
                    s.recv(1)


class TLSTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="stws-tls-selfcheck-")
        cls.m = peers.tls_material(cls.tmp.name)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def verify(self, cafile, cert, *extra):
        return subprocess.run(["openssl", "verify", "-CAfile", cafile, *extra, cert],
                              capture_output=True, text=True, timeout=30)

    def test_openssl_verify(self):
        m = self.m
        r = self.verify(m.ca, m.server.cert, "-verify_ip", "127.0.0.1")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(": OK", r.stdout)
        r = self.verify(m.ca, m.server.cert, "-verify_hostname", "localhost")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = self.verify(m.other_ca, m.server.cert)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("unable to get local issuer certificate", r.stdout + r.stderr)
        r = self.verify(m.ca, m.expired.cert)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("expired", r.stdout + r.stderr)
        r = self.verify(m.ca, m.wrong_host.cert)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)  # a good chain ...
        r = self.verify(m.ca, m.wrong_host.cert, "-verify_ip", "127.0.0.1")
        self.assertNotEqual(r.returncode, 0)  # ... for another name
        for pair in (m.server, m.wrong_host, m.expired):
            r = subprocess.run(["openssl", "x509", "-checkend", "0", "-noout", "-in", pair.cert],
                               capture_output=True, timeout=30)
            self.assertEqual(r.returncode != 0, pair is m.expired)

    def client_ctx(self, cafile):
        return ssl.create_default_context(cafile=cafile)

    def test_wss_echo(self):
        with peers.ws_server("echo", tls=self.m.server) as p:
            self.assertTrue(p.url().startswith("wss://127.0.0.1:"))

            async def go():
                async with connect(p.url(), ssl=self.client_ctx(self.m.ca)) as ws:
                    await ws.send("secure")
                    self.assertEqual(await ws.recv(), "secure")
                    big = peers.gen_binary(1 << 20)
                    await ws.send(big)
                    self.assertEqual(await ws.recv(), big)
            run(go())
            self.assertEqual(p.wait_closed()["code"], 1000)

    def test_wss_failures_are_certificate_failures(self):
        m = self.m
        cases = [("wrong CA", m.server, m.other_ca, "unable to get local issuer"),
                 ("wrong host", m.wrong_host, m.ca, "IP address mismatch"),
                 ("expired", m.expired, m.ca, "expired")]
        for name, pair, ca, why in cases:
            with self.subTest(name), peers.ws_server("echo", tls=pair) as p:
                async def go():
                    with self.assertRaises(ssl.SSLCertVerificationError) as cm:
                        async with connect(p.url(), ssl=self.client_ctx(ca)):
                            pass
                    self.assertIn(why, str(cm.exception))
                run(go())
                self.assertEqual(p.events("connect"), [])

    def test_raw_modes_serve_tls(self):
        with peers.ws_server("no-upgrade", tls=self.m.server) as p:
            ctx = self.client_ctx(self.m.ca)
            with socket.create_connection(("127.0.0.1", p.port), timeout=BOUND) as raw:
                with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                    s.sendall(b"GET /tls HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    self.assertEqual(p.wait_event("request")["request_line"], "GET /tls HTTP/1.1")


class ProxyTest(unittest.TestCase):
    def tunnel_echo(self, proxy, peer, auth=None):
        status, head, s = peers.proxy_connect(proxy.port, "127.0.0.1", peer.port, auth=auth)
        self.assertEqual(status, 200, head)

        async def go():
            async with connect(peer.url("/via-proxy"), sock=s) as ws:
                await ws.send("tunnelled")
                self.assertEqual(await ws.recv(), "tunnelled")
        run(go())
        self.assertEqual(peer.wait_closed()["code"], 1000)
        proxy.wait_log(r"CONNECT 127\.0\.0\.1:%d HTTP" % peer.port, timeout=10)
        self.assertIn("127.0.0.1:%d" % peer.port, proxy.connect_requests())

    def test_tinyproxy_tunnels_ws(self):
        with peers.tinyproxy() as px, peers.ws_server("echo") as p:
            self.assertEqual(px.url, "http://127.0.0.1:%d" % px.port)
            self.tunnel_echo(px, p)
            self.assertEqual(p.events("connect")[0]["path"], "/via-proxy")

    def test_tinyproxy_basic_auth(self):
        auth = ("stws", "s3cret")
        with peers.tinyproxy(auth=auth) as px, peers.ws_server("echo") as p:
            self.assertEqual(px.url, "http://stws:s3cret@127.0.0.1:%d" % px.port)
            status, head, s = peers.proxy_connect(px.port, "127.0.0.1", p.port)
            s.close()
            self.assertEqual(status, 407, head)
            status, head, s = peers.proxy_connect(px.port, "127.0.0.1", p.port, auth=("stws", "bad"))
            s.close()
            self.assertIn(status, (401, 407), head)  # tinyproxy 1.11 answers 401 here
            self.assertEqual(p.events("connect"), [])
            self.tunnel_echo(px, p, auth=auth)

    def test_tinyproxy_reports_unreachable_target(self):
        port = peers.free_port()
        with peers.tinyproxy() as px:
            status, head, s = peers.proxy_connect(px.port, "127.0.0.1", port)
            s.close()
            self.assertNotEqual(status, 200, head)


class CleanupTest(unittest.TestCase):
    def test_ws_peer_killed_on_exit_and_on_error(self):
        with peers.ws_server("echo") as p:
            pid = p.pid
            self.assertFalse(peers.process_gone(pid))
        self.assertTrue(peers.process_gone(pid))
        self.assertTrue(peers.group_gone(pid))
        with self.assertRaises(RuntimeError):
            with peers.ws_server("stall") as p:
                pid = p.pid
                raise RuntimeError("boom")
        self.assertTrue(peers.process_gone(pid))
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", p.port), timeout=5).close()

    def test_tinyproxy_killed_on_exit_and_on_error(self):
        with self.assertRaises(RuntimeError):
            with peers.tinyproxy() as px:
                pid, port = px.pid, px.port
                self.assertFalse(peers.process_gone(pid))
                raise RuntimeError("boom")
        self.assertTrue(peers.process_gone(pid))
        self.assertTrue(peers.group_gone(pid))
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()

    def test_run_command_kills_group_on_timeout(self):
        # The shell starts a grandchild and reports its pid; both must die.
        with self.assertRaises(AssertionError) as cm:
            peers.run_command(["/bin/sh", "-c", "sleep 300 & echo $!; wait"], timeout=1)
        msg = str(cm.exception)
        self.assertIn("did not exit within", msg)
        grandchild = int(msg.split("stdout: b'", 1)[1].split("\\n", 1)[0])
        self.assertTrue(peers.process_gone(grandchild))

    def test_run_command_result(self):
        r = peers.run_command(["/bin/sh", "-c", "cat; echo oops >&2; exit 3"], input=b"in\n")
        status, out, err = r
        self.assertEqual((status, out, err), (3, b"in\n", "oops\n"))
        self.assertLess(r.elapsed, 30)

    def test_missing_stws_is_a_clear_failure(self):
        old = os.environ.get("STWS_BUILD")
        os.environ["STWS_BUILD"] = tempfile.gettempdir() + "/no-such-stws-build"
        try:
            with self.assertRaises(AssertionError) as cm:
                peers.run_stws(["echo", "ws://127.0.0.1:1/"])
            self.assertIn("build the stws tool", str(cm.exception))
        finally:
            if old is None:
                del os.environ["STWS_BUILD"]
            else:
                os.environ["STWS_BUILD"] = old


if __name__ == "__main__":
    unittest.main(verbosity=2)
