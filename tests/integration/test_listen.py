"""Real-socket integration tests of the Stream client through `stws listen`
($STWS_BUILD/stws), the examples ($STWS_BUILD/examples/) and `make demo`,
against tools/mock_coordinator.py (a local mock of Stream's coordinator, see
docs/PROTOCOL.md) and, for the custom transport, a python-websockets wss echo
peer.

Everything listens on 127.0.0.1 with ports the OS chose.  Every process runs
in its own process group and is killed when its context ends, also when the
test failed.  Waits are on process output or on the mock's --record file, each
with a generous bound; no sleep is used to synchronise (the only sleeps are
the polling interval of a bounded wait on a file, and the pause between two
attempts to bind a port again).

What the tests assume of `stws listen` (tools/stws.c):
  stdout   every server event JSON exactly as received, one line per event
  stderr   lifecycle lines "stws: connected|disconnected|reconnecting|
           reconnected|fatal|closed ..."
  stdin    each line is sent as a text message through the client's send
           queue (kept across reconnects)
  exit     0 normal end (server close 1000, --max-events, SIGTERM/SIGINT),
           3 fatal auth error, 4 attempts exhausted, 2 usage error, 1 otherwise

Run: STWS_BUILD=build /usr/bin/python3 tests/integration/test_listen.py
"""

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402

API_KEY = "listen-test-key"
SECRET = "listen-test-s3cret-never-logged"
USER = "alice"
WAIT = 30.0          # bound for one expected line / record entry
RUN_TIMEOUT = 60.0   # bound for one whole process run
POLL = 0.02          # polling interval of a bounded wait on the record file
EVENT_TYPES = {"message.new", "typing.start", "reaction.new", "call.created",
               "feeds.activity.added"}


# --------------------------------------------------------------------------
# Helpers

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def mint(claims, secret=SECRET):
    """An HS256 JWT (independent of the C minter)."""
    compact = lambda o, **kw: json.dumps(o, separators=(",", ":"), **kw)  # noqa: E731
    signing_input = (b64url(compact({"alg": "HS256", "typ": "JWT"}).encode()) + "."
                     + b64url(compact(claims, sort_keys=True).encode()))
    sig = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(sig)


def mock_dumps(obj):
    """The mock's serialisation: compact, UTF-8 (not ASCII-escaped)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def clean_env(**extra):
    """The environment without STREAM_* variables, plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_")}
    env.update(extra)
    return env


def build_dir():
    b = os.environ.get("STWS_BUILD", "build")
    return b if os.path.isabs(b) else os.path.join(peers.REPO, b)


def example_path(name):
    p = os.path.join(build_dir(), "examples", name)
    if not os.access(p, os.X_OK):
        raise AssertionError("%s is missing: build the examples first (make all BUILD=%s)"
                             % (p, os.environ.get("STWS_BUILD", "build")))
    return p


def check_sanitizer(what, stderr_text):
    if peers.SANITIZER_RX.search(stderr_text):
        raise AssertionError("sanitizer report from %s:\n%s" % (what, stderr_text[-6000:]))


def run(argv, env=None, input=b"", timeout=RUN_TIMEOUT):
    """Run argv (own process group, killed at the end); fails on a sanitizer
    report; returns a peers.StwsResult."""
    r = peers.run_command(argv, input=input, timeout=timeout, env=env or clean_env())
    check_sanitizer(" ".join(argv), r.stderr)
    return r


def run_listen(args, env=None, input=b"", timeout=RUN_TIMEOUT):
    return run([peers.require_stws(), "listen"] + list(args), env=env, input=input,
               timeout=timeout)


def listen_args(mock, *extra, secret=SECRET, user=USER):
    a = ["--url", mock.url(), "--api-key", API_KEY, "--user-id", user]
    if secret is not None:
        a += ["--secret", secret]
    return a + list(extra)


def mock_args(*extra):
    return ["--api-key", API_KEY, "--secret", SECRET] + list(extra)


def read_record(path):
    """The complete lines of the mock's --record file, parsed."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in data.split(b"\n")[:-1] if line]


def wait_record(path, pred, timeout=WAIT, what="", diag=lambda: ""):
    """Poll the record file until pred(entries) is truthy; return its value.
    Not within timeout: a test failure."""
    deadline = time.monotonic() + timeout
    while True:
        recs = read_record(path)
        v = pred(recs)
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("record %s: %s did not happen within %.0f s; %d entries, last: %s\n%s"
                                 % (path, what, timeout, len(recs),
                                    [json.dumps(e)[:200] for e in recs[-5:]], diag()))
        time.sleep(POLL)


def recorded_lines(recs):
    """(n, conn) of every recorded test line, in record order."""
    out = []
    for e in recs:
        try:
            m = json.loads(e.get("text") or "")
        except ValueError:
            continue
        if isinstance(m, dict) and m.get("type") == "test.line":
            out.append((m["n"], e["conn"]))
    return out


def numbered_line(n):
    return '{"type":"test.line","n":%d,"pad":"%s"}\n' % (n, "x" * (n % 37))


class Listen:
    """`stws listen` running: stdin a pipe, stdout and stderr read line by line
    in threads, each line stamped with time.monotonic() on arrival."""

    def __init__(self, args, env=None):
        self.argv = [peers.require_stws(), "listen"] + list(args)
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True,
                                     env=env or clean_env())
        self.pid = self.proc.pid
        stamp = lambda line: (time.monotonic(), line)  # noqa: E731
        self._out = peers._LineReader(self.proc.stdout, stamp)
        self._err = peers._LineReader(self.proc.stderr, stamp)

    # ---- input
    def write(self, data):
        self.proc.stdin.write(data.encode("utf-8") if isinstance(data, str) else data)
        self.proc.stdin.flush()

    def close_stdin(self):
        self.proc.stdin.close()

    # ---- output
    def out(self):
        return [l for _, l in self._out.snapshot()]

    def err(self):
        return [l for _, l in self._err.snapshot()]

    def events(self):
        """stdout lines parsed (a line that is not JSON fails the test)."""
        evs = []
        for l in self.out():
            try:
                evs.append(json.loads(l))
            except ValueError:
                raise AssertionError("stws listen printed a line that is not JSON: %r\n%s"
                                     % (l[:300], self.diagnostics()))
        return evs

    def wait_events(self, pred, timeout=WAIT, what="the expected events"):
        """Wait until pred(parsed stdout events) is truthy; return its value."""
        def p(lines):
            evs = []
            for _, l in lines:
                try:
                    evs.append(json.loads(l))
                except ValueError:
                    return True  # reported below
            return pred(evs)
        v = self._out.wait(p, timeout)
        if v is True:
            self.events()  # raises on the non-JSON line
        if not v:
            raise AssertionError("stws listen: %s not seen within %.0f s\n%s"
                                 % (what, timeout, self.diagnostics()))
        return v

    def wait_err(self, pattern, count=1, timeout=WAIT):
        """(time, line) of the count-th stderr line matching the regex."""
        rx = re.compile(pattern)

        def pred(lines):
            hits = [x for x in lines if rx.search(x[1])]
            return hits[count - 1] if len(hits) >= count else None
        v = self._err.wait(pred, timeout)
        if v is None:
            raise AssertionError("stws listen: no %sstderr line matching %r within %.0f s\n%s"
                                 % ("%d. " % count if count > 1 else "", pattern, timeout,
                                    self.diagnostics()))
        return v

    def count_err(self, pattern):
        rx = re.compile(pattern)
        return sum(1 for l in self.err() if rx.search(l))

    def signal(self, sig):
        os.kill(self.pid, sig)

    def wait_exit(self, timeout=RUN_TIMEOUT):
        """Exit status; not exiting within timeout is a failure (killed);
        a sanitizer report on stderr is a failure."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            peers._kill_group(self.proc)
            raise AssertionError("stws listen did not exit within %.0f s and was killed\n%s"
                                 % (timeout, self.diagnostics()))
        self._out.join()
        self._err.join()
        check_sanitizer("stws listen", "\n".join(self.err()))
        return self.proc.returncode

    def diagnostics(self):
        out, err = self.out(), self.err()
        return ("  stws %s\n  exit status %r after %.1f s\n  stdout (%d lines, last 8): %s\n"
                "  stderr (last 30 of %d):\n    %s"
                % (" ".join(a if not a.startswith(SECRET[:8]) else "***" for a in self.argv[1:]),
                   self.proc.poll(), time.monotonic() - self.t0, len(out),
                   [l[:160] for l in out[-8:]], len(err), "\n    ".join(err[-30:]) or "(none)"))

    def stop(self):
        peers._kill_group(self.proc)
        self._out.join()
        self._err.join()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except (OSError, BrokenPipeError):
                pass


@contextlib.contextmanager
def listen(args, env=None):
    p = Listen(args, env)
    try:
        yield p
    finally:
        p.stop()


def conn_outcomes(mock):
    """[(conn number, "ok" | "error <code>")] from the mock's log, in order."""
    out = []
    for l in mock.log():
        m = re.search(r"conn (\d+): (connection\.ok|connection\.error (\d+))", l)
        if m:
            out.append((int(m.group(1)), "ok" if m.group(2) == "connection.ok"
                        else "error " + m.group(3)))
    return out


# --------------------------------------------------------------------------

class ListenTest(unittest.TestCase):
    maxDiff = 4000

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="stws-listen-")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def setUp(self):
        peers.require_stws()
        self.t_start = time.monotonic()

    def tearDown(self):
        if os.environ.get("STWS_TIMINGS"):
            sys.stderr.write("[%s %.1f s] " % (self._testMethodName,
                                               time.monotonic() - self.t_start))

    def record_path(self, name):
        return os.path.join(self.tmp.name, "%s-%s.jsonl" % (self._testMethodName, name))

    def assertNoSecret(self, *texts):
        for t in texts:
            self.assertNotIn(SECRET, t, "the API secret leaked into output")

    # ---- 1. events flow ----------------------------------------------------

    def test_events_flow_in_order_byte_identical(self):
        with peers.mock_coordinator(*mock_args("--events-per-second", "20", "--events", "30")) as m:
            r = run_listen(listen_args(m, "--max-events", "31"))
            summary = m.terminate()
        self.assertEqual(r.status, 0, r.describe())
        self.assertTrue(r.stdout.endswith(b"\n"), r.describe())
        raw = r.stdout[:-1].split(b"\n")
        self.assertEqual(len(raw), 31, "connection.ok + 30 events expected\n" + r.describe())
        evs = []
        for i, line in enumerate(raw):
            text = line.decode("utf-8")  # strict: must be valid UTF-8
            ev = json.loads(text)
            # byte-identical: the mock sends mock_dumps(obj); a changed byte
            # (escape, order, spacing, UTF-8) would not survive this round trip
            self.assertEqual(mock_dumps(ev), text, "line %d is not byte-identical to what the "
                                                   "mock sent" % (i + 1))
            evs.append(ev)
        self.assertEqual(evs[0]["type"], "connection.ok")
        self.assertTrue(evs[0]["connection_id"])
        self.assertEqual(evs[0]["me"]["id"], USER)
        for i, ev in enumerate(evs[1:], 1):
            self.assertIn(ev["type"], EVENT_TYPES, "event %d" % i)
            self.assertEqual(ev["seq"], i, "events out of order: %r" % [e.get("seq") for e in evs])
        self.assertEqual(summary["events_sent"], 30)
        self.assertTrue(any(ord(c) > 127 for l in raw for c in l.decode("utf-8")),
                        "expected some non-ASCII text among the events (the mock sends some)")
        self.assertIn("stws: connected", r.stderr)

    def test_max_events_exits_after_exactly_n_lines(self):
        with peers.mock_coordinator(*mock_args("--events-per-second", "50")) as m:
            for n in (1, 7):
                r = run_listen(listen_args(m, "--max-events", str(n)))
                self.assertEqual(r.status, 0, r.describe())
                lines = r.stdout.split(b"\n")
                self.assertEqual(lines[-1], b"", r.describe())
                self.assertEqual(len(lines) - 1, n, r.describe())
                self.assertEqual(json.loads(lines[0])["type"], "connection.ok")
            summary = m.terminate()
        # each run closed its socket with 1000 (a clean end, not a drop)
        ended = [l for l in m.log() if re.search(r"conn \d+: ended", l)]
        self.assertEqual(len(ended), 2, m.diagnostics())
        self.assertTrue(all(l.endswith("(1000)") for l in ended), ended)
        self.assertEqual(summary["connections_ok"], 2)

    def test_max_events_exact_under_a_flood(self):
        # events keep arriving while the closing handshake runs: none of them is printed
        with peers.mock_coordinator(*mock_args("--events-per-second", "1000000")) as m:
            r = run_listen(listen_args(m, "--max-events", "300"))
            m.terminate()
        self.assertEqual(r.status, 0, r.describe())
        lines = r.stdout.split(b"\n")
        self.assertEqual(lines[-1], b"", r.describe())
        self.assertEqual(len(lines) - 1, 300, r.describe())

    # ---- 2. server restart -------------------------------------------------

    def test_server_restart_on_same_port_is_survived(self):
        args = mock_args("--events-per-second", "20")
        with contextlib.ExitStack() as stack:
            m1 = stack.enter_context(peers.mock_coordinator(*args))
            port = m1.port
            p = stack.enter_context(listen(listen_args(m1)))
            first = p.wait_events(lambda evs: evs[0] if len(evs) >= 6 else None,
                                  what="connection.ok and 5 events")
            self.assertEqual(first["type"], "connection.ok")
            s1 = m1.terminate()  # closes with 1001 "going away", stops listening
            self.assertEqual(s1["connections_ok"], 1, m1.diagnostics())
            p.wait_err(r"^stws: disconnected \(code 1001\)")  # going away: not an end
            n_before = len(p.out())
            # a new mock on the same port (retry briefly if the port is not free yet)
            m2 = None
            for attempt in range(50):
                try:
                    m2 = stack.enter_context(peers.mock_coordinator(*args, port=port))
                    break
                except AssertionError as e:
                    if "in use" not in str(e) or attempt == 49:
                        raise
                    time.sleep(0.1)  # pause before binding again, not synchronisation
            self.assertEqual(m2.port, port)
            p.wait_err(r"^stws: reconnected connection_id=\S+", timeout=45)

            def second_ok(evs):
                oks = [i for i, e in enumerate(evs) if e.get("type") == "connection.ok"]
                if len(oks) < 2 or len(evs) < oks[1] + 6:
                    return None
                return oks
            oks = p.wait_events(second_ok, what="a second connection.ok and 5 events after it")
            evs = p.events()
            self.assertEqual(len(oks), 2, "exactly two connection.ok expected: %r" % oks)
            self.assertGreaterEqual(oks[1], n_before)
            second = evs[oks[1]]
            self.assertNotEqual(second["connection_id"], first["connection_id"])
            # the stderr line names the new connection
            self.assertIn("reconnected connection_id=" + second["connection_id"], "\n".join(p.err()))
            # events of each connection arrive in order, those of the new one after its connection.ok
            for a, b in ((1, oks[1]), (oks[1] + 1, len(evs))):
                seqs = [e["seq"] for e in evs[a:b] if e.get("type") in EVENT_TYPES]
                self.assertEqual(seqs, list(range(1, len(seqs) + 1)), "seq per connection")
            self.assertGreaterEqual(len(evs) - oks[1] - 1, 5)
            p.signal(signal.SIGTERM)
            self.assertEqual(p.wait_exit(), 0, p.diagnostics())
            s2 = m2.terminate()
            self.assertEqual(s2["connections_ok"], 1, m2.diagnostics())

    # ---- 3. token expiry ---------------------------------------------------

    # The client mints tokens with iat = now - 5 s (PROTOCOL.md §6, code 42),
    # so a fresh token is 5..6 s old when it arrives (iat is whole seconds).
    # --expire-after 7.5 accepts it; after the --drop-every 3 drop and at least
    # 250 ms of backoff the same token is more than 8.25 s old: code 40 on the
    # reconnect.

    def test_expired_token_is_reminted_without_hammering(self):
        rec = self.record_path("rec")
        with contextlib.ExitStack() as stack:
            m = stack.enter_context(peers.mock_coordinator(*mock_args(
                "--expire-after", "7.5", "--drop-every", "3", "--events-per-second", "5",
                "--record", rec)))
            p = stack.enter_context(listen(listen_args(m)))

            def cycles(n):
                def pred(evs):
                    errs = [i for i, e in enumerate(evs) if e.get("type") == "connection.error"]
                    oks = [i for i, e in enumerate(evs) if e.get("type") == "connection.ok"]
                    if len(errs) >= n and oks and oks[-1] > errs[n - 1]:
                        return evs
                    return None
                return pred
            evs = p.wait_events(cycles(2), timeout=45,
                                what="two code-40 refreshes each followed by a connection.ok")
            for e in evs:
                if e.get("type") == "connection.error":
                    self.assertEqual(e["error"]["code"], 40, e)
                    self.assertEqual(e["error"]["StatusCode"], 401, e)
            p.wait_err(r"^stws: reconnected", count=2)
            p.signal(signal.SIGTERM)
            self.assertEqual(p.wait_exit(), 0, p.diagnostics())
            summary = m.terminate()
            outcomes = conn_outcomes(m)
        # no hammering: every code 40 is followed by a fresh token that works,
        # never by a second code 40 (one code 40 per refresh)
        kinds = [k for _, k in outcomes]
        self.assertIn("error 40", kinds)
        for a, b in zip(kinds, kinds[1:]):
            self.assertFalse(a == b == "error 40", "two code-40 failures in a row: %r" % outcomes)
        self.assertEqual(set(kinds), {"ok", "error 40"}, outcomes)
        # every retry waited (PROTOCOL.md §5: at least 250 ms), also after a code 40
        delays = [int(d) for d in re.findall(r"^stws: reconnecting: attempt \d+ in (\d+) ms",
                                             "\n".join(p.err()), re.M)]
        self.assertGreaterEqual(len(delays), 4, p.diagnostics())
        self.assertTrue(all(d >= 250 for d in delays), delays)
        self.assertEqual(summary["auth_failures"], {"40": kinds.count("error 40")})
        self.assertGreaterEqual(summary["connections_ok"], 3)
        # the record: one auth message per connection, token redacted
        recs = read_record(rec)
        auths = [e for e in recs if '"token"' in (e.get("text") or "")]
        self.assertEqual(sorted(e["conn"] for e in auths), list(range(1, summary["connections"] + 1)))
        for e in auths:
            msg = json.loads(e["text"])
            self.assertEqual(msg["token"], "<redacted>", e)
            self.assertEqual(msg["user_details"]["id"], USER)
        self.assertNoSecret("\n".join(p.err()), "\n".join(m.log()), "\n".join(json.dumps(e) for e in recs))

    def test_expired_static_token_is_fatal(self):
        rec = self.record_path("rec")
        with contextlib.ExitStack() as stack:
            m = stack.enter_context(peers.mock_coordinator(*mock_args(
                "--expire-after", "7.5", "--drop-every", "3", "--record", rec)))
            # minted now, like the client does (not before the mock's start-up)
            token = mint({"user_id": USER, "iat": int(time.time()) - 5})
            p = stack.enter_context(listen(listen_args(m, "--token", token, secret=None)))
            status = p.wait_exit(timeout=45)
            summary = m.terminate()
        self.assertEqual(status, 3, "code 40 with a static token must be fatal (exit 3)\n"
                         + p.diagnostics())
        self.assertEqual(p.count_err(r"^stws: reconnected"), 0, p.diagnostics())
        self.assertEqual(p.count_err(r"^stws: fatal: .*code 40"), 1, p.diagnostics())
        # the first connection worked, the reconnect got code 40, nothing after it
        self.assertEqual(summary["connections"], 2, m.diagnostics())
        self.assertEqual(summary["auth_failures"], {"40": 1})
        self.assertEqual(conn_outcomes(m), [(1, "ok"), (2, "error 40")])
        self.assertEqual(len(read_record(rec)), 2)
        self.assertNotIn(token, "\n".join(p.err()) + "\n".join(m.log()))

    # ---- 4. lossless send queue across drops --------------------------------

    def test_send_queue_lossless_across_five_drops(self):
        """200 numbered lines on stdin, in 11 batches: one while connected,
        then for each of 5 drops (SIGUSR1: abrupt TCP close) one batch written
        while disconnected and one after the reconnect.  Before every drop the
        test waits until the mock recorded every line written so far, so no
        line is in flight when the connection dies.  Every line must be
        recorded exactly once, in order."""
        rec = self.record_path("rec")
        sizes = [20] + [16, 20] * 5
        self.assertEqual(sum(sizes), 200)
        with contextlib.ExitStack() as stack:
            m = stack.enter_context(peers.mock_coordinator(*mock_args("--record", rec)))
            p = stack.enter_context(listen(listen_args(m)))
            diag = lambda: p.diagnostics() + "\n" + m.diagnostics()  # noqa: E731
            p.wait_err(r"^stws: connected")
            n = 0
            offline = 0  # offline batches fully written before the reconnect was reported

            def feed(count):
                nonlocal n
                for _ in range(count):
                    n += 1
                    p.write(numbered_line(n))

            def wait_all():
                wait_record(rec, lambda recs: len(recorded_lines(recs)) >= n,
                            what="lines 1..%d recorded" % n, diag=diag)
            feed(sizes[0])
            wait_all()
            for drop in range(1, 6):
                m.signal(signal.SIGUSR1)
                p.wait_err(r"^stws: disconnected", count=drop)
                feed(sizes[2 * drop - 1])  # queued while offline
                if p.count_err(r"^stws: reconnected") < drop:
                    offline += 1
                p.wait_err(r"^stws: reconnected", count=drop)
                feed(sizes[2 * drop])
                wait_all()
            p.close_stdin()
            p.signal(signal.SIGTERM)
            self.assertEqual(p.wait_exit(), 0, p.diagnostics())
            summary = m.terminate()
        got = recorded_lines(read_record(rec))
        numbers = [k for k, _ in got]
        dups = sorted({k for k in numbers if numbers.count(k) > 1})
        missing = sorted(set(range(1, 201)) - set(numbers))
        self.assertEqual((missing, dups), ([], []), "lost / duplicated lines")
        self.assertEqual(numbers, list(range(1, 201)), "lines out of order")
        # the lines of each batch went over the connection that was open then
        conns = [c for _, c in got]
        self.assertEqual(conns, sorted(conns))
        self.assertEqual(len(set(conns)), 6, "expected lines on 6 connections: %r" % sorted(set(conns)))
        self.assertEqual(summary["connections_ok"], 6, summary)
        self.assertEqual(summary["drops"], 5, summary)
        # PROTOCOL.md §5 and STWS_CLIENT_STABLE_MS (5 s): a socket that lived
        # 5 s past its connection.ok was healthy, and its drop starts a new
        # count (attempt 1, n = 0: [250, 500) ms); one that died sooner is a
        # failure, the next attempt number and n one higher.  How long each
        # socket lived is up to the machine, so each delay must fit the
        # window of n = attempt (a chain that began with a quick drop) or
        # n = attempt - 1 (one that began with a healthy drop).
        def window(n):
            return max(250, 2000 * (n - 1)), min(500 + 2000 * n, 25000)
        retries = re.findall(r"^stws: reconnecting: attempt (\d+) in (\d+) ms", "\n".join(p.err()), re.M)
        self.assertEqual(len(retries), 5, p.err())
        prev = 0
        for attempt, delay in retries:
            attempt, delay = int(attempt), int(delay)
            self.assertIn(attempt, (1, prev + 1), p.err())
            self.assertTrue(any(lo <= delay < hi for lo, hi in (window(attempt), window(attempt - 1))), p.err())
            prev = attempt
        # the offline batches were really written while the client was offline
        self.assertGreaterEqual(offline, 1, "no batch was written while disconnected")
        # the record texts are exactly the lines (no mangling)
        texts = [e["text"] + "\n" for e in read_record(rec)
                 if (e.get("text") or "").startswith('{"type":"test.line"')]
        self.assertEqual(texts, [numbered_line(k) for k in range(1, 201)])

    def test_send_queue_under_unsynchronised_drops(self):
        """Lines written continuously while the mock drops the connection at
        arbitrary moments (SIGUSR1 five times).  Lines fully written to a
        socket that then died may be lost in flight (the documented design),
        but nothing may be duplicated or reordered, and everything written
        after the last reconnect arrives.  The loss count is reported."""
        rec = self.record_path("rec")
        with contextlib.ExitStack() as stack:
            m = stack.enter_context(peers.mock_coordinator(*mock_args("--record", rec)))
            p = stack.enter_context(listen(listen_args(m)))
            p.wait_err(r"^stws: connected")
            stop = threading.Event()
            written = [0]
            errors = []

            def writer():
                try:
                    while not stop.is_set():
                        written[0] += 1
                        p.write(numbered_line(written[0]))
                        stop.wait(0.002)  # pacing of the load generator
                except (OSError, ValueError) as e:
                    errors.append(e)
            t = threading.Thread(target=writer, daemon=True)
            t.start()
            try:
                for drop in range(1, 6):
                    # drop once some lines of this connection were recorded
                    wait_record(rec, lambda recs: sum(1 for _, c in recorded_lines(recs) if c == drop) >= 10,
                                what="10 lines on connection %d" % drop, diag=p.diagnostics)
                    m.signal(signal.SIGUSR1)
                    p.wait_err(r"^stws: reconnected", count=drop)
            finally:
                stop.set()
                t.join(10)
            self.assertEqual(errors, [])
            last = written[0]
            wait_record(rec, lambda recs: any(k == last for k, _ in recorded_lines(recs)),
                        what="the last line (%d) recorded" % last, diag=p.diagnostics)
            p.close_stdin()
            p.signal(signal.SIGTERM)
            self.assertEqual(p.wait_exit(), 0, p.diagnostics())
            m.terminate()
        got = recorded_lines(read_record(rec))
        numbers = [k for k, _ in got]
        self.assertEqual(len(numbers), len(set(numbers)), "duplicated lines")
        self.assertEqual(numbers, sorted(numbers), "lines out of order")
        lost = sorted(set(range(1, last + 1)) - set(numbers))
        # a line can only be lost in flight, i.e. at the end of a connection:
        # between the last line recorded on one connection and the first on the next
        gaps = [(a, b) for (a, ca), (b, cb) in zip(got, got[1:]) if ca != cb]
        for k in lost:
            self.assertTrue(any(a < k < b for a, b in gaps),
                            "line %d lost in the middle of a connection (switches at %r)" % (k, gaps))
        sys.stderr.write("[unsynchronised drops: %d lines written, %d lost in flight%s] "
                         % (last, len(lost), (": %s" % lost[:40]) if lost else ""))

    # ---- auth message, products, transient failures ----------------------------

    def test_auth_message_escaping_and_products_filter(self):
        rec = self.record_path("rec")
        name = 'Zo\u00eb "Z" \\ back\tslash \u2603'
        with peers.mock_coordinator(*mock_args("--events-per-second", "50", "--record", rec)) as m:
            r = run_listen(listen_args(m, "--user-name", name, "--products", "chat",
                                       "--max-events", "16"))
            summary = m.terminate()
        self.assertEqual(r.status, 0, r.describe())
        recs = read_record(rec)
        self.assertEqual(len(recs), 1, recs)
        auth = json.loads(recs[0]["text"])
        self.assertEqual(auth, {"token": "<redacted>", "user_details": {"id": USER, "name": name},
                                "products": ["chat"]})
        evs = [json.loads(l) for l in r.stdout.split(b"\n")[:-1]]
        self.assertEqual(len(evs), 16)
        self.assertEqual(evs[0]["me"]["name"], name)
        types = {e["type"] for e in evs[1:]}
        self.assertTrue(types <= {"message.new", "typing.start", "reaction.new", "health.check"},
                        "--products chat: only chat events expected, got %r" % types)
        self.assertRegex("\n".join(m.log()), r"conn 1: open /api/v2/connect client='stream-ws-c-v[\d.]+\|os=linux'")
        self.assertEqual(summary["auth_failures"], {})

    def test_refused_upgrade_is_retried(self):
        with peers.mock_coordinator(*mock_args("--refuse-first", "2")) as m:
            r = run_listen(listen_args(m, "--max-events", "1"))
            summary = m.terminate()
        self.assertEqual(r.status, 0, r.describe())
        self.assertEqual(len(re.findall(r"^stws: reconnecting", r.stderr, re.M)), 2, r.describe())
        self.assertEqual((summary["http_503"], summary["connections_ok"]), (2, 1), summary)

    def test_permanent_failures_are_fatal_at_once(self):
        """A wrong path (HTTP 404 on the upgrade) and wss:// to a plain ws://
        port (the TLS handshake meets HTTP) can never succeed: FATAL after
        the first attempt, exit 1, with the cause; no retry."""
        creds = ["--api-key", API_KEY, "--user-id", USER, "--secret", SECRET, "--max-attempts", "5"]
        with peers.mock_coordinator(*mock_args()) as m:
            r404 = run_listen(["--url", m.url("/api/v2/nowhere")] + creds, timeout=30)
            rtls = run_listen(["--url", m.url().replace("ws://", "wss://", 1)] + creds, timeout=30)
            summary = m.terminate()
        for r in (r404, rtls):
            self.assertEqual(r.status, 1, r.describe())
            self.assertNotIn("stws: reconnecting", r.stderr, r.describe())
            self.assertEqual(len(re.findall(r"^stws: fatal: .*not retried", r.stderr, re.M)), 1, r.describe())
        self.assertRegex(r404.stderr, r"stws: fatal: handshake status is not 101 .*HTTP 404")
        self.assertRegex(rtls.stderr, r"stws: fatal: TLS error")
        self.assertEqual(summary["http_404"], 1, summary)
        self.assertEqual(summary["connections_ok"], 0, summary)

    def test_transient_connection_error_is_retried(self):
        with peers.mock_coordinator(*mock_args("--fail-first", "1", "--fail-code", "-1",
                                               "--fail-status", "500")) as m:
            r = run_listen(listen_args(m, "--max-events", "2"))
            summary = m.terminate()
        self.assertEqual(r.status, 0, r.describe())
        evs = [json.loads(l) for l in r.stdout.split(b"\n")[:-1]]
        self.assertEqual([e["type"] for e in evs], ["connection.error", "connection.ok"])
        self.assertEqual(evs[0]["error"]["StatusCode"], 500)
        self.assertIn("stws: connected", r.stderr)
        self.assertEqual((summary["connections"], summary["connections_ok"]), (2, 1), summary)

    def test_server_close_other_than_1000_reconnects(self):
        with contextlib.ExitStack() as stack:
            m = stack.enter_context(peers.mock_coordinator(*mock_args("--close-with", "1011")))
            p = stack.enter_context(listen(listen_args(m)))
            p.wait_err(r"^stws: disconnected \(code 1011\)")
            p.wait_err(r"^stws: reconnected", count=2)
            p.signal(signal.SIGTERM)
            self.assertEqual(p.wait_exit(), 0, p.diagnostics())
            summary = m.terminate()
        self.assertGreaterEqual(summary["connections_ok"], 3)

    # ---- 5. exit statuses ----------------------------------------------------

    def test_exit_status_bad_secret_is_3(self):
        with peers.mock_coordinator(*mock_args()) as m:
            r = run_listen(listen_args(m, secret="wrong-secret"))
            summary = m.terminate()
        self.assertEqual(r.status, 3, r.describe())
        self.assertRegex(r.stderr, r"stws: fatal: .*code 43")
        self.assertEqual(summary["connections"], 1, "a fatal error must not be retried")
        self.assertEqual(summary["auth_failures"], {"43": 1})
        first = json.loads(r.stdout.split(b"\n")[0])
        self.assertEqual((first["type"], first["error"]["code"]), ("connection.error", 43))

    def test_exit_status_unknown_api_key_is_3(self):
        with peers.mock_coordinator(*mock_args()) as m:
            r = run_listen(["--url", m.url(), "--api-key", "no-such-key", "--user-id", USER,
                            "--secret", SECRET])
            summary = m.terminate()
        self.assertEqual(r.status, 3, r.describe())
        self.assertRegex(r.stderr, r"stws: fatal: .*code 2\b")
        self.assertEqual(summary["connections"], 1)
        self.assertEqual(summary["auth_failures"], {"2": 1})

    def test_exit_status_fatal_auth_codes_are_3(self):
        """PROTOCOL.md §6: 41, 42, 43 (user mismatch) and 4 are fatal: exit 3
        after one connection, with the code on the fatal line."""
        now = int(time.time())
        cases = [
            (41, ["--token", mint({"user_id": USER, "nbf": now + 100})]),
            (42, ["--token", mint({"user_id": USER, "iat": now + 100})]),
            (43, ["--token", mint({"user_id": "mallory", "iat": now - 5})]),
            (4, ["--secret", SECRET, "--products", "chat,bogus"]),
        ]
        with peers.mock_coordinator(*mock_args()) as m:
            for code, extra in cases:
                with self.subTest(code=code):
                    r = run_listen(listen_args(m, *extra, secret=None))
                    self.assertEqual(r.status, 3, r.describe())
                    self.assertRegex(r.stderr, r"stws: fatal: .*\(code %d\)" % code)
                    self.assertNotIn("reconnecting", r.stderr)
            summary = m.terminate()
        self.assertEqual(summary["connections"], len(cases), "a fatal error must not be retried")
        self.assertEqual(summary["auth_failures"], {"41": 1, "42": 1, "43": 1, "4": 1})

    def test_sigterm_during_backoff_and_sigint_while_connected_exit_0(self):
        port = peers.free_port()  # nothing listens: the client keeps backing off
        with listen(["--url", "ws://127.0.0.1:%d/api/v2/connect" % port, "--api-key", API_KEY,
                     "--user-id", USER, "--secret", SECRET]) as p:
            p.wait_err(r"^stws: reconnecting: attempt 2 in")
            t = time.monotonic()
            p.signal(signal.SIGTERM)
            self.assertEqual(p.wait_exit(), 0, p.diagnostics())
            self.assertLess(time.monotonic() - t, 5, "SIGTERM must also cut a backoff short")
            self.assertIn("stws: closed", p.err())
        with peers.mock_coordinator(*mock_args()) as m:
            with listen(listen_args(m)) as p:
                p.wait_err(r"^stws: connected")
                p.signal(signal.SIGINT)
                self.assertEqual(p.wait_exit(), 0, p.diagnostics())
            m.wait_log(r"conn 1: ended \(1000\)")  # the client closed with 1000
            m.terminate()

    def test_exit_status_server_close_1000_is_0(self):
        with peers.mock_coordinator(*mock_args("--close-with", "1000")) as m:
            r = run_listen(listen_args(m))
            summary = m.terminate()
        self.assertEqual(r.status, 0, r.describe())
        self.assertIn("stws: closed", r.stderr)
        self.assertNotIn("reconnecting", r.stderr)
        self.assertEqual(summary["connections"], 1, "a server close 1000 must not be retried")
        self.assertEqual(json.loads(r.stdout.split(b"\n")[0])["type"], "connection.ok")

    def test_exit_status_attempts_exhausted_is_4(self):
        port = peers.free_port()  # bound and closed again: nothing listens there
        r = run_listen(["--url", "ws://127.0.0.1:%d/api/v2/connect" % port, "--api-key", API_KEY,
                        "--user-id", USER, "--secret", SECRET, "--max-attempts", "2"], timeout=30)
        self.assertEqual(r.status, 4, r.describe())
        # backoff before attempts 1 and 2 (PROTOCOL.md §5, n = 1, 2):
        # [250, 2500) + [2000, 4500) ms
        self.assertLess(r.elapsed, 15, r.describe())
        self.assertEqual(len(re.findall(r"stws: reconnecting", r.stderr)), 2, r.describe())
        self.assertRegex(r.stderr, r"stws: fatal: .*attempts")

    def test_usage_errors_exit_2(self):
        url = "ws://127.0.0.1:9/api/v2/connect"  # never contacted
        cases = {
            "api-key": ["--url", url, "--user-id", USER, "--secret", SECRET],
            "user-id": ["--url", url, "--api-key", API_KEY, "--secret", SECRET],
            "secret": ["--url", url, "--api-key", API_KEY, "--user-id", USER],
        }
        for missing, args in cases.items():
            with self.subTest(missing=missing):
                r = run_listen(args, timeout=20)
                self.assertEqual(r.status, 2, r.describe())
                self.assertRegex(r.stderr, r"stws: missing .*%s" % missing)
                self.assertIn("usage:", r.stderr)
                self.assertEqual(r.stdout, b"")
        for args in (["--bogus", "1"], ["--url", url, "--api-key", API_KEY, "--user-id", USER,
                                        "--secret", SECRET, "--token", "x.y.z"],
                     ["--url", url, "--api-key", API_KEY, "--user-id", USER, "--secret", SECRET,
                      "--max-events", "0"]):
            with self.subTest(args=args):
                r = run_listen(args, timeout=20)
                self.assertEqual(r.status, 2, r.describe())
                self.assertRegex(r.stderr, r"^stws: \S")

    def test_env_fallbacks(self):
        with peers.mock_coordinator(*mock_args("--events-per-second", "20")) as m:
            env = clean_env(STREAM_WS_URL=m.url(), STREAM_API_KEY=API_KEY,
                            STREAM_API_SECRET=SECRET, STREAM_USER_ID="bob")
            r1 = run_listen(["--max-events", "3"], env=env)
            token = mint({"user_id": "carol", "iat": int(time.time()) - 5})
            env = clean_env(STREAM_WS_URL=m.url(), STREAM_API_KEY=API_KEY,
                            STREAM_TOKEN=token, STREAM_USER_ID="carol")
            r2 = run_listen(["--max-events", "3"], env=env)
            summary = m.terminate()
        for r, user in ((r1, "bob"), (r2, "carol")):
            self.assertEqual(r.status, 0, r.describe())
            lines = r.stdout.split(b"\n")
            self.assertEqual(len(lines), 4, r.describe())
            ok = json.loads(lines[0])
            self.assertEqual((ok["type"], ok["me"]["id"]), ("connection.ok", user))
        self.assertEqual(summary["connections_ok"], 2)
        self.assertEqual(summary["auth_failures"], {})

    # ---- 6. health ----------------------------------------------------------

    def test_client_health_checks_array_form(self):
        rec = self.record_path("rec")
        with contextlib.ExitStack() as stack:
            m = stack.enter_context(peers.mock_coordinator(*mock_args(
                "--health-interval", "60", "--record", rec)))
            p = stack.enter_context(listen(listen_args(m, "--health-interval", "300")))
            ok = p.wait_events(lambda evs: evs[0] if evs else None, what="connection.ok")
            cid = ok["connection_id"]
            want = '[{"type":"health.check","client_id":"%s"}]' % cid
            checks = wait_record(rec, lambda recs: (lambda hs: hs if len(hs) >= 4 else None)(
                [e for e in recs if "health.check" in (e.get("text") or "")]),
                what="4 client health checks", diag=p.diagnostics)
            # the mock answers each: the client sees health.check events on stdout
            p.wait_events(lambda evs: sum(1 for e in evs if e.get("type") == "health.check") >= 3,
                          what="3 health.check answers")
            p.signal(signal.SIGTERM)
            self.assertEqual(p.wait_exit(), 0, p.diagnostics())
            summary = m.terminate()
        for e in checks:
            self.assertEqual(e["text"], want)
            self.assertEqual(e["connection_id"], cid)
        # the interval is kept: no check sooner than 300 ms after the previous one
        # (a lower bound only: load can make them later, never sooner)
        gaps = [b["t"] - a["t"] for a, b in zip(checks, checks[1:])]
        self.assertTrue(all(g >= 0.2 for g in gaps), "health checks too close: %r" % gaps)
        self.assertGreaterEqual(summary["client_health_checks"], 4)
        self.assertEqual(summary["connections"], 1)

    def test_silent_server_is_detected_and_reconnected(self):
        with contextlib.ExitStack() as stack:
            m = stack.enter_context(peers.mock_coordinator(*mock_args(
                "--health-interval", "0.2", "--stall-after", "2")))
            p = stack.enter_context(listen(listen_args(m, "--dead-timeout", "1000")))
            t_conn, _ = p.wait_err(r"^stws: connected")
            t_disc, line = p.wait_err(r"^stws: disconnected", timeout=30)
            t_rec, _ = p.wait_err(r"^stws: reconnected", timeout=30)
            # traffic every 0.2 s kept the connection alive until the stall at 2 s;
            # then 1 s of silence ended it (bounds generous for slow builds)
            self.assertGreater(t_disc - t_conn, 2.0, p.diagnostics())
            self.assertLess(t_disc - t_conn, 15, p.diagnostics())
            self.assertGreater(t_rec, t_disc)
            self.assertRegex(line, r"no frame|dead|silen", "the reason should name the silence")
            evs = p.wait_events(lambda evs: (lambda oks: oks if len(oks) >= 2 else None)(
                [e for e in evs if e.get("type") == "connection.ok"]), what="a second connection.ok")
            self.assertNotEqual(evs[0]["connection_id"], evs[1]["connection_id"])
            p.signal(signal.SIGTERM)
            self.assertEqual(p.wait_exit(), 0, p.diagnostics())
            summary = m.terminate()
        self.assertGreaterEqual(summary["stalls"], 1)
        self.assertGreaterEqual(summary["connections_ok"], 2)

    # ---- 7. examples ----------------------------------------------------------

    def example_env(self, mock, user=USER):
        return clean_env(STREAM_WS_URL=mock.url(), STREAM_API_KEY=API_KEY,
                         STREAM_API_SECRET=SECRET, STREAM_USER_ID=user)

    def test_example_stream_events(self):
        with peers.mock_coordinator(*mock_args("--events-per-second", "20")) as m:
            r = run([example_path("stream_events"), "6"], env=self.example_env(m))
            summary = m.terminate()
        self.assertEqual(r.status, 0, r.describe())
        lines = r.stdout.split(b"\n")
        self.assertEqual(lines[-1], b"")
        self.assertEqual(len(lines) - 1, 6, r.describe())
        evs = [json.loads(l) for l in lines[:-1]]
        self.assertEqual(evs[0]["type"], "connection.ok")
        self.assertEqual([e["seq"] for e in evs[1:]], [1, 2, 3, 4, 5])
        self.assertEqual(summary["connections"], 1)

    def test_example_game_loop(self):
        with peers.mock_coordinator(*mock_args("--events-per-second", "20", "--drop-every", "1")) as m:
            # 5 s: a socket that dies 1 s after its connection.ok is a failure
            # (STWS_CLIENT_STABLE_MS), so the retry waits up to 2.5 s
            r = run([example_path("game_loop"), "5"], env=self.example_env(m), timeout=60)
            summary = m.terminate()
        self.assertEqual(r.status, 0, r.describe())
        out = r.stdout.decode()
        fm = re.search(r"^frames (\d+) in ([\d.]+) s, events (\d+) \(message\.new (\d+)\), "
                       r"connects (\d+)$", out, re.M)
        pm = re.search(r"^pump time per frame: median (\S+) ms, worst (\S+) ms$", out, re.M)
        self.assertIsNotNone(fm, out)
        self.assertIsNotNone(pm, out)
        frames, connects, events = int(fm.group(1)), int(fm.group(5)), int(fm.group(3))
        median, worst = float(pm.group(1)), float(pm.group(2))  # numbers, or ValueError
        self.assertTrue(290 <= frames <= 310, "about 300 frames expected: %s" % out)
        self.assertGreaterEqual(connects, 2, "a drop every second: several connects\n" + out)
        self.assertGreater(events, 0)
        self.assertTrue(0 <= median <= worst, out)
        self.assertGreaterEqual(summary["drops"], 1)
        sys.stderr.write("[game_loop: %d frames, %d connects, pump median %.3f ms worst %.3f ms] "
                         % (frames, connects, median, worst))

    def test_example_custom_transport_tls(self):
        tls = peers.tls_material(os.path.join(self.tmp.name, "tls"))
        with peers.ws_server("echo", tls=tls.server) as peer:
            r = run([example_path("custom_transport"), peer.url("/"), tls.ca], timeout=30)
            self.assertEqual(r.status, 0, r.describe() + "\n" + peer.diagnostics())
            self.assertEqual(r.stdout, b"hello\n")
            r = run([example_path("custom_transport"), peer.url("/"), tls.other_ca], timeout=30)
            self.assertGreater(r.status, 0, "the wrong CA must fail\n" + r.describe())
            self.assertEqual(r.stdout, b"")
            self.assertEqual(len(peer.events("connect")), 1,
                             "no WebSocket handshake over an unverified connection\n"
                             + peer.diagnostics())

    # ---- 8. make demo --------------------------------------------------------

    def test_make_demo(self):
        # the demo's mock drops the connection 6 s after connection.ok and
        # rejects tokens older than 8 s: the drop comes at ~6 s, the code 40 on
        # the reconnect, and the reconnect with a fresh token after at most
        # 0.5 + 2.5 s of backoff, i.e. before ~9.1 s; DEMO_SECONDS=11 leaves room.
        build = os.environ.get("STWS_BUILD", "build")
        env = clean_env(DEMO_SECONDS="11")
        # `make demo` only if it would not rebuild the tool (e.g. under another CC)
        q = subprocess.run(["make", "-q", "BUILD=" + build, os.path.join(build, "stws")],
                           cwd=peers.REPO, stdin=subprocess.DEVNULL, capture_output=True,
                           env=env, timeout=60)
        if q.returncode == 0:
            argv = ["make", "-s", "-C", peers.REPO, "demo", "BUILD=" + build]
        else:
            argv = ["sh", os.path.join(peers.REPO, "tools", "demo.sh"), peers.require_stws()]
        old = os.getcwd()
        os.chdir(peers.REPO)  # demo.sh runs tools/mock_coordinator.py relative to the repo
        try:
            r = run(argv, env=env, timeout=60)
        finally:
            os.chdir(old)
        text = r.stdout.decode("utf-8", "replace") + r.stderr
        self.assertEqual(r.status, 0, r.describe())
        for pat in (r"^stws: connected connection_id=\S+", r"^stws: disconnected",
                    r"^stws: reconnecting", r"^stws: reconnected connection_id=\S+",
                    r'^\{"type":"connection\.error".*"code":40', r"^demo: stws listen exited with status 0",
                    r'^demo: mock summary: \{.*"auth_failures":\{"40":[1-9]'):
            self.assertRegex(text, re.compile(pat, re.M), "demo output\n" + r.describe())
        self.assertLess(r.elapsed, 30)


if __name__ == "__main__":
    unittest.main(verbosity=2)
