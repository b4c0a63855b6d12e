"""Tests of tools/mock_coordinator.py, the local mock of Stream's coordinator
(docs/PROTOCOL.md), driven by a python-websockets client and, where the frame
layout matters, by a raw socket client.

Every test starts the mock as a subprocess (its own process group) on
127.0.0.1 port 0, reads its "PORT <n>" line, and kills it on cleanup, also when
the test failed.  Waits are on messages, closes or process exits, each with a
bounded timeout; the only timed waits are the ones that check for silence.

Run: /usr/bin/python3 tests/integration/test_mock_coordinator.py
"""

import asyncio
import base64
import hashlib
import hmac
import json
import os
import queue
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatusCode

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PYTHON = "/usr/bin/python3"
MOCK = os.path.join(REPO, "tools", "mock_coordinator.py")

SECRET = "t3st-s3cr3t-never-logged"
API_KEY = "test-api-key"
STARTUP_TIMEOUT = 15.0
STEP_TIMEOUT = 5.0      # one message, one close
TEST_TIMEOUT = 30.0     # one test's client coroutine
RFC3339_NS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z")
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
ALL_EVENT_TYPES = {"message.new", "typing.start", "reaction.new", "call.created",
                   "feeds.activity.added"}
CHAT_TYPES = {"message.new", "typing.start", "reaction.new"}


# --------------------------------------------------------------------------
# JWT

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def compact(obj, sort_keys=False):
    return json.dumps(obj, separators=(",", ":"), sort_keys=sort_keys)


def mint(claims, secret=SECRET):
    header = b64url(compact({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(compact(claims, sort_keys=True).encode())
    signing_input = (header + "." + payload).encode()
    sig = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return header + "." + payload + "." + b64url(sig)


def user_token(user_id="alice", **claims):
    claims.setdefault("iat", int(time.time()) - 5)
    claims["user_id"] = user_id
    return mint(claims)


def auth_message(token, user_id="alice", products=None, **details):
    msg = {"token": token, "user_details": dict(id=user_id, **details)}
    if products is not None:
        msg["products"] = products
    return compact(msg)


# --------------------------------------------------------------------------
# The mock as a subprocess

class MockProcess:
    def __init__(self, args):
        cmd = [PYTHON, MOCK, "--host", "127.0.0.1", "--port", "0",
               "--secret", SECRET, "--api-key", API_KEY] + list(args)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True)
        self.stdout = queue.Queue()
        self.stderr_lines = []
        self.stderr_done = threading.Event()
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        threading.Thread(target=self._pump_stderr, daemon=True).start()
        try:
            self.port_line = self.stdout.get(timeout=STARTUP_TIMEOUT)
        except queue.Empty:
            self.kill()
            raise AssertionError("no PORT line; stderr: %s" % self.stderr())
        m = re.fullmatch(r"PORT (\d+)\n", self.port_line or "")
        if not m:
            self.kill()
            raise AssertionError("bad PORT line %r; stderr: %s" % (self.port_line, self.stderr()))
        self.port = int(m.group(1))

    def _pump_stdout(self):
        for line in iter(self.proc.stdout.readline, b""):
            self.stdout.put(line.decode("utf-8", "replace"))
        self.stdout.put(None)

    def _pump_stderr(self):
        for line in iter(self.proc.stderr.readline, b""):
            self.stderr_lines.append(line.decode("utf-8", "replace"))
        self.stderr_done.set()

    def stderr(self):
        return "".join(self.stderr_lines)

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout=10.0):
        """Exit status; the stderr pump has finished too."""
        rc = self.proc.wait(timeout=timeout)
        self.stderr_done.wait(timeout)
        return rc

    def terminate(self, timeout=10.0):
        self.signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def stats(self):
        self.stderr_done.wait(10)
        lines = [ln for ln in self.stderr_lines if ln.startswith("{")]
        assert lines, "no stats line; stderr: %s" % self.stderr()
        assert self.stderr_lines[-1] is lines[-1], "stats line is not the last line"
        return json.loads(lines[-1])

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(timeout=30)
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()


# --------------------------------------------------------------------------
# Clients

def ws_url(port, path="/api/v2/connect", api_key=API_KEY):
    query = "stream-auth-type=jwt&X-Stream-Client=stream-ws-c-test%7Cos%3Dlinux"
    if api_key is not None:
        query = "api_key=%s&%s" % (api_key, query)
    return "ws://127.0.0.1:%d%s?%s" % (port, path, query)


async def connect(port, **kw):
    return await websockets.connect(ws_url(port, **kw), max_size=None, ping_interval=None,
                                    close_timeout=2, open_timeout=STEP_TIMEOUT,
                                    compression=None)


async def recv(ws, timeout=STEP_TIMEOUT):
    return await asyncio.wait_for(ws.recv(), timeout)


async def recv_json(ws, timeout=STEP_TIMEOUT):
    return json.loads(await recv(ws, timeout))


async def wait_closed(ws, timeout=STEP_TIMEOUT):
    await asyncio.wait_for(ws.wait_closed(), timeout)


async def open_session(port, token=None, user_id="alice", products=None, **details):
    """Connect and authenticate; returns (ws, connection.ok object)."""
    ws = await connect(port)
    await ws.send(auth_message(token or user_token(user_id), user_id, products, **details))
    ok = await recv_json(ws)
    assert ok["type"] == "connection.ok", ok
    return ws, ok


def run(coro, timeout=TEST_TIMEOUT):
    return asyncio.run(asyncio.wait_for(coro, timeout))


class RawClient:
    """A blocking frame-level WebSocket client (frames as the mock wrote them)."""

    def __init__(self, port, path="/api/v2/connect?api_key=" + API_KEY):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=STEP_TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n" % (path, port, key)).encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        self.status_line = head.split(b"\r\n")[0].decode()
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        if " 101 " in self.status_line + " ":
            assert ("sec-websocket-accept: " + accept).lower().encode() in head.lower(), head

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        self.buf += data

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send_frame(self, opcode, payload, fin=True):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", (0x80 if fin else 0) | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", (0x80 if fin else 0) | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", (0x80 if fin else 0) | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def read_frame(self):
        b0, b1 = self._take(2)
        assert not b1 & 0x80, "server frames must not be masked"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._take(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._take(8))[0]
        return bool(b0 & 0x80), b0 & 0x0F, self._take(n)

    def close(self):
        self.sock.close()


# --------------------------------------------------------------------------

class MockCoordinatorTest(unittest.TestCase):
    maxDiff = 4000

    def start(self, *args):
        mock = MockProcess(args)
        self.addCleanup(self.check_log, mock)
        self.addCleanup(mock.kill)
        return mock

    def check_log(self, mock):
        """After the mock was killed: its log has no errors of its own."""
        log = mock.stderr()
        for bad in ("internal error", "Traceback", "websockets:"):
            self.assertNotIn(bad, log)

    # -- shapes -----------------------------------------------------------

    def assert_connection_error(self, text, code, status, message=None):
        self.assertTrue(text.startswith('{"type":"connection.error","connection_id":"",'
                                        '"created_at":"'), text)
        msg = json.loads(text)
        self.assertEqual(list(msg), ["type", "connection_id", "created_at", "error"])
        self.assertEqual(msg["type"], "connection.error")
        self.assertEqual(msg["connection_id"], "")
        self.assertRegex(msg["created_at"], RFC3339_NS)
        err = msg["error"]
        self.assertEqual(list(err), ["code", "message", "StatusCode", "duration",
                                     "more_info", "details"])
        self.assertEqual(err["code"], code, text)
        self.assertEqual(err["StatusCode"], status)
        self.assertIsInstance(err["message"], str)
        if message is not None:
            self.assertEqual(err["message"], message)
        self.assertEqual((err["duration"], err["more_info"], err["details"]), ("", "", []))

    def expect_auth_error(self, mock, auth_text, code, status=401, message=None, **conn_kw):
        async def body():
            ws = await connect(mock.port, **conn_kw)
            if auth_text is not None:
                await ws.send(auth_text)
            text = await recv(ws)
            with self.assertRaises(ConnectionClosed):
                await recv(ws)
            await wait_closed(ws)
            self.assertIsNotNone(ws.close_rcvd, "the mock sent no close frame")
            self.assertEqual(ws.close_rcvd.code, 1000)
            self.assertEqual(ws.close_code, 1000)
            return text
        text = run(body())
        self.assert_connection_error(text, code, status, message)
        return json.loads(text)

    # -- startup, success -------------------------------------------------

    def test_help_documents_options(self):
        out = subprocess.run([PYTHON, MOCK, "--help"], capture_output=True, text=True,
                             timeout=STARTUP_TIMEOUT)
        self.assertEqual(out.returncode, 0, out.stderr)
        for option in ("--host", "--port", "--api-key", "--secret", "--auth-timeout",
                       "--iat-leeway", "--me-padding", "--fragment", "--health-interval",
                       "--events-per-second", "--events", "--record", "--drop-every",
                       "--drop-close-code", "--stall-after", "--close-with", "--expire-after",
                       "--refuse-first", "--max-connections", "PORT", "SIGUSR1", "SIGTERM"):
            self.assertIn(option, out.stdout)

    def test_port_line_and_mint_known_answers(self):
        # The test's own JWT minting agrees with PROTOCOL.md section 7.
        self.assertEqual(
            mint({"user_id": "tommaso"}, "secret"),
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VyX2lkIjoidG9tbWFzbyJ9."
            "v-x-jt3ZnBXXbQ0GoWloIZtVnat2IE74U1a4Yuxd63M")
        mock = self.start()
        self.assertRegex(mock.port_line, r"^PORT [1-9]\d*\n$")
        self.assertTrue(mock.stdout.empty(), "more than one stdout line")
        with socket.create_connection(("127.0.0.1", mock.port), timeout=STEP_TIMEOUT):
            pass

    def test_connection_ok_fresh_ids_and_me(self):
        mock = self.start()

        async def body():
            ids = []
            for _ in range(2):
                ws, ok = await open_session(
                    mock.port, name="Alice Liddell", image="https://example.com/a.png",
                    custom={"color": "red", "level": 7})
                ids.append(ok["connection_id"])
                self.assertEqual(list(ok), ["type", "connection_id", "created_at", "me"])
                self.assertRegex(ok["created_at"], RFC3339_NS)
                me = ok["me"]
                for field in ("id", "name", "image", "role", "created_at", "updated_at",
                              "last_active", "online", "invisible", "language", "teams",
                              "devices", "mutes", "channel_mutes", "unread_count",
                              "total_unread_count", "unread_channels"):
                    self.assertIn(field, me)
                self.assertEqual((me["id"], me["name"], me["image"]),
                                 ("alice", "Alice Liddell", "https://example.com/a.png"))
                self.assertEqual((me["color"], me["level"]), ("red", 7))
                self.assertEqual(me["custom"], {"color": "red", "level": 7})
                self.assertIs(me["online"], True)
                await ws.close()
            return ids
        ids = run(body())
        for cid in ids:
            self.assertRegex(cid, UUID_RE)
        self.assertNotEqual(ids[0], ids[1])
        self.assertEqual(mock.terminate(), 0)
        stats = mock.stats()
        self.assertEqual((stats["connections"], stats["connections_ok"]), (2, 2))

    def test_video_endpoint_and_protocol_known_tokens(self):
        mock = self.start("--secret", "secret")  # the later --secret wins
        tommaso = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VyX2lkIjoidG9tbWFzbyJ9."
                   "v-x-jt3ZnBXXbQ0GoWloIZtVnat2IE74U1a4Yuxd63M")

        async def body():
            ws = await connect(mock.port, path="/video/connect")
            await ws.send(auth_message(tommaso, "tommaso"))
            ok = await recv_json(ws)
            await ws.close()
            return ok
        self.assertEqual(run(body())["me"]["id"], "tommaso")
        expired = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjE1NjY5NDEyNzIsImlhdCI6MTU2"
                   "Njk0MTI3MiwidXNlcl9pZCI6InRvbW1hc28ifQ.3HY2O_7o5ZjZ-6KCXLzyPpHZOlNEDy6_m3i"
                   "Nb5DKAMY")
        self.expect_auth_error(mock, auth_message(expired, "tommaso"), 40)
        server = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzZXJ2ZXIiOnRydWV9."
                  "DHnfQolWsEGFcTR7ZwVBbIVUFAvxzDJXzB6UlyU-7JQ")
        self.expect_auth_error(mock, auth_message(server, "tommaso"), 43)

    # -- errors -----------------------------------------------------------

    def test_bad_signature_is_43(self):
        mock = self.start()
        token = mint({"user_id": "alice"}, secret="wrong")
        self.expect_auth_error(mock, auth_message(token), 43, 401,
                               "JWTAuth error: signature is not valid")
        self.expect_auth_error(mock, auth_message("not-a.jwt"), 43, 401,
                               "JWTAuth error: signature is not valid")
        self.expect_auth_error(mock, auth_message("a.b.c.d"), 43)

    def test_expired_is_40(self):
        mock = self.start()
        token = user_token(exp=int(time.time()) - 10, iat=int(time.time()) - 100)
        self.expect_auth_error(mock, auth_message(token), 40, 401,
                               "JWTAuth error: token has expired")

    def test_iat_in_future_is_42_within_leeway_ok(self):
        mock = self.start("--iat-leeway", "2")
        token = user_token(iat=int(time.time()) + 60)
        self.expect_auth_error(mock, auth_message(token), 42, 401)

        async def body():
            ws, _ = await open_session(mock.port, token=user_token(iat=int(time.time())))
            await ws.close()
        run(body())

    def test_nbf_in_future_is_41(self):
        mock = self.start()
        self.expect_auth_error(mock, auth_message(user_token(nbf=int(time.time()) + 60)), 41)

    def test_user_id_mismatch_is_43(self):
        mock = self.start()
        self.expect_auth_error(mock, auth_message(user_token("mallory"), "alice"), 43, 401,
                               "JWTAuth error: token user_id does not match user_details.id")

    def test_input_errors_are_4(self):
        mock = self.start()
        self.expect_auth_error(mock, compact({"user_details": {"id": "alice"}}), 4, 400)
        self.expect_auth_error(mock, compact({"token": user_token()}), 4, 400)
        self.expect_auth_error(mock, '{"token":"x",', 4, 400)
        self.expect_auth_error(mock, auth_message(user_token(), name=None), 4, 400)
        self.expect_auth_error(mock, auth_message(user_token(), products=["chat", "music"]),
                               4, 400)

    def test_unknown_api_key_is_2(self):
        mock = self.start()
        # The error arrives without waiting for the auth message.
        self.expect_auth_error(mock, None, 2, 401, "api_key not found", api_key="nope")
        self.expect_auth_error(mock, None, 2, 401, "api_key not found", api_key=None)

    def test_unknown_path_is_404(self):
        mock = self.start()

        async def body():
            with self.assertRaises(InvalidStatusCode) as cm:
                await connect(mock.port, path="/connect")
            self.assertEqual(cm.exception.status_code, 404)
        run(body())

    def test_auth_timeout_closes_1000(self):
        mock = self.start("--auth-timeout", "0.5")

        async def body():
            ws = await connect(mock.port)
            with self.assertRaises(ConnectionClosed):
                await recv(ws)
            self.assertEqual(ws.close_rcvd.code, 1000)
            self.assertEqual(ws.close_rcvd.reason, "auth timeout")
        run(body())

    def test_expire_after(self):
        mock = self.start("--expire-after", "5")
        old = user_token(iat=int(time.time()) - 30)
        self.expect_auth_error(mock, auth_message(old), 40)

        async def body():
            ws, _ = await open_session(mock.port, token=user_token(iat=int(time.time()) - 1))
            await ws.close()
        run(body())

    def test_fail_first(self):
        mock = self.start("--fail-first", "1", "--fail-code", "-1", "--fail-status", "500")
        self.expect_auth_error(mock, auth_message(user_token()), -1, 500)

        async def body():
            ws, _ = await open_session(mock.port)
            await ws.close()
        run(body())

    # -- health checks ----------------------------------------------------

    def test_periodic_health_checks(self):
        mock = self.start("--health-interval", "0.3")

        async def body():
            ws, ok = await open_session(mock.port)
            times = []
            for _ in range(3):
                msg = await recv_json(ws, 3)
                times.append(time.monotonic())
                self.assertEqual(list(msg), ["type", "connection_id", "created_at", "custom"])
                self.assertEqual((msg["type"], msg["connection_id"], msg["custom"]),
                                 ("health.check", ok["connection_id"], {}))
                self.assertRegex(msg["created_at"], RFC3339_NS)
            await ws.close()
            return times
        times = run(body())
        for a, b in zip(times, times[1:]):
            self.assertGreater(b - a, 0.15)

    def test_health_check_answer_array_form_only(self):
        mock = self.start("--health-interval", "0")

        async def body():
            ws, ok = await open_session(mock.port)
            cid = ok["connection_id"]
            await ws.send(compact({"type": "health.check", "client_id": cid}))  # ignored
            await ws.send(compact([{"type": "health.check", "client_id": cid}]))
            reply = await recv_json(ws)
            self.assertEqual((reply["type"], reply["connection_id"]), ("health.check", cid))
            await ws.close()
        run(body())
        self.assertEqual(mock.terminate(), 0)
        stats = mock.stats()
        self.assertEqual(stats["client_health_checks"], 1)
        self.assertEqual(stats["health_checks_sent"], 1)
        self.assertEqual(stats["client_messages"], 3)

    def test_ws_ping_counts_pongs(self):
        mock = self.start("--ws-ping-interval", "0.2")
        raw = RawClient(mock.port)
        self.addCleanup(raw.close)
        raw.send_frame(1, auth_message(user_token()).encode())
        fin, opcode, payload = raw.read_frame()
        self.assertEqual((fin, opcode), (True, 1))
        fin, opcode, payload = raw.read_frame()
        self.assertEqual(opcode, 9, "expected a ping")
        raw.send_frame(10, payload)
        fin, opcode, _ = raw.read_frame()   # the next ping: the pong was processed
        self.assertEqual(opcode, 9)
        raw.close()
        self.assertEqual(mock.terminate(), 0)
        self.assertGreaterEqual(mock.stats()["pongs_received"], 1)

    # -- events -----------------------------------------------------------

    def check_event(self, text, conn_seq):
        self.assertGreaterEqual(len(text.encode()), 200)
        self.assertLessEqual(len(text.encode()), 2000)
        ev = json.loads(text)
        self.assertEqual(ev["seq"], conn_seq)
        self.assertIsInstance(ev["global_seq"], int)
        self.assertRegex(ev["created_at"], RFC3339_NS)
        if ev["type"] == "message.new":
            for field in ("cid", "channel_type", "channel_id", "message", "user",
                          "watcher_count"):
                self.assertIn(field, ev)
            self.assertEqual(ev["cid"], ev["channel_type"] + ":" + ev["channel_id"])
            for field in ("id", "text", "user", "created_at"):
                self.assertIn(field, ev["message"])
            self.assertIn("name", ev["message"]["user"])
        elif ev["type"] == "call.created":
            self.assertEqual(ev["call_cid"], ev["call"]["cid"])
        elif ev["type"] == "feeds.activity.added":
            self.assertIn("text", ev["activity"])
        elif ev["type"] in ("typing.start", "reaction.new"):
            self.assertIn("user", ev)
        return ev

    def test_events_sequence_and_limit(self):
        mock = self.start("--events-per-second", "300", "--events", "60",
                          "--health-interval", "0")

        async def body():
            ws, _ = await open_session(mock.port)
            texts = [await recv(ws) for _ in range(60)]
            await ws.close()
            return texts
        texts = run(body())
        events = [self.check_event(t, i + 1) for i, t in enumerate(texts)]
        gseqs = [e["global_seq"] for e in events]
        self.assertEqual(gseqs, sorted(set(gseqs)))
        self.assertTrue({e["type"] for e in events} <= ALL_EVENT_TYPES)
        self.assertGreaterEqual(len({e["type"] for e in events}), 3)
        non_ascii = [t for t in texts if any(ord(c) > 127 for c in t)]
        self.assertTrue(1 <= len(non_ascii) <= 20, len(non_ascii))
        self.assertEqual(mock.terminate(), 0)
        self.assertEqual(mock.stats()["events_sent"], 60)

    def test_events_filtered_by_products(self):
        mock = self.start("--events-per-second", "300", "--events", "30",
                          "--health-interval", "0")

        async def session(products):
            ws, _ = await open_session(mock.port, products=products)
            texts = [await recv(ws) for _ in range(30)]
            await ws.close()
            return [self.check_event(t, i + 1) for i, t in enumerate(texts)]

        async def body():
            return await asyncio.gather(session(["video"]), session(["chat", "feeds"]))
        video, chat_feeds = run(body())
        self.assertEqual({e["type"] for e in video}, {"call.created"})
        self.assertTrue({e["type"] for e in chat_feeds} <= CHAT_TYPES | {"feeds.activity.added"})
        # global_seq is shared by the two connections.
        all_g = [e["global_seq"] for e in video + chat_feeds]
        self.assertEqual(len(set(all_g)), 60)

        async def none():
            ws, _ = await open_session(mock.port, products=[])
            await ws.close()
        run(none())
        self.assertEqual(mock.terminate(), 0)
        self.assertEqual(mock.stats()["events_sent"], 60)

    # -- large and fragmented messages -------------------------------------

    def test_me_padding_large_connection_ok(self):
        mock = self.start("--me-padding", "100000")

        async def body():
            ws = await connect(mock.port)
            await ws.send(auth_message(user_token()))
            text = await recv(ws)
            await ws.close()
            return text
        text = run(body())
        self.assertGreater(len(text.encode()), 100000)
        self.assertEqual(json.loads(text)["type"], "connection.ok")

    def test_fragmented_connection_ok_frames(self):
        size = 997
        mock = self.start("--me-padding", "20000", "--fragment", str(size))
        raw = RawClient(mock.port)
        self.addCleanup(raw.close)
        self.assertIn(" 101 ", raw.status_line + " ")
        raw.send_frame(1, auth_message(user_token()).encode())
        frames = []
        while True:
            frame = raw.read_frame()
            frames.append(frame)
            if frame[0]:
                break
        data = b"".join(f[2] for f in frames)
        self.assertEqual([f[1] for f in frames], [1] + [0] * (len(frames) - 1))
        self.assertEqual(len(frames), -(-len(data) // size))
        self.assertTrue(all(len(f[2]) == size for f in frames[:-1]))
        ok = json.loads(data.decode("utf-8"))
        self.assertEqual(ok["type"], "connection.ok")
        self.assertGreater(len(data), 20000)

        def decodes(b):
            try:
                b.decode("utf-8")
                return True
            except UnicodeDecodeError:
                return False
        self.assertFalse(all(decodes(f[2]) for f in frames),
                         "no frame boundary inside a UTF-8 sequence")

    def test_fragmented_reassembled_by_client(self):
        mock = self.start("--me-padding", "100000", "--fragment", "4096")

        async def body():
            ws = await connect(mock.port)
            await ws.send(auth_message(user_token()))
            text = await recv(ws)
            await ws.close()
            return text
        text = run(body())
        self.assertGreater(len(text.encode()), 100000)
        self.assertEqual(json.loads(text)["type"], "connection.ok")

    # -- faults -----------------------------------------------------------

    def test_drop_every_abrupt(self):
        mock = self.start("--drop-every", "0.3", "--health-interval", "0")

        async def body():
            for _ in range(2):
                ws, _ = await open_session(mock.port)
                with self.assertRaises(ConnectionClosed):
                    await recv(ws)
                await wait_closed(ws)
                self.assertIsNone(ws.close_rcvd, "a close frame arrived")
                self.assertEqual(ws.close_code, 1006)
        run(body())

    def test_drop_close_code(self):
        mock = self.start("--drop-every", "0.2", "--drop-close-code", "1011")

        async def body():
            ws, _ = await open_session(mock.port)
            with self.assertRaises(ConnectionClosed):
                await recv(ws)
            await wait_closed(ws)
            self.assertEqual(ws.close_rcvd.code, 1011)
        run(body())

    def test_close_with(self):
        mock = self.start("--close-with", "4001")

        async def body():
            ws, _ = await open_session(mock.port)
            with self.assertRaises(ConnectionClosed):
                await recv(ws)
            await wait_closed(ws)
            self.assertEqual(ws.close_rcvd.code, 4001)
        run(body())

    def test_refuse_first_503_then_works(self):
        mock = self.start("--refuse-first", "2")

        async def body():
            for _ in range(2):
                with self.assertRaises(InvalidStatusCode) as cm:
                    await connect(mock.port)
                self.assertEqual(cm.exception.status_code, 503)
            ws, _ = await open_session(mock.port)
            await ws.close()
        run(body())
        self.assertEqual(mock.terminate(), 0)
        stats = mock.stats()
        self.assertEqual((stats["http_503"], stats["connections"]), (2, 1))

    def test_stall_after_stops_health_checks_and_reading(self):
        mock = self.start("--health-interval", "0.2", "--stall-after", "0.7",
                          "--max-connections", "1")

        async def body():
            ws, ok = await open_session(mock.port)
            got = 0
            while True:   # health checks until the stall: then silence for 1 s
                try:
                    msg = await recv_json(ws, 1.0)
                except asyncio.TimeoutError:
                    break
                self.assertEqual(msg["type"], "health.check")
                got += 1
                self.assertLess(got, 10, "health checks never stopped")
            self.assertGreaterEqual(got, 2)
            await ws.send(compact([{"type": "health.check", "client_id": ok["connection_id"]}]))
            with self.assertRaises(asyncio.TimeoutError):
                await recv(ws, 0.6)
            pong = await ws.ping()
            with self.assertRaises(asyncio.TimeoutError):
                await asyncio.wait_for(pong, 0.5)
            self.assertFalse(ws.closed, "the stalled mock closed the socket")
            ws.transport.abort()
        run(body())
        # The mock notices the peer left, ends the connection, and exits.
        self.assertEqual(mock.wait_exit(10), 0)
        stats = mock.stats()
        self.assertEqual((stats["stalls"], stats["client_health_checks"]), (1, 0))

    def test_silent_auth_never_answers(self):
        mock = self.start("--silent-auth", "--max-connections", "1")

        async def body():
            ws = await connect(mock.port)
            await ws.send(auth_message(user_token()))
            with self.assertRaises(asyncio.TimeoutError):
                await recv(ws, 0.8)
            ws.transport.abort()
        run(body())
        self.assertEqual(mock.wait_exit(10), 0)

    # -- recording, logs, control ------------------------------------------

    def test_record_redacts_token(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        path = os.path.join(tmp.name, "rec.jsonl")
        mock = self.start("--record", path, "--health-interval", "0")
        token = user_token()

        async def body():
            ws, ok = await open_session(mock.port, token=token, name="Zoë")
            cid = ok["connection_id"]
            await ws.send("hello ✓ " + token)
            await ws.send(compact([{"type": "health.check", "client_id": cid}]))
            await recv_json(ws)           # the answer: everything before was read
            await ws.close()
            return cid
        cid = run(body())
        self.assertEqual(mock.terminate(), 0)
        with open(path, encoding="utf-8") as f:
            content = f.read()
        self.assertNotIn(token, content)
        lines = [json.loads(line) for line in content.splitlines()]
        self.assertEqual(len(lines), 3)
        for line in lines:
            self.assertEqual(list(line), ["conn", "connection_id", "t", "text"])
            self.assertEqual((line["conn"], line["connection_id"]), (1, cid))
        self.assertEqual([ln["t"] for ln in lines], sorted(ln["t"] for ln in lines))
        auth = json.loads(lines[0]["text"])
        self.assertEqual(auth["token"], "<redacted>")
        self.assertEqual(auth["user_details"], {"id": "alice", "name": "Zoë"})
        self.assertEqual(lines[1]["text"], "hello ✓ <redacted>")
        self.assertEqual(json.loads(lines[2]["text"]),
                         [{"type": "health.check", "client_id": cid}])
        # The logs never carry the token or the secret.
        self.assertNotIn(token, mock.stderr())
        self.assertNotIn(SECRET, mock.stderr())

    def test_sigusr1_drops_all(self):
        mock = self.start("--health-interval", "0")

        async def body():
            a, _ = await open_session(mock.port)
            b, _ = await open_session(mock.port, token=user_token("bob"), user_id="bob")
            mock.signal(signal.SIGUSR1)
            for ws in (a, b):
                await wait_closed(ws)
                self.assertIsNone(ws.close_rcvd)
                self.assertEqual(ws.close_code, 1006)
        run(body())

    def test_sigterm_closes_1001_and_exits_0(self):
        mock = self.start("--health-interval", "0")

        async def body():
            ws, _ = await open_session(mock.port)
            mock.signal(signal.SIGTERM)
            await wait_closed(ws)
            self.assertEqual(ws.close_rcvd.code, 1001)
        run(body())
        self.assertEqual(mock.wait_exit(10), 0)
        stats = mock.stats()
        for key in ("connections", "auth_failures", "events_sent", "client_messages"):
            self.assertIn(key, stats)

    def test_max_connections_exit_and_stats(self):
        mock = self.start("--max-connections", "2")
        self.expect_auth_error(mock, auth_message(mint({"user_id": "alice"}, "bad")), 43)

        async def body():
            ws, _ = await open_session(mock.port)
            await ws.close()
        run(body())
        self.assertEqual(mock.wait_exit(10), 0)
        stats = mock.stats()
        self.assertEqual(stats["connections"], 2)
        self.assertEqual(stats["connections_ok"], 1)
        self.assertEqual(stats["auth_failures"], {"43": 1})
        self.assertEqual(stats["client_messages"], 2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
