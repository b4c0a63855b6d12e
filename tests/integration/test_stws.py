"""Integration tests of the stws tool ($STWS_BUILD/stws) against real peers:
python-websockets servers (ws_peer.py), TLS with openssl-made certificates, and
Debian's tinyproxy.  Each test fails (never skips) when the tool is missing.

What the tests assume of the tool:
  stws echo URL [options]   echo every message with its opcode, answer pings;
                            exit 0 after a clean closing handshake.
  stws cat URL [options]    stdin lines -> text messages (--binary: binary),
                            messages -> stdout + "\\n", flushed per message; at
                            stdin EOF: close 1000, wait for the reply, exit 0;
                            server closes first (clean handshake): exit 0.
  options: --ca FILE, --insecure (warning with "insecure" or "WARNING" on stderr),
           --proxy http://[user:pass@]127.0.0.1:PORT, --header 'K: V',
           --subprotocol P, --binary, --timeout SECONDS (connect + handshake, and
           the wait for the close reply).
  errors: exit status > 0 (not a signal) and a line "stws: REASON" on stderr;
  TLS verification failures mention "certificate" or "verify"; usage errors
  (no URL, bad URL, unknown command or option) exit 2 with a message.
"""

import base64
import os
import re
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402

SIZES = [0, 1, 125, 126, 127, 65535, 65536]
MIB = 1 << 20
BIG_TIMEOUT = 240  # 16 MiB each way under ASan, with a Python peer


class StwsTest(unittest.TestCase):
    maxDiff = 4000

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="stws-test-")
        cls.tls = peers.tls_material(cls.tmp.name)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def setUp(self):
        peers.require_stws()  # a missing tool is a failure with a clear message

    # ---- assertions --------------------------------------------------------

    def assertExit0(self, r, peer=None):
        if r.status != 0:
            self.fail("expected exit status 0\n" + r.describe()
                      + ("\n" + peer.diagnostics() if peer else ""))

    def assertFailed(self, r, peer=None, status=None):
        """Non-zero exit (not a crash), with a "stws: ..." line on stderr."""
        extra = "\n" + r.describe() + ("\n" + peer.diagnostics() if peer else "")
        if status is not None:
            self.assertEqual(r.status, status, "expected exit status %d%s" % (status, extra))
        self.assertGreater(r.status, 0, "expected a failure exit status (>0, not a signal)" + extra)
        self.assertTrue(any(l.startswith("stws: ") and len(l) > 7 for l in r.stderr.splitlines()),
                        "expected a one-line reason starting with 'stws: ' on stderr" + extra)

    def assertCertFailure(self, r, peer):
        self.assertFailed(r, peer)
        self.assertRegex(r.stderr.lower(), r"certificate|verif",
                         "the reason should name the certificate problem\n" + r.describe())
        self.assertEqual(peer.events("connect"), [],
                         "the WebSocket handshake must not happen over an unverified connection")

    def assertEchoed(self, peer, conn=1):
        """The peer got back exactly what it sent, same types, same order."""
        peer.wait_closed(conn)
        sent = [(e["type"], e["len"], e["sha256"]) for e in peer.sent(conn)]
        got = [(e["type"], e["len"], e["sha256"]) for e in peer.messages(conn)]
        self.assertTrue(sent)
        self.assertEqual(got, sent, "messages echoed by stws differ from those sent\n"
                         + peer.diagnostics())

    def assertClosed(self, peer, code, client_first, conn=1):
        c = peer.wait_closed(conn)
        self.assertEqual(c["code"], code, "close code stws sent\n" + peer.diagnostics())
        self.assertEqual(c["client_first"], client_first,
                         "who started the closing handshake\n" + peer.diagnostics())
        self.assertEqual(peer.events("await_timeout"), [], peer.diagnostics())
        return c

    def cat_round_trip(self, peer, args, lines):
        """stws cat against an echo peer: write lines, wait until all are echoed
        (the peer would not echo after stws's close), close stdin; stws must then
        close 1000 and exit 0.  Returns the StwsResult."""
        with peers.stws_process(["cat", peer.url()] + list(args)) as s:
            s.write("".join(l + "\n" for l in lines))
            self.assertEqual(s.wait_lines(len(lines)), lines)
            s.close_stdin()
            r = s.wait()
        self.assertExit0(r, peer)
        self.assertClosed(peer, 1000, client_first=True)
        return r

    # ---- echo: sizes, types, fragmentation, ping --------------------------------

    def echo_spec(self, spec, n, timeout=peers.STWS_TIMEOUT):
        with peers.ws_server("send:%s,await:%d,close:1000" % (spec, n)) as p:
            r = peers.run_stws(["echo", p.url()], timeout=timeout)
            self.assertExit0(r, p)
            self.assertEchoed(p)
            self.assertEqual(len(p.sent()), n)
            self.assertClosed(p, 1000, client_first=False)
            self.assertEqual(r.stdout, b"", "stws echo prints nothing on stdout")

    def test_echo_sizes_text_and_binary(self):
        spec = ",".join("text:%d,binary:%d" % (n, n) for n in SIZES)
        self.echo_spec(spec, 2 * len(SIZES))

    def test_echo_1mib(self):
        self.echo_spec("text:%d,binary:%d" % (MIB, MIB), 2)

    def test_echo_16mib(self):
        self.echo_spec("text:%d,binary:%d" % (16 * MIB, 16 * MIB), 2, timeout=BIG_TIMEOUT)

    def test_echo_literal_content(self):
        # exact bytes, not only hashes: NUL, 0xff, multi-byte UTF-8, a comma
        spec = "text=a%2Cb%20%C3%A9%E2%82%AC%F0%9D%84%9E,binary=00ff7f80,text=%00"
        with peers.ws_server("send:%s,await:3,close:1000" % spec) as p:
            r = peers.run_stws(["echo", p.url()])
            self.assertExit0(r, p)
            p.wait_closed()  # all of the connection's events are in
            self.assertEqual([(m["type"], m["data"]) for m in p.messages()],
                             [("text", "a,b é€𝄞"), ("binary", "00ff7f80"), ("text", "\x00")])

    def test_echo_fragmented_messages_reassembled(self):
        with peers.ws_server("fragmented") as p:
            r = peers.run_stws(["echo", p.url()])
            self.assertExit0(r, p)
            p.wait_closed()  # all of the connection's events are in
            self.assertEqual(len(p.sent()), 5)
            self.assertEchoed(p)
            self.assertEqual(p.messages()[2]["data"], "café split")
            p.wait_event("pong", data=b"mid-fragment".hex())
            self.assertEqual(p.events("pong_timeout"), [], p.diagnostics())
            self.assertClosed(p, 1000, client_first=False)

    def test_echo_answers_pings(self):
        with peers.ws_server("ping") as p:
            r = peers.run_stws(["echo", p.url()])
            self.assertExit0(r, p)
            p.wait_closed()  # all of the connection's events are in
            self.assertEqual([e["data"] for e in p.events("pong")],
                             ["", b"ping-1".hex(), bytes(range(125)).hex()], p.diagnostics())
            self.assertEqual(p.events("pong_timeout"), [])
            self.assertClosed(p, 1000, client_first=False)

    # ---- closing ------------------------------------------------------------------

    def test_server_initiated_close_codes_echoed(self):
        for code in (1000, 1001, 4000):
            with self.subTest(code=code), \
                    peers.ws_server("send:text=hi,await:1,close:%d:bye" % code) as p:
                r = peers.run_stws(["echo", p.url()])
                self.assertExit0(r, p)
                c = self.assertClosed(p, code, client_first=False)
                self.assertEqual(c["sent_code"], code)
                self.assertEqual(p.messages()[0]["data"], "hi")

    def test_cat_exits_0_when_server_closes_first(self):
        # stdin stays open: stws must notice the server's close by itself.
        with peers.ws_server("close:4000") as p, peers.stws_process(["cat", p.url()]) as s:
            s.write("hello\n")
            r = s.wait()
            self.assertExit0(r, p)
            p.wait_closed()  # all of the connection's events are in
            self.assertEqual(p.messages()[0]["data"], "hello")
            self.assertClosed(p, 4000, client_first=False)

    def test_cat_prints_server_messages_then_exits_on_close(self):
        spec = "text=alpha,text=%C3%BCml%C3%A4ut,text=,text=omega,close:1001"
        with peers.ws_server("send:" + spec) as p, peers.stws_process(["cat", p.url()]) as s:
            r = s.wait()
            self.assertExit0(r, p)
            self.assertEqual(r.stdout.decode("utf-8"), "alpha\nümläut\n\nomega\n")
            self.assertClosed(p, 1001, client_first=False)

    def test_server_aborts_midframe(self):
        for cmd in ("echo", "cat"):
            with self.subTest(cmd), peers.ws_server("abort-midframe") as p, \
                    peers.stws_process([cmd, p.url(), "--timeout", "10"]) as s:
                p.wait_event("aborted")
                r = s.wait()
                self.assertFailed(r, p)
                self.assertEqual(r.stdout, b"", "half a frame must not be printed")

    def test_stalled_server_close_times_out(self):
        with peers.ws_server("stall") as p:
            r = peers.run_stws(["cat", p.url(), "--timeout", "2"], input=b"")
            self.assertFailed(r, p)
            self.assertLess(r.elapsed, 30, "the close wait must be bounded by --timeout")
            self.assertGreaterEqual(r.elapsed, 1.5, "stws should wait ~2 s for the close reply\n"
                                    + r.describe())
            f = p.wait_event("frame", opcode=8)
            self.assertEqual(f["close_code"], 1000, p.diagnostics())
            self.assertEqual(len(p.events("frame")), 1, "only a close frame was expected\n"
                             + p.diagnostics())

    def test_no_upgrade_answer_times_out(self):
        with peers.ws_server("no-upgrade") as p:
            r = peers.run_stws(["cat", p.url("/chat?room=1"), "--timeout", "2"], input=b"x\n")
            self.assertFailed(r, p)
            self.assertLess(r.elapsed, 30, "the handshake wait must be bounded by --timeout")
            req = p.wait_event("request")
            self.assertEqual(req["request_line"], "GET /chat?room=1 HTTP/1.1")
            h = {}
            for k, v in req["headers"]:
                h.setdefault(k.lower(), []).append(v)
            self.assertEqual(h.get("host"), ["127.0.0.1:%d" % p.port])
            self.assertEqual([v.lower() for v in h.get("upgrade", [])], ["websocket"])
            self.assertIn("upgrade", [t.strip().lower() for t in ",".join(h.get("connection", [])).split(",")])
            self.assertEqual(h.get("sec-websocket-version"), ["13"])
            self.assertEqual(len(base64.b64decode(h["sec-websocket-key"][0], validate=True)), 16)

    def test_connection_refused(self):
        port = peers.free_port()
        r = peers.run_stws(["cat", "ws://127.0.0.1:%d/" % port, "--timeout", "5"], input=b"x\n")
        self.assertFailed(r)

    # ---- cat ---------------------------------------------------------------------------

    def test_cat_round_trip_lines(self):
        lines = ["one", "two", "", "three ünïcode €𝄞", "x" * 100000, "last"]
        with peers.ws_server("echo") as p:
            r = self.cat_round_trip(p, [], lines)
            self.assertEqual(r.stdout.decode("utf-8"), "".join(l + "\n" for l in lines))
            p.wait_closed()  # all of the connection's events are in
            self.assertEqual([m["type"] for m in p.messages()], ["text"] * len(lines))

    def test_cat_sends_stdin_lines_then_closes(self):
        lines = ["piped", "", "input ü"]
        with peers.ws_server("record") as p:
            r = peers.run_stws(["cat", p.url()], input="".join(l + "\n" for l in lines))
            self.assertExit0(r, p)
            p.wait_closed()  # all of the connection's events are in
            self.assertEqual([(m["type"], m["data"]) for m in p.messages()],
                             [("text", l) for l in lines])
            self.assertClosed(p, 1000, client_first=True)

    def test_cat_flushes_each_message(self):
        with peers.ws_server("echo") as p, peers.stws_process(["cat", p.url()]) as s:
            s.write("first\n")
            self.assertEqual(s.wait_lines(1), ["first"])
            s.write("second\n")
            self.assertEqual(s.wait_lines(2), ["first", "second"])
            s.close_stdin()
            r = s.wait()
            self.assertExit0(r, p)
            self.assertClosed(p, 1000, client_first=True)

    def test_cat_binary(self):
        with peers.ws_server("record") as p:
            r = peers.run_stws(["cat", p.url(), "--binary"], input=b"abc\n\x00\xff\n")
            self.assertExit0(r, p)
            p.wait_closed()  # all of the connection's events are in
            self.assertEqual([(m["type"], m["data"]) for m in p.messages()],
                             [("binary", b"abc".hex()), ("binary", b"\x00\xff".hex())])
            self.assertClosed(p, 1000, client_first=True)

    def test_cat_headers_and_subprotocol(self):
        with peers.ws_server("record", subprotocols=("superchat",)) as p:
            r = peers.run_stws(["cat", p.url("/path/x?q=1&r=2"), "--header", "X-Stws-Test: 42",
                                "--header", "X-Other: a b", "--subprotocol", "chat",
                                "--subprotocol", "superchat"], input=b"m\n")
            self.assertExit0(r, p)
            c = p.wait_event("connect")
            self.assertEqual(c["path"], "/path/x?q=1&r=2")
            hdrs = [(k.lower(), v) for k, v in c["headers"]]
            self.assertIn(("x-stws-test", "42"), hdrs)
            self.assertIn(("x-other", "a b"), hdrs)
            offered = ",".join(v for k, v in hdrs if k == "sec-websocket-protocol")
            self.assertEqual([t.strip() for t in offered.split(",")], ["chat", "superchat"])
            self.assertEqual(c["subprotocol"], "superchat")
            p.wait_closed()  # all of the connection's events are in
            self.assertEqual(p.messages()[0]["data"], "m")

    # ---- TLS ------------------------------------------------------------------------------

    def test_wss_with_right_ca(self):
        with peers.ws_server("echo", tls=self.tls.server) as p:
            r = self.cat_round_trip(p, ["--ca", self.tls.ca], ["secure", "lines"])
            self.assertEqual(r.stdout, b"secure\nlines\n")
            self.assertNotRegex(r.stderr.lower(), "insecure", "no warning without --insecure")
            # the TLS version the build must negotiate with Python's ssl
            # defaults (tools/mbedtls3.sh sets it: 1.3 for 3.6's default
            # config, 1.2 for its TLS-1.2-only PSA config)
            want = os.environ.get("STWS_EXPECT_TLS")
            if want:
                self.assertEqual(p.events("connect")[0]["tls_version"], want)

    def test_wss_echo_large(self):
        with peers.ws_server("send:binary:%d,text:%d,await:2,close:1000" % (MIB, 70000),
                             tls=self.tls.server) as p:
            r = peers.run_stws(["echo", p.url(), "--ca", self.tls.ca])
            self.assertExit0(r, p)
            self.assertEchoed(p)
            self.assertClosed(p, 1000, client_first=False)

    def test_wss_wrong_ca(self):
        with peers.ws_server("echo", tls=self.tls.server) as p:
            r = peers.run_stws(["cat", p.url(), "--ca", self.tls.other_ca], input=b"x\n")
            self.assertCertFailure(r, p)

    def test_wss_default_trust_rejects_test_ca(self):
        with peers.ws_server("echo", tls=self.tls.server) as p:
            r = peers.run_stws(["cat", p.url()], input=b"x\n")
            self.assertFailed(r, p)
            self.assertEqual(p.events("connect"), [])

    def test_wss_wrong_host(self):
        with peers.ws_server("echo", tls=self.tls.wrong_host) as p:
            r = peers.run_stws(["cat", p.url(), "--ca", self.tls.ca], input=b"x\n")
            self.assertCertFailure(r, p)

    def test_wss_expired(self):
        with peers.ws_server("echo", tls=self.tls.expired) as p:
            r = peers.run_stws(["cat", p.url(), "--ca", self.tls.ca], input=b"x\n")
            self.assertCertFailure(r, p)

    def test_insecure_accepts_bad_certificates_and_warns(self):
        cases = [("no --ca", self.tls.server, []),
                 ("wrong CA", self.tls.server, ["--ca", self.tls.other_ca]),
                 ("expired", self.tls.expired, ["--ca", self.tls.ca])]
        for name, pair, extra in cases:
            with self.subTest(name), peers.ws_server("echo", tls=pair) as p:
                r = self.cat_round_trip(p, ["--insecure"] + extra, ["anyway"])
                self.assertEqual(r.stdout, b"anyway\n")
                self.assertRegex(r.stderr, re.compile("insecure|warning", re.I),
                                 "--insecure must warn on stderr\n" + r.describe())

    # ---- proxy ----------------------------------------------------------------------------

    def assertTunnelled(self, px, p):
        # (wait_log fails the test, with the log, if no such line comes)
        px.wait_log(r"CONNECT 127\.0\.0\.1:%d HTTP" % p.port, timeout=10)

    def test_proxy_ws(self):
        with peers.tinyproxy() as px, peers.ws_server("echo") as p:
            r = self.cat_round_trip(p, ["--proxy", px.url], ["via", "proxy"])
            self.assertEqual(r.stdout, b"via\nproxy\n")
            self.assertTunnelled(px, p)

    def test_proxy_wss(self):
        with peers.tinyproxy() as px, peers.ws_server("echo", tls=self.tls.server) as p:
            r = self.cat_round_trip(p, ["--ca", self.tls.ca, "--proxy", px.url], ["tls via proxy"])
            self.assertEqual(r.stdout, b"tls via proxy\n")
            self.assertTunnelled(px, p)

    def test_proxy_wss_still_verifies(self):
        with peers.tinyproxy() as px, peers.ws_server("echo", tls=self.tls.wrong_host) as p:
            r = peers.run_stws(["cat", p.url(), "--ca", self.tls.ca, "--proxy", px.url],
                               input=b"x\n")
            self.assertCertFailure(r, p)

    def test_proxy_basic_auth(self):
        with peers.tinyproxy(auth=("stws", "s3cret")) as px:
            with peers.ws_server("echo") as p:
                r = self.cat_round_trip(p, ["--proxy", px.url], ["authorised"])
                self.assertEqual(r.stdout, b"authorised\n")
                self.assertTunnelled(px, p)
            with peers.ws_server("echo", tls=self.tls.server) as p:
                r = self.cat_round_trip(p, ["--ca", self.tls.ca, "--proxy", px.url],
                                        ["authorised tls"])
                self.assertEqual(r.stdout, b"authorised tls\n")
            with peers.ws_server("echo") as p:
                for name, url in (("no credentials", px.url_noauth),
                                  ("wrong password", "http://stws:wrong@127.0.0.1:%d" % px.port)):
                    with self.subTest(name):
                        r = peers.run_stws(["cat", p.url(), "--proxy", url, "--timeout", "10"],
                                           input=b"x\n")
                        self.assertFailed(r, p)
                self.assertEqual(p.events("connect"), [], "the proxy must not have let stws through")

    def test_proxy_cannot_reach_target(self):
        port = peers.free_port()
        with peers.tinyproxy() as px:
            r = peers.run_stws(["cat", "ws://127.0.0.1:%d/" % port, "--proxy", px.url,
                                "--timeout", "10"], input=b"x\n")
            self.assertFailed(r)
            px.wait_log(r"CONNECT 127\.0\.0\.1:%d HTTP" % port, timeout=10)

    # ---- usage -------------------------------------------------------------------------------

    def test_usage_errors_exit_2(self):
        cases = [[], ["echo"], ["cat"], ["echo", "not a url"], ["cat", "http://127.0.0.1:1/"],
                 ["cat", "ws://"], ["frobnicate", "ws://127.0.0.1:1/"],
                 ["cat", "ws://127.0.0.1:1/", "--no-such-option"]]
        for args in cases:
            with self.subTest(args=args):
                r = peers.run_stws(args, input=b"", timeout=30)
                self.assertEqual(r.status, 2, "usage error must exit 2\n" + r.describe())
                self.assertTrue(r.stderr.strip(), "usage error needs a message\n" + r.describe())
                self.assertEqual(r.stdout, b"")


if __name__ == "__main__":
    unittest.main(verbosity=2)
