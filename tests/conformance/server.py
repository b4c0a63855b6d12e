#!/usr/bin/python3
"""Adversarial RFC 6455 test server (Python standard library only).

Listens on 127.0.0.1 with an OS-chosen port, performs the server side of the
opening handshake itself and plays one test case per connection, chosen by
the request path /case/<id>, judging the client strictly.

Used in-process by run.py.  Standalone:
    /usr/bin/python3 tests/conformance/server.py
prints the URL prefix, then one JSON line per finished connection; point a
client at ws://127.0.0.1:PORT/case/<id> (see run.py --list for the ids).
"""

import base64
import binascii
import json
import os
import selectors
import socket
import sys
import threading
import time
import traceback

sys.dont_write_bytecode = True     # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from judge import CaseFail, Conn  # noqa: E402
from wsproto import HttpError, header_values, parse_request, response, tokens  # noqa: E402

MAX_REQUEST = 16 * 1024


class Verdict:
    def __init__(self, ok, reason="", transcript=()):
        self.ok = ok
        self.reason = reason
        self.transcript = list(transcript)


class CaseRecord:
    """What happened for one case id: its connections and the verdict of the
    first (judged) one."""

    def __init__(self, case):
        self.case = case
        self.started = False          # a connection with this case's path arrived
        self.connections = 0
        self.verdict = None
        self.extra_problem = None     # e.g. a second connection
        self.followed_redirect = False
        self.done = threading.Event()
        self.wake = None              # an extra Event to set when done (run.py)
        self.key = None
        self.mask_keys = []


class CaseServer:
    def __init__(self, cases, fail_fast_wait=10.0, timeout_scale=1.0, on_verdict=None):
        self.cases = {c.id: c for c in cases}
        self.fail_fast_wait = fail_fast_wait
        self.timeout_scale = timeout_scale
        self.on_verdict = on_verdict
        self.records = {}
        self.lock = threading.Condition()
        self.pending = 0              # accepted connections whose path is not known yet
        self.seen_keys = set()
        self.active = set()
        self.threads = []
        self.listener = None
        self.port = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = False
        self._accept_thread = None

    # ---- lifecycle -----------------------------------------------------------

    def start(self):
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", 0))
        ls.listen(64)
        self.listener = ls
        self.port = ls.getsockname()[1]
        self._accept_thread = threading.Thread(target=self._accept_loop, name="accept", daemon=True)
        self._accept_thread.start()
        return self

    def stop(self):
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._accept_thread:
            self._accept_thread.join(5)
        with self.lock:
            socks = list(self.active)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in list(self.threads):
            t.join(5)
        for s in (self.listener, self._wake_r, self._wake_w):
            try:
                s.close()
            except (OSError, AttributeError):
                pass

    def _accept_loop(self):
        sel = selectors.DefaultSelector()
        sel.register(self.listener, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._stopping:
                for k, _ in sel.select():
                    if k.fileobj is self._wake_r:
                        return
                    try:
                        s, _ = self.listener.accept()
                    except OSError:
                        continue
                    with self.lock:
                        self.pending += 1
                        self.active.add(s)
                        self.threads = [t for t in self.threads if t.is_alive()]
                    t = threading.Thread(target=self._handle, args=(s,), daemon=True)
                    self.threads.append(t)
                    t.start()
        finally:
            sel.close()

    # ---- records -------------------------------------------------------------

    def expect(self, cid):
        """Register a case before its client is started (run.py)."""
        with self.lock:
            rec = CaseRecord(self.cases[cid])
            self.records[cid] = rec
            return rec

    def _identify_done(self):
        with self.lock:
            self.pending -= 1
            self.lock.notify_all()

    def wait_unidentified(self, timeout):
        """Wait until every accepted connection has shown its request path."""
        end = time.monotonic() + timeout
        with self.lock:
            while self.pending > 0:
                rem = end - time.monotonic()
                if rem <= 0:
                    return False
                self.lock.wait(rem)
        return True

    def _finish(self, rec, verdict):
        rec.verdict = verdict
        rec.done.set()
        if rec.wake is not None:
            rec.wake.set()
        with self.lock:
            self.lock.notify_all()
        if self.on_verdict:
            self.on_verdict(rec)

    # ---- one connection ------------------------------------------------------------

    def _read_request(self, s, deadline):
        buf = bytearray()
        s.settimeout(max(0.01, deadline - time.monotonic()))
        while True:
            i = buf.find(b"\r\n\r\n")
            if i >= 0:
                return bytes(buf[:i + 4]), bytes(buf[i + 4:])
            if len(buf) > MAX_REQUEST:
                raise HttpError("request head longer than %d bytes" % MAX_REQUEST)
            rem = deadline - time.monotonic()
            if rem <= 0:
                raise socket.timeout()
            s.settimeout(rem)
            d = s.recv(65536)
            if not d:
                raise HttpError("client closed the connection before finishing its request "
                                "(%d bytes received)" % len(buf))
            buf += d

    def _handle(self, s):
        identified = False
        rec = None
        try:
            start = time.monotonic()
            try:
                head, rest = self._read_request(s, start + 20 * self.timeout_scale)
            except (HttpError, OSError) as e:
                return self._unattributed("no complete upgrade request: %s" % e)
            try:
                method, target, version, headers = parse_request(head)
            except HttpError as e:
                return self._unattributed("malformed request: %s" % e)
            path = target
            redirected = False
            if path.startswith("/case/") and path.endswith("/redirected"):
                path = path[:-len("/redirected")]
                redirected = True
            cid = path[len("/case/"):] if path.startswith("/case/") else None
            with self.lock:
                rec = self.records.get(cid)
                if rec is None and cid in self.cases:
                    rec = CaseRecord(self.cases[cid])   # standalone mode
                    self.records[cid] = rec
                if rec is not None:
                    rec.connections += 1
                    first = not rec.started and not redirected
                    rec.started = True
            identified = True
            self._identify_done()
            if rec is None:
                s.sendall(response(404, "Not Found", [("Content-Length", "0")]))
                return self._unattributed("request for unknown path %r" % target)
            if redirected:
                rec.followed_redirect = True
                s.sendall(response(404, "Not Found", [("Content-Length", "0")]))
                return
            if not first:
                rec.extra_problem = "client opened %d connections for this case" % rec.connections
                s.sendall(response(503, "Service Unavailable", [("Content-Length", "0")]))
                return
            self._run_case(rec, s, method, version, headers, rest, start)
        except Exception:
            if rec is not None and not rec.done.is_set():
                self._finish(rec, Verdict(False, "judge error: " + traceback.format_exc().replace("\n", " | ")))
        finally:
            if not identified:
                self._identify_done()
            with self.lock:
                self.active.discard(s)
            try:
                s.close()
            except OSError:
                pass

    def _unattributed(self, msg):
        if self.on_verdict is None:
            return
        print(json.dumps({"case": None, "ok": False, "reason": msg}), flush=True)

    def _check_request(self, method, version, headers, port):
        if method != "GET":
            return "request method is %s, not GET" % method
        if version != "HTTP/1.1":
            return "request version is %s, not HTTP/1.1" % version
        host = header_values(headers, "host")
        if len(host) != 1:
            return "request has %d Host headers" % len(host)
        if host[0].lower() not in ("127.0.0.1:%d" % port,):
            return "Host header is %r, expected 127.0.0.1:%d" % (host[0], port)
        if "websocket" not in tokens(headers, "upgrade"):
            return "Upgrade header does not contain websocket"
        if "upgrade" not in tokens(headers, "connection"):
            return "Connection header does not contain the Upgrade token"
        keys = header_values(headers, "sec-websocket-key")
        if len(keys) != 1:
            return "request has %d Sec-WebSocket-Key headers" % len(keys)
        try:
            raw = base64.b64decode(keys[0], validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 16:
            return "Sec-WebSocket-Key %r is not the base64 of 16 bytes" % keys[0]
        if header_values(headers, "sec-websocket-version") != ["13"]:
            return "Sec-WebSocket-Version is %r, expected 13" % header_values(headers, "sec-websocket-version")
        with self.lock:
            if keys[0] in self.seen_keys:
                return "Sec-WebSocket-Key %s was already used by an earlier connection" % keys[0]
            self.seen_keys.add(keys[0])
        return None

    def _run_case(self, rec, s, method, version, headers, rest, start):
        case = rec.case
        deadline = start + case.timeout * self.timeout_scale
        key = (header_values(headers, "sec-websocket-key") or [""])[0]
        rec.key = key
        t = Conn(s, rest, case, deadline, self.fail_fast_wait, key, headers)
        problem = self._check_request(method, version, headers, self.port)
        if problem:
            t.send(response(400, "Bad Request", [("Content-Length", "0")]))
            return self._finish(rec, Verdict(False, "bad upgrade request: " + problem))
        if rest:
            return self._finish(rec, Verdict(False, "client sent %d bytes after its request, "
                                             "before the handshake response" % len(rest)))
        try:
            if case.handshake == "auto":
                t.accept()
            case.script(t)
            t.check_masks()
            verdict = Verdict(True, "", t.transcript)
        except CaseFail as e:
            verdict = Verdict(False, str(e), t.transcript)
        rec.mask_keys = t.keys
        self._finish(rec, verdict)


def main():
    from cases import all_cases

    def report(rec):
        v = rec.verdict
        print(json.dumps({"case": rec.case.id, "ok": v.ok, "reason": v.reason,
                          "expect_exit": rec.case.expect_exit}), flush=True)

    server = CaseServer(all_cases(), on_verdict=report).start()
    print("listening on ws://127.0.0.1:%d/case/<id>" % server.port, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
