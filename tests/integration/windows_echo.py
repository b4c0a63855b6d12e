#!/usr/bin/python3
"""The Windows build against real peers: $STWS_WIN_BUILD/echo_client.exe
(examples/echo_client.c built with mingw-w64) runs under wine and talks to a
python-websockets echo server (ws_peer.py) on 127.0.0.1 of this Linux machine;
wine processes share the host's loopback.  Run by tools/test-windows.sh, which
sets up WINEPREFIX; not a test_*.py, so `make check` on Linux does not run it.

Covered on Winsock: non-blocking connect and its completion, partial writes of
a 1 MiB message, reads, the closing handshake; mbedTLS 3.6.6 on Windows with
the default random source (masks, keys, TLS); chain and host verification
against a CA file; a refused connect reported as a connect failure, not as the
connect timer.  And the Stream client (examples/stream_events.c) against
tools/mock_coordinator.py: a JWT minted with the Windows wall clock (the mock
refuses one issued more than 30 s ago or in the future), auth, events.
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402

RUN_TIMEOUT = 180  # wine start-up and a 1 MiB echo on a loaded 2-core machine


def expected_messages():
    """(type, bytes) of the six messages echo_client.c sends (its fill())."""
    sizes = [0, 125, 126, 70000, 1 << 20, 3]
    out = []
    for k, n in enumerate(sizes):
        if k == 5:
            out.append(("text", b"bye"))
        elif k == 4:
            out.append(("binary", bytes((i * 31 + k) & 0xFF for i in range(n))))
        else:
            out.append(("text", bytes(ord("a") + (i + k) % 26 for i in range(n))))
    return out


class WindowsEchoTest(unittest.TestCase):
    maxDiff = 4000

    @classmethod
    def setUpClass(cls):
        build = os.environ.get("STWS_WIN_BUILD", "build/win")
        cls.exe = os.path.join(build, "echo_client.exe")
        cls.events_exe = os.path.join(build, "stream_events.exe")
        for exe in (cls.exe, cls.events_exe):
            if not os.path.isfile(exe):
                raise AssertionError("%s is missing (make test-windows builds it)" % exe)
        cls.tmp = tempfile.TemporaryDirectory()
        cls.tls = peers.tls_material(cls.tmp.name)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def run_client(self, *args, exe=None, env=None):
        r = subprocess.run(["wine", exe or self.exe] + list(args), stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=RUN_TIMEOUT, env=env)
        return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")

    def check_echo(self, peer, status, out, err):
        self.assertEqual(status, 0, "echo_client failed:\n%s\n%s\n%s" % (out, err, peer.diagnostics()))
        closed = peer.wait_closed()
        self.assertEqual((closed["code"], closed["reason"], closed["client_first"]), (1000, "done", True))
        want = [(t, len(b), hashlib.sha256(b).hexdigest()) for t, b in expected_messages()]
        got = [(e["type"], e["len"], e["sha256"]) for e in peer.messages(conn=1)]
        self.assertEqual(got, want)  # what the server received, unmasked, byte for byte
        self.assertEqual(out.splitlines()[-1], "closed 1000")

    def test_echo_plain(self):
        with peers.ws_server("echo") as peer:
            self.check_echo(peer, *self.run_client(peer.url("/")))

    def test_echo_tls_verified(self):
        with peers.ws_server("echo", tls=self.tls.server) as peer:
            self.check_echo(peer, *self.run_client(peer.url("/"), self.tls.ca))

    def test_echo_by_host_name(self):
        # "localhost" is not numeric: the default resolver looks it up on a
        # helper thread and the connection waits on the notify socket pair
        # (select() on Windows) until the answer is in
        with peers.ws_server("echo") as peer:
            url = peer.url("/").replace("127.0.0.1", "localhost")
            self.check_echo(peer, *self.run_client(url))

    def test_tls_unknown_ca_is_refused(self):
        with peers.ws_server("echo", tls=self.tls.server) as peer:
            status, out, err = self.run_client(peer.url("/"), self.tls.other_ca)
            self.assertEqual(status, 1, out + err)
            self.assertIn("certificate", err)
            self.assertEqual(peer.messages(), [])

    def test_refused_connect(self):
        port = peers.free_port()  # nothing listens there any more
        status, out, err = self.run_client("ws://127.0.0.1:%d/" % port)
        self.assertEqual(status, 1, out + err)
        self.assertIn("TCP connect failed", err)  # STWS_ERR_CONNECT, not the 30 s timer
        # the detail names the address and Winsock's own code and text
        # (WSAECONNREFUSED; strerror() would say "Unknown error")
        self.assertIn("127.0.0.1:%d: " % port, err)
        self.assertIn("(errno 10061)", err)
        self.assertNotIn("Unknown error", err)
        self.assertNotIn("open", out)

    def test_stream_client_events(self):
        args = ["--api-key", "key-w", "--secret", "secret-w", "--expire-after", "30",
                "--events-per-second", "50"]
        with peers.mock_coordinator(*args) as m:
            env = dict(os.environ, STREAM_WS_URL=m.url(), STREAM_API_KEY="key-w",
                       STREAM_API_SECRET="secret-w", STREAM_USER_ID="win-user")
            status, out, err = self.run_client("5", exe=self.events_exe, env=env)
            self.assertEqual(status, 0, out + err + "\n" + m.diagnostics())
            types = [json.loads(line)["type"] for line in out.splitlines()]
            self.assertEqual(len(types), 5, out)
            # the first connection authenticates: a stale or future iat would be code 40/42 here
            self.assertEqual(types[0], "connection.ok", out)
            self.assertNotIn("connection.error", types, out)
            m.wait_log(r"conn 1: open /api/v2/connect client='stream-ws-c-v[\d.]+\|os=windows'")
            m.wait_log(r"conn 1: connection.ok user='win-user'")


if __name__ == "__main__":
    unittest.main(verbosity=2)
