"""Peers for the stws integration tests: WebSocket servers, TLS material, an HTTP
proxy, and a runner for the stws tool.

Every peer is a subprocess in its own process group on 127.0.0.1 with a port the
OS chose; the context managers kill the whole group when they exit, also when
the body raised.  Waiting is always on process output with a bounded timeout.

    ws_server(mode, tls=None, ...)   ws_peer.py (python-websockets); see its docstring
    tls_material(tmpdir)             CA, server / wrong-host / expired certificates
    tinyproxy(auth=None)             Debian's tinyproxy, CONNECT allowed to any port
    run_stws(args, input=b"")        run $STWS_BUILD/stws -> (status, stdout, stderr)
    stws_process(args)               stws running, stdin open, stdout read line by line
    mock_coordinator(*args, port=0)  tools/mock_coordinator.py on 127.0.0.1 (PORT line read)
"""

import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PYTHON = "/usr/bin/python3"
WS_PEER = os.path.join(HERE, "ws_peer.py")
TINYPROXY = "/usr/bin/tinyproxy"
OPENSSL = "openssl"

sys.path.insert(0, HERE)
from ws_peer import (gen_text, gen_binary, describe, parse_spec,  # noqa: E402,F401
                     spec_messages, parse_frame, accept_key)

STARTUP_TIMEOUT = 30.0   # a peer reports its port within this
EVENT_TIMEOUT = 60.0     # default bound for waiting on a peer's event
STWS_TIMEOUT = 60.0      # default bound for one stws run


# --------------------------------------------------------------------------
# Processes

def _kill_group(proc):
    """SIGKILL proc's process group (proc was started with start_new_session)
    and reap proc."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


def process_gone(pid):
    """True if no process pid exists (it was killed and reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # It may still exist as a zombie not yet reaped by its parent (not us).
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def group_gone(pgid):
    """True if no live process is in process group pgid."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return False
    return True


class _LineReader:
    """Reads a stream line by line in a thread; lines go to a list that others
    wait on with a bounded timeout."""

    def __init__(self, stream, parse=None):
        self.lines = []
        self.eof = False
        self.cond = threading.Condition()
        self._parse = parse
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream):
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if self._parse:
                    try:
                        line = self._parse(line)
                    except ValueError:
                        line = {"event": "unparsed", "line": line}
                with self.cond:
                    self.lines.append(line)
                    self.cond.notify_all()
        except (OSError, ValueError):
            pass
        finally:
            with self.cond:
                self.eof = True
                self.cond.notify_all()

    def wait(self, pred, timeout):
        """Wait until pred(lines) is truthy and return its value; None on timeout
        or when the stream ended without pred becoming true."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                v = pred(self.lines)
                if v:
                    return v
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    return None
                self.cond.wait(left)

    def snapshot(self):
        with self.cond:
            return list(self.lines)

    def join(self, timeout=10):
        self._thread.join(timeout)


# --------------------------------------------------------------------------
# WebSocket server peer

class WsPeer:
    """A running ws_peer.py.  Events are dicts (see ws_peer.py)."""

    def __init__(self, argv, mode, tls):
        self.mode = mode
        self.tls = tls
        self.port = None
        self._err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._err, start_new_session=True)
        self.pid = self.proc.pid
        self._out = _LineReader(self.proc.stdout, json.loads)

    # ---- addresses
    def url(self, path="/"):
        return "%s://127.0.0.1:%d%s" % ("wss" if self.tls else "ws", self.port, path)

    # ---- events
    def events(self, event=None, **match):
        return [e for e in self._out.snapshot() if _matches(e, event, match)]

    def messages(self, conn=None):
        return self.events("message", **({"conn": conn} if conn is not None else {}))

    def sent(self, conn=None):
        return self.events("sent", **({"conn": conn} if conn is not None else {}))

    def wait_event(self, event, timeout=EVENT_TIMEOUT, count=1, **match):
        """The count-th event named event whose fields equal match; fails the
        test (AssertionError) if it does not come within timeout seconds."""
        def pred(lines):
            hits = [e for e in lines if _matches(e, event, match)]
            return hits[count - 1] if len(hits) >= count else None
        ev = self._out.wait(pred, timeout)
        if ev is None:
            raise AssertionError("ws peer (%s): no %s%s event within %.0f s%s\n%s"
                                 % (self.mode, "%d " % count if count > 1 else "", event,
                                    timeout, " matching %r" % match if match else "",
                                    self.diagnostics()))
        return ev

    def wait_closed(self, conn=1, timeout=EVENT_TIMEOUT):
        return self.wait_event("closed", timeout=timeout, conn=conn)

    def stderr(self):
        self._err.seek(0)
        return self._err.read().decode("utf-8", "replace")

    def diagnostics(self):
        evs = self._out.snapshot()
        lines = [json.dumps(e)[:300] for e in evs[-40:]]
        return ("  peer events (last %d of %d):\n    %s\n  peer stderr:\n    %s"
                % (len(lines), len(evs), "\n    ".join(lines) or "(none)",
                   "\n    ".join(self.stderr().strip().splitlines()[-20:]) or "(none)"))

    def stop(self):
        _kill_group(self.proc)
        self._out.join()
        self.proc.stdout.close()
        self._err.close()


def _matches(e, event, match):
    if event is not None and e.get("event") != event:
        return False
    return all(e.get(k) == v for k, v in match.items())


@contextlib.contextmanager
def ws_server(mode, tls=None, subprotocols=(), close_timeout=None, wait_timeout=None):
    """Start ws_peer.py MODE on 127.0.0.1:0 and yield a WsPeer (its .port set).
    tls: a CertPair (or (cert, key) tuple) to serve wss://."""
    argv = [PYTHON, WS_PEER, mode]
    if tls is not None:
        cert, key = tls
        argv += ["--cert", cert, "--key", key]
    for p in subprotocols:
        argv += ["--subprotocol", p]
    if close_timeout is not None:
        argv += ["--close-timeout", str(close_timeout)]
    if wait_timeout is not None:
        argv += ["--wait-timeout", str(wait_timeout)]
    peer = WsPeer(argv, mode, tls is not None)
    try:
        ev = peer._out.wait(lambda ls: next((e for e in ls if e.get("event") == "listening"), None),
                            STARTUP_TIMEOUT)
        if ev is None:
            raise AssertionError("ws peer %r did not report its port within %.0f s (exit status %r)\n%s"
                                 % (mode, STARTUP_TIMEOUT, peer.proc.poll(), peer.diagnostics()))
        peer.port = ev["port"]
        yield peer
    finally:
        peer.stop()


# --------------------------------------------------------------------------
# TLS material

class CertPair(tuple):
    """(cert, key) paths."""
    def __new__(cls, cert, key):
        return tuple.__new__(cls, (cert, key))

    cert = property(lambda self: self[0])
    key = property(lambda self: self[1])


class TLSMaterial:
    """Paths made by tls_material():
       ca, ca_key         the CA the server certificates are signed by
       other_ca           an unrelated CA (a client trusting only it must fail)
       server             CertPair: SAN IP:127.0.0.1, DNS:localhost, DNS:127.0.0.1; signed by ca
       wrong_host         CertPair: SAN DNS:wrong.example only; signed by ca
       expired            CertPair: like server, valid 2020-01-01..2020-02-01 only
    """


_OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = stws-test
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[v3_server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = IP:127.0.0.1, DNS:localhost, DNS:127.0.0.1
[v3_wrong]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:wrong.example
[ca]
default_ca = testca
[testca]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}/newcerts
serial = {dir}/serial
certificate = {dir}/ca.pem
private_key = {dir}/ca.key
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no
[policy_any]
commonName = supplied
"""


def _openssl(*args, cwd=None, check=True):
    try:
        r = subprocess.run([OPENSSL] + list(args), cwd=cwd, stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=60)
    except FileNotFoundError:
        raise AssertionError("the openssl command is not installed (apt-get install openssl)")
    if check and r.returncode != 0:
        raise AssertionError("openssl %s failed (%d):\n%s" % (" ".join(args), r.returncode,
                                                            r.stderr.decode(errors="replace")))
    return r


def tls_material(tmpdir):
    """Make a CA, server certificates and an unrelated CA in tmpdir with the
    openssl CLI (EC P-256 keys); returns a TLSMaterial."""
    d = os.path.abspath(tmpdir)
    os.makedirs(os.path.join(d, "newcerts"), exist_ok=True)
    cnf = os.path.join(d, "openssl.cnf")
    with open(cnf, "w") as f:
        f.write(_OPENSSL_CNF.format(dir=d))
    open(os.path.join(d, "index.txt"), "w").close()
    with open(os.path.join(d, "serial"), "w") as f:
        f.write("1000\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    p = lambda name: os.path.join(d, name)  # noqa: E731

    for ca, cn in (("ca", "stws test CA"), ("other_ca", "stws unrelated CA")):
        _openssl("req", "-config", cnf, "-x509", "-new", *ec, "-keyout", p(ca + ".key"),
                 "-out", p(ca + ".pem"), "-days", "30", "-subj", "/CN=" + cn,
                 "-extensions", "v3_ca")

    def leaf(name, cn, ext, dates):
        _openssl("req", "-config", cnf, "-new", *ec, "-keyout", p(name + ".key"),
                 "-out", p(name + ".csr"), "-subj", "/CN=" + cn)
        _openssl("ca", "-config", cnf, "-batch", "-notext", "-extensions", ext,
                 "-in", p(name + ".csr"), "-out", p(name + ".pem"), *dates)
        return CertPair(p(name + ".pem"), p(name + ".key"))

    m = TLSMaterial()
    m.dir = d
    m.ca, m.ca_key = p("ca.pem"), p("ca.key")
    m.other_ca = p("other_ca.pem")
    m.server = leaf("server", "127.0.0.1", "v3_server", ["-days", "30"])
    m.wrong_host = leaf("wrong_host", "wrong.example", "v3_wrong", ["-days", "30"])
    m.expired = leaf("expired", "127.0.0.1", "v3_server",
                     ["-startdate", "20200101000000Z", "-enddate", "20200201000000Z"])
    # The expired one must really be expired, the others must not be.
    if _openssl("x509", "-checkend", "0", "-noout", "-in", m.expired.cert, check=False).returncode == 0:
        raise AssertionError("tls_material: %s is not expired" % m.expired.cert)
    for c in (m.ca, m.other_ca, m.server.cert, m.wrong_host.cert):
        _openssl("x509", "-checkend", "3600", "-noout", "-in", c)
    return m


# --------------------------------------------------------------------------
# tinyproxy

def free_port():
    """A port that was free a moment ago on 127.0.0.1 (for programs that
    cannot bind port 0 themselves)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proxy:
    def __init__(self, proc, port, auth, log, confdir):
        self.proc, self.pid, self.port, self.auth = proc, proc.pid, port, auth
        self._log = log
        self.confdir = confdir

    @property
    def url(self):
        """http://[user:pass@]127.0.0.1:PORT"""
        cred = "%s:%s@" % self.auth if self.auth else ""
        return "http://%s127.0.0.1:%d" % (cred, self.port)

    @property
    def url_noauth(self):
        return "http://127.0.0.1:%d" % self.port

    def log(self):
        return "\n".join(self._log.snapshot())

    def wait_log(self, pattern, timeout=EVENT_TIMEOUT):
        """Wait for a log line matching the regex pattern; fails the test if none
        comes within timeout."""
        rx = re.compile(pattern)
        line = self._log.wait(lambda ls: next((l for l in ls if rx.search(l)), None), timeout)
        if line is None:
            raise AssertionError("tinyproxy: no log line matching %r within %.0f s; log:\n%s"
                                 % (pattern, timeout, self.log()[-4000:]))
        return line

    def connect_requests(self):
        """host:port of every CONNECT request tinyproxy logged."""
        return re.findall(r"Request \(file descriptor \d+\): CONNECT (\S+) HTTP", self.log())


_TINYPROXY_CONF = """\
Port {port}
Listen 127.0.0.1
Timeout 120
MaxClients 64
LogLevel Info
PidFile "{dir}/tinyproxy.pid"
Allow 127.0.0.1
DisableViaHeader Yes
"""


@contextlib.contextmanager
def tinyproxy(auth=None):
    """Start /usr/bin/tinyproxy -d on a free 127.0.0.1 port; CONNECT to any port
    (no ConnectPort line); auth=(user, password) requires Basic auth.  Yields a
    Proxy; its log (tinyproxy logs to stdout when LogFile is unset) is kept."""
    if not os.access(TINYPROXY, os.X_OK):
        raise AssertionError("%s is not installed: the proxy tests need Debian's tinyproxy "
                             "(apt-get install tinyproxy)" % TINYPROXY)
    with tempfile.TemporaryDirectory(prefix="stws-tinyproxy-") as d:
        conf = os.path.join(d, "tinyproxy.conf")
        last = ""
        for attempt in range(10):
            port = free_port()
            text = _TINYPROXY_CONF.format(port=port, dir=d)
            if os.geteuid() == 0:
                # tinyproxy as root would otherwise warn and keep root; say so.
                text += "User root\nGroup root\n"
            if auth:
                text += "BasicAuth %s %s\n" % auth
            with open(conf, "w") as f:
                f.write(text)
            proc = subprocess.Popen([TINYPROXY, "-d", "-c", conf], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            log = _LineReader(proc.stdout)
            try:
                ready = log.wait(lambda ls: any("Accepting connections" in l for l in ls),
                                 STARTUP_TIMEOUT)
                if ready:
                    yield Proxy(proc, port, auth, log, d)
                    return
            finally:
                _kill_group(proc)
                log.join()
                proc.stdout.close()
            last = "\n".join(log.snapshot())
            if "listening socket" not in last and "Address already in use" not in last:
                break  # not a port clash: do not retry
        raise AssertionError("tinyproxy did not start (config %s):\n%s\n%s" % (conf, text, last))


def proxy_connect(proxy_port, host, port, auth=None, timeout=30):
    """Open a socket to the proxy, CONNECT host:port; returns (status, head,
    socket).  The socket is the tunnel when status is 200."""
    import base64
    s = socket.create_connection(("127.0.0.1", proxy_port), timeout=timeout)
    req = "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n" % (host, port, host, port)
    if auth:
        req += "Proxy-Authorization: Basic %s\r\n" % base64.b64encode(
            ("%s:%s" % auth).encode()).decode()
    s.sendall((req + "\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)  # byte by byte: nothing past the head may be consumed
        if not chunk:
            break
        head += chunk
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, head.decode("latin-1"), s


# --------------------------------------------------------------------------
# The stws tool

def stws_path():
    build = os.environ.get("STWS_BUILD", "build")
    if not os.path.isabs(build):
        build = os.path.join(REPO, build)
    return os.path.join(build, "stws")


def require_stws():
    """Fail (not skip) with a clear message when the tool is not built."""
    p = stws_path()
    if not os.access(p, os.X_OK):
        raise AssertionError("%s does not exist or is not executable: build the stws tool "
                             "first (STWS_BUILD=%r); these tests run it against real peers"
                             % (p, os.environ.get("STWS_BUILD", "build")))
    return p


SANITIZER_RX = re.compile(r"AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:")


class StwsResult(tuple):
    """(status, stdout bytes, stderr text); also .elapsed seconds and .argv.
    status is negative (-signal) if stws died of a signal."""
    def __new__(cls, status, out, err, elapsed, argv):
        self = tuple.__new__(cls, (status, out, err))
        self.elapsed, self.argv = elapsed, argv
        return self

    status = property(lambda self: self[0])
    stdout = property(lambda self: self[1])
    stderr = property(lambda self: self[2])

    def describe(self):
        return ("stws %s\n  exit status %s after %.1f s\n  stdout (%d bytes): %r\n  stderr: %s"
                % (" ".join(self.argv[1:]), self.status, self.elapsed, len(self.stdout),
                   self.stdout[:600], self.stderr.strip()[-2000:] or "(empty)"))


def run_command(argv, input=b"", timeout=STWS_TIMEOUT, env=None):
    """Run argv in its own process group with input on stdin; returns a
    StwsResult.  A run that outlives timeout is killed (whole group) and is a
    test failure (AssertionError)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, env=env)
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        raise AssertionError("%s did not exit within %.0f s and was killed\n  stdout: %r\n  stderr: %s"
                             % (" ".join(argv), timeout, out[:600],
                                err.decode("utf-8", "replace")[-2000:]))
    except BaseException:
        _kill_group(proc)
        raise
    finally:
        # Nothing it started may outlive it.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return StwsResult(proc.returncode, out, err.decode("utf-8", "replace"),
                      time.monotonic() - t0, argv)


def run_stws(args, input=b"", timeout=STWS_TIMEOUT):
    """Run $STWS_BUILD/stws ARGS with input (bytes or str) on stdin; returns
    (status, stdout bytes, stderr text) as a StwsResult.  Fails the test if the
    tool is missing, if it runs longer than timeout (it is killed), or if a
    sanitizer reported an error."""
    if isinstance(input, str):
        input = input.encode("utf-8")
    r = run_command([require_stws()] + list(args), input=input, timeout=timeout)
    if SANITIZER_RX.search(r.stderr):
        raise AssertionError("sanitizer report from stws:\n" + r.describe())
    return r


class StwsProcess:
    """stws running with stdin open; stdout read line by line in a thread."""

    def __init__(self, argv):
        self.argv = argv
        self.t0 = time.monotonic()
        self._err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._err, start_new_session=True)
        self.pid = self.proc.pid
        self._out = _LineReader(self.proc.stdout)

    def write(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def close_stdin(self):
        self.proc.stdin.close()

    def lines(self):
        return self._out.snapshot()

    def wait_lines(self, n, timeout=EVENT_TIMEOUT):
        """Wait until stws printed at least n lines; returns them; fails the
        test if it did not within timeout."""
        got = self._out.wait(lambda ls: list(ls) if len(ls) >= n else None, timeout)
        if got is None:
            raise AssertionError("stws printed %d of %d expected lines within %.0f s: %r\n  stderr: %s"
                                 % (len(self.lines()), n, timeout, self.lines()[:20], self.stderr()))
        return got

    def wait(self, timeout=STWS_TIMEOUT):
        """Wait for exit; returns a StwsResult (stdout joined back from lines).
        Not exiting within timeout is a test failure (it is killed)."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(self.proc)
            raise AssertionError("stws %s did not exit within %.0f s and was killed\n  stdout: %r\n"
                                 "  stderr: %s" % (" ".join(self.argv[1:]), timeout,
                                                   self.lines()[:20], self.stderr()))
        self._out.join()
        out = "".join(l + "\n" for l in self.lines()).encode("utf-8")
        r = StwsResult(self.proc.returncode, out, self.stderr(), time.monotonic() - self.t0,
                       self.argv)
        if SANITIZER_RX.search(r.stderr):
            raise AssertionError("sanitizer report from stws:\n" + r.describe())
        return r

    def stderr(self):
        self._err.seek(0)
        return self._err.read().decode("utf-8", "replace")

    def stop(self):
        _kill_group(self.proc)
        self._out.join()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        self._err.close()


@contextlib.contextmanager
def stws_process(args):
    """Start $STWS_BUILD/stws ARGS with stdin a pipe; yields a StwsProcess; the
    process group is killed on exit."""
    p = StwsProcess([require_stws()] + list(args))
    try:
        yield p
    finally:
        p.stop()


# --------------------------------------------------------------------------
# The mock Stream coordinator (tools/mock_coordinator.py)

MOCK_COORDINATOR = os.path.join(REPO, "tools", "mock_coordinator.py")


class MockCoordinator:
    """A running tools/mock_coordinator.py on 127.0.0.1.  Its stderr (log lines,
    then the one-line JSON summary at exit) is read line by line."""

    def __init__(self, args, port=0):
        self.args = list(args)
        self.argv = [PYTHON, MOCK_COORDINATOR, "--host", "127.0.0.1", "--port", str(port)] + self.args
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True)
        self.pid = self.proc.pid
        self.port = None
        self._out = _LineReader(self.proc.stdout)
        self._log = _LineReader(self.proc.stderr)

    def _started(self, timeout):
        line = self._out.wait(lambda ls: next((l for l in ls if l.startswith("PORT ")), None),
                              timeout)
        if line is None:
            return False
        self.port = int(line.split()[1])
        return True

    # ---- addresses
    def url(self, path="/api/v2/connect"):
        return "ws://127.0.0.1:%d%s" % (self.port, path)

    # ---- log and summary
    def log(self):
        return self._log.snapshot()

    def wait_log(self, pattern, timeout=EVENT_TIMEOUT, count=1):
        """The count-th stderr line matching the regex pattern; fails the test
        if it does not come within timeout."""
        rx = re.compile(pattern)

        def pred(lines):
            hits = [l for l in lines if rx.search(l)]
            return hits[count - 1] if len(hits) >= count else None
        line = self._log.wait(pred, timeout)
        if line is None:
            raise AssertionError("mock coordinator: no %sline matching %r within %.0f s\n%s"
                                 % ("%d " % count if count > 1 else "", pattern, timeout,
                                    self.diagnostics()))
        return line

    def diagnostics(self):
        lines = self._log.snapshot()
        return ("  mock %s (exit status %r)\n  mock stderr (last %d of %d lines):\n    %s"
                % (" ".join(self.args), self.proc.poll(), min(40, len(lines)), len(lines),
                   "\n    ".join(lines[-40:]) or "(none)"))

    def signal(self, sig):
        os.kill(self.pid, sig)

    def terminate(self, timeout=EVENT_TIMEOUT):
        """SIGTERM, wait for the exit; returns the summary (dict).  Not exiting
        within timeout is a test failure (the group is killed)."""
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def wait_exit(self, timeout=EVENT_TIMEOUT):
        """Wait for the mock to exit by itself (--max-connections, a signal);
        returns the summary (dict)."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(self.proc)
            raise AssertionError("mock coordinator did not exit within %.0f s\n%s"
                                 % (timeout, self.diagnostics()))
        self._log.join()
        return self.summary()

    def summary(self):
        """The exit summary (the last stderr line, JSON); the mock must have exited."""
        lines = self._log.snapshot()
        if self.proc.poll() is None or not lines or not lines[-1].startswith("{"):
            raise AssertionError("mock coordinator: no exit summary\n" + self.diagnostics())
        return json.loads(lines[-1])

    def stop(self):
        _kill_group(self.proc)
        self._out.join()
        self._log.join()
        for f in (self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass


@contextlib.contextmanager
def mock_coordinator(*args, port=0):
    """Start tools/mock_coordinator.py ARGS on 127.0.0.1 (port 0: the OS chooses),
    wait for its "PORT <n>" line and yield a MockCoordinator (.port, .url()).
    The process group is killed on exit, also when the body raised.  A mock that
    cannot start (e.g. port taken) is an AssertionError."""
    m = MockCoordinator(args, port)
    try:
        if not m._started(STARTUP_TIMEOUT):
            if m.proc.poll() is not None:
                m._log.wait(lambda ls: False, 5)  # returns at the end of its stderr
                raise AssertionError("mock coordinator exited (status %d) without reporting its "
                                     "port\n%s" % (m.proc.returncode, m.diagnostics()))
            raise AssertionError("mock coordinator did not report its port within %.0f s\n%s"
                                 % (STARTUP_TIMEOUT, m.diagnostics()))
        yield m
    finally:
        m.stop()
