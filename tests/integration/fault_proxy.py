"""A TCP fault proxy for the integration tests: it sits between a client and a
real server (both on 127.0.0.1), forwards bytes both ways and applies faults
at exact byte offsets.  It knows nothing of WebSocket or TLS: a fault "after K
bytes" counts the bytes of one direction on one connection, so a test can put
a reset inside a frame or inside a TLS record by choosing K.

    with FaultProxy(target_port, faults=[Fault("s2c", "reset", after=5000)]) as fp:
        url = "ws://127.0.0.1:%d/" % fp.port
        ...
        fp.wait_event("reset", conn=1)

Directions: "c2s" (client to server) and "s2c" (server to client).
Actions (each applies to one direction from byte `after` of it on, on the
connections listed in `conns`, default every connection):
  stall       forward nothing either way for `seconds` (data already read
              waits in the proxy; reads continue into it)
  pause       stop reading the direction's source for `seconds`: its bytes
              stay in the kernel, so the sender's socket fills (back-pressure)
  trickle     forward the direction one byte per send() (TCP_NODELAY), for
              `count` bytes (default: the rest of the connection)
  half_close  forward exactly `after` bytes, then shutdown(SHUT_WR) towards the
              destination (it sees EOF); the other direction goes on
  reset       forward exactly `after` bytes, wait until the destination's
              kernel has acknowledged them, then close both sockets with
              SO_LINGER 0 (each side gets a TCP RST; what a side had not
              yet sent to the proxy is lost in its own kernel)
Sockets towards the client are made with small buffers (`bufsize`), so that
pauses reach the client's own socket quickly.

Events (dicts, in order; the test waits on them with a bound):
  accept      conn                       a client connected (and the proxy
                                         reached the server)
  fault       conn, dir, action, at      a fault started at byte `at`
  resume      conn, dir, action          a stall or pause ended
  eof         conn, dir, bytes, how      the direction ended: "eof" (its
                                         source ended, passed on) or
                                         "half_close" (the fault)
  reset       conn, dir, at              the connection was reset
  error       conn, dir, error           a send or receive failed (e.g. the
                                         peer reset): both sides are reset
  closed      conn, c2s, s2c             both directions are done: bytes
                                         forwarded each way
The bytes forwarded in each direction are kept per connection (.data(conn,
dir)), so a test can parse what really reached the other side.

Every thread is a daemon, every socket is closed by stop() (the context
manager calls it, also when the test failed).  Run as a program for manual
use:  fault_proxy.py TARGET_PORT [--fault DIR:ACTION:AFTER[:SECONDS]]...,
e.g. --fault s2c:reset:5000 --fault c2s:pause:0:3 (see --help).
"""

import argparse
import fcntl
import select
import socket
import struct
import sys
import termios
import threading
import time

DIRS = ("c2s", "s2c")
ACTIONS = ("stall", "pause", "trickle", "half_close", "reset")
CHUNK = 65536


class Fault:
    def __init__(self, dir, action, after=0, seconds=0.0, count=None, conns=None):
        if dir not in DIRS or action not in ACTIONS:
            raise ValueError("bad fault %r %r" % (dir, action))
        self.dir, self.action, self.after = dir, action, int(after)
        self.seconds, self.count = float(seconds), count
        self.conns = None if conns is None else set(conns)

    def applies(self, conn):
        return self.conns is None or conn in self.conns

    def __repr__(self):
        return "Fault(%s %s after=%d%s%s)" % (self.dir, self.action, self.after,
                                             " seconds=%g" % self.seconds if self.seconds else "",
                                             " conns=%s" % sorted(self.conns) if self.conns else "")


class _Dir:
    def __init__(self, name, src, dst, faults):
        self.name, self.src, self.dst = name, src, dst
        self.faults = faults        # not yet started, by offset
        self.buf = bytearray()      # read, not yet forwarded
        self.count = 0              # bytes forwarded
        self.data = bytearray()     # every byte forwarded
        self.paused_until = 0.0
        self.trickle_left = 0
        self.src_eof = False
        self.done = False           # nothing more goes this way

    def cap(self):
        """Bytes that may still be read before the next fault's offset."""
        c = CHUNK - len(self.buf)
        if self.faults:
            c = min(c, self.faults[0].after - self.count - len(self.buf))
        return c


class _Conn:
    """One client connection: a thread runs both directions with select(), so
    a reset closes sockets no other thread is blocked on (the RST leaves at
    once)."""

    def __init__(self, proxy, n, client, server):
        self.proxy, self.n = proxy, n
        self.client, self.server = client, server
        self.stall_until = 0.0
        self.dead = False
        fl = lambda d: sorted((f for f in proxy.faults if f.dir == d and f.applies(n)),  # noqa: E731
                              key=lambda f: f.after)
        self.dirs = [_Dir("c2s", client, server, fl("c2s")), _Dir("s2c", server, client, fl("s2c"))]
        for sck in (client, server):
            sck.setblocking(False)

    @property
    def data(self):
        return {d.name: d.data for d in self.dirs}

    def start(self):
        threading.Thread(target=self._run, daemon=True).start()

    def _emit(self, event, **f):
        self.proxy._emit(event, conn=self.n, **f)

    def _close(self, rst):
        self.dead = True
        for sck in (self.client, self.server):
            if rst:
                try:
                    sck.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            try:
                sck.close()
            except OSError:
                pass

    def _drain(self, sck, timeout=5.0):
        """Wait until sck's send queue is empty (acknowledged), bounded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                left = struct.unpack("i", fcntl.ioctl(sck.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
            except OSError:
                return
            if left == 0:
                return
            self.proxy._stopping.wait(0.002)

    def _start_faults(self, d, now):
        while d.faults and d.faults[0].after <= d.count and not d.buf:
            f = d.faults.pop(0)
            self._emit("fault", dir=d.name, action=f.action, at=d.count)
            if f.action == "reset":
                # the K bytes must have reached the peer's kernel: an RST
                # discards what is still in our send queue
                self._drain(d.dst)
                self._close(rst=True)
                self._emit("reset", dir=d.name, at=d.count)
                return
            if f.action == "half_close":
                try:
                    d.dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                d.done = True
                self._emit("eof", dir=d.name, bytes=d.count, how="half_close")
            elif f.action == "pause":
                d.paused_until = now + f.seconds
            elif f.action == "stall":
                self.stall_until = max(self.stall_until, now + f.seconds)
            elif f.action == "trickle":
                d.trickle_left = f.count if f.count is not None else float("inf")

    def _run(self):
        stopping = self.proxy._stopping
        try:
            while not self.dead and not stopping.is_set():
                now = time.monotonic()
                for d in self.dirs:
                    if not d.done and not self.dead:
                        self._start_faults(d, now)
                if self.dead:
                    return
                if all(d.done for d in self.dirs):
                    self._close(rst=False)
                    return
                rd, wr, timers = [], [], [0.2]
                stalled = self.stall_until > now
                if stalled:
                    timers.append(self.stall_until - now)
                elif self.stall_until:
                    self.stall_until = 0.0
                    self._emit("resume", action="stall")
                for d in self.dirs:
                    if d.done:
                        continue
                    if d.paused_until > now:
                        timers.append(d.paused_until - now)
                    elif d.paused_until:
                        d.paused_until = 0.0
                        self._emit("resume", dir=d.name, action="pause")
                    if not d.src_eof and not d.paused_until and d.cap() > 0:
                        rd.append(d)
                    if d.buf and not stalled:
                        wr.append(d)
                r, w, _ = select.select([d.src for d in rd], [d.dst for d in wr], [], min(timers))
                for d in wr:
                    if d.dst in w and not self.dead:
                        n = 1 if d.trickle_left else len(d.buf)
                        try:
                            n = d.dst.send(bytes(d.buf[:n]))
                        except BlockingIOError:
                            continue
                        except OSError as e:
                            self._emit("error", dir=d.name, error=str(e))
                            self._close(rst=True)
                            return
                        d.data += d.buf[:n]
                        del d.buf[:n]
                        d.count += n
                        if d.trickle_left:
                            d.trickle_left -= n
                for d in rd:
                    if d.src in r and not self.dead:
                        try:
                            chunk = d.src.recv(d.cap())
                        except BlockingIOError:
                            continue
                        except OSError as e:  # e.g. a reset: pass it on
                            self._emit("error", dir=d.name, error=str(e))
                            self._close(rst=True)
                            return
                        if chunk:
                            d.buf += chunk
                        else:
                            d.src_eof = True
                for d in self.dirs:
                    if d.src_eof and not d.buf and not d.done:
                        try:
                            d.dst.shutdown(socket.SHUT_WR)  # pass the EOF on
                        except OSError:
                            pass
                        d.done = True
                        self._emit("eof", dir=d.name, bytes=d.count, how="eof")
        finally:
            if not self.dead:
                self._close(rst=False)
            self._emit("closed", c2s=self.dirs[0].count, s2c=self.dirs[1].count)


class FaultProxy:
    """Listens on 127.0.0.1:0 (.port) and forwards each connection to
    127.0.0.1:target_port with the given faults."""

    def __init__(self, target_port, faults=(), bufsize=8192):
        self.target_port = target_port
        self.faults = list(faults)
        self.bufsize = bufsize
        self.events = []
        self.cond = threading.Condition()
        self.conns = {}
        self._stopping = threading.Event()
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if bufsize:  # inherited by accepted sockets
            self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, bufsize)
            self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, bufsize)
        self._lsock.bind(("127.0.0.1", 0))
        self._lsock.listen(16)
        self.port = self._lsock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    # ---- events
    def _emit(self, event, **fields):
        with self.cond:
            self.events.append(dict(event=event, t=time.monotonic(), **fields))
            self.cond.notify_all()

    def find(self, event=None, **match):
        with self.cond:
            return [e for e in self.events if (event is None or e["event"] == event)
                    and all(e.get(k) == v for k, v in match.items())]

    def wait_event(self, event, timeout=60.0, count=1, **match):
        """The count-th matching event; AssertionError if none within timeout."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                hits = [e for e in self.events if e["event"] == event
                        and all(e.get(k) == v for k, v in match.items())]
                if len(hits) >= count:
                    return hits[count - 1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("fault proxy: no %s%s event within %.0f s%s; events:\n  %s"
                                         % ("%d. " % count if count > 1 else "", event, timeout,
                                            " matching %r" % match if match else "",
                                            "\n  ".join(repr(e) for e in self.events[-30:])))
                self.cond.wait(left)

    def data(self, conn, dir):
        """The bytes forwarded so far in one direction of connection conn."""
        return bytes(self.conns[conn].data[dir])

    # ---- life
    def _accept_loop(self):
        n = 0
        while not self._stopping.is_set():
            try:
                client, _ = self._lsock.accept()
            except OSError:
                return
            n += 1
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=30)
                server.settimeout(None)
            except OSError as e:
                self._emit("connect_failed", conn=n, error=str(e))
                client.close()
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c = _Conn(self, n, client, server)
            self.conns[n] = c
            self._emit("accept", conn=n)
            c.start()

    def stop(self):
        self._stopping.set()
        try:  # shutdown wakes the accept() blocked in our thread (close alone does not)
            self._lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._lsock.close()
        self._thread.join(5)
        # each connection's thread sees _stopping within 0.2 s and closes its
        # sockets; wait for that (bounded) so nothing outlives the test
        deadline = time.monotonic() + 5
        for c in list(self.conns.values()):
            while not c.dead and time.monotonic() < deadline:
                with self.cond:
                    self.cond.wait(0.05)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def main():
    ap = argparse.ArgumentParser(description="TCP fault proxy on 127.0.0.1 (see the module doc)")
    ap.add_argument("target_port", type=int)
    ap.add_argument("--fault", action="append", default=[], metavar="DIR:ACTION:AFTER[:SECONDS]",
                    help="e.g. s2c:reset:5000, c2s:pause:0:3, s2c:trickle:0")
    args = ap.parse_args()
    faults = []
    for spec in args.fault:
        parts = spec.split(":")
        faults.append(Fault(parts[0], parts[1], int(parts[2]) if len(parts) > 2 else 0,
                            float(parts[3]) if len(parts) > 3 else 0.0))
    with FaultProxy(args.target_port, faults) as fp:
        print("PORT %d" % fp.port, flush=True)
        seen = 0
        try:
            while True:
                with fp.cond:
                    fp.cond.wait(1.0)
                    new = fp.events[seen:]
                    seen = len(fp.events)
                for e in new:
                    print(e, file=sys.stderr, flush=True)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
