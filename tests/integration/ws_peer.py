#!/usr/bin/python3
"""WebSocket test peer for the stws integration tests (a python-websockets server).

Run:  /usr/bin/python3 ws_peer.py MODE [--cert FILE --key FILE] [--subprotocol P]...
                                       [--close-timeout S] [--wait-timeout S]

It binds 127.0.0.1 on a port the OS chooses and writes one JSON object per line
on stdout, flushed per line.  The first line is
    {"event": "listening", "port": N, "tls": BOOL, "mode": MODE}
and every later line records what happened on a connection ("conn" is a
connection number starting at 1):
    connect      path, headers ([[name, value], ...]), subprotocol, tls_version
                 ("TLSv1.3", null without TLS) (websockets modes)
    request      request_line, headers (raw modes: stall, stall-noread, no-upgrade)
    upgraded     the raw 101 answer was written (stall modes)
    message      type ("text"|"binary"), len, sha256, data (text, or hex for
                 binary; only when len <= 4096) -- every message the peer received
    sent         type, len, sha256, data, fragments -- every message the peer sent
    ping_sent    data (hex);   pong: data (hex) -- the matching pong arrived;
    pong_timeout data (hex)   -- no matching pong within --wait-timeout
    frame        fin, opcode, len, data (hex, first 4096 bytes), close_code,
                 close_reason -- a raw frame read in stall mode (unmasked)
    await_timeout want, have  -- fewer messages than expected came back in time
    aborted      the abort-midframe peer closed the TCP connection mid-frame
    eof          the client closed the TCP connection (raw modes)
    closed       code, reason (the close frame the client sent, null if none),
                 sent_code, sent_reason (the close frame the peer sent, null if
                 none), client_first (true if the client's close came first)
    error        error (text)

Modes:
  echo             echo every message back with its type.
  record           record every message; never send; the client closes.
  send:SPEC        send SPEC's messages, then close (default: close 1000).  SPEC is
                   a comma-separated list of items:
                     text:N           generated UTF-8 text of exactly N bytes
                     binary:N         generated binary message of N bytes
                     text=STR         that text (percent-decoded: %2C is a comma)
                     binary=HEX       those bytes
                     await:N          wait until N messages in all have come in
                     close:CODE[:WHY] close with CODE and reason WHY (percent-decoded)
                     hold             do not close; wait for the client to close
                   Generated content depends on (kind, N, position in SPEC) only:
                   see gen_text / gen_binary, which the tests import.
  fragmented       send five fragmented messages (str fragments, bytes fragments
                   with an empty one, a text message whose UTF-8 character is
                   split across two frames, a message with a ping between its
                   fragments, a 300-fragment binary message), wait for them to be
                   echoed back, close 1000.
  ping             send pings with payloads "", "ping-1" and 125 bytes 0..124, one
                   at a time, each waiting for its pong; then close 1000.
  close:CODE       after the first message comes in, close with CODE, reason
                   "closing with CODE".
  abort-midframe   after the handshake, write the first half of a binary frame
                   (header announcing 256 bytes, then 100 bytes) and close the TCP
                   connection (FIN, after flushing).
  stall            raw: answer the upgrade with 101, then never send anything;
                   what the client sends is read and logged as "frame" events, but
                   never answered (not even a close).
  stall-noread     raw: answer the upgrade with 101, then neither send nor read.
  no-upgrade       raw: accept TCP (and TLS), read the request, never answer; log
                   "eof" when the client goes away.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import random
import ssl
import struct
import sys
import urllib.parse

import websockets
from websockets.exceptions import ConnectionClosed

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PREVIEW = 4096

# --------------------------------------------------------------------------
# Deterministic message content, shared with the tests (they import it).

_TEXT_UNIT = "Grüße, ϰόσμε! € 𝄞 ok 0123456789 -- "


def gen_text(n, seed=0):
    """UTF-8 text of exactly n bytes (multi-byte characters included)."""
    unit = ("[%d]" % seed + _TEXT_UNIT).encode("utf-8")
    data = (unit * (n // len(unit) + 1))[:n]
    text = data.decode("utf-8", errors="ignore")  # drops a cut character at the end
    text += "." * (n - len(text.encode("utf-8")))
    return text


def gen_binary(n, seed=0):
    """n pseudo-random bytes, the same for the same (n, seed)."""
    return random.Random(1000003 * seed + n).randbytes(n)


def describe(data):
    """The fields that describe a message in "message" and "sent" events."""
    if isinstance(data, str):
        raw = data.encode("utf-8")
        d = {"type": "text", "len": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
        d["data"] = data if len(raw) <= PREVIEW else None
    else:
        raw = bytes(data)
        d = {"type": "binary", "len": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
        d["data"] = raw.hex() if len(raw) <= PREVIEW else None
    return d


def parse_spec(spec):
    """SPEC of send:SPEC -> list of (action, value)."""
    items = []
    for pos, item in enumerate(spec.split(",")):
        if not item:
            continue
        if item.startswith("text:"):
            items.append(("send", gen_text(int(item[5:]), pos)))
        elif item.startswith("binary:"):
            items.append(("send", gen_binary(int(item[7:]), pos)))
        elif item.startswith("text="):
            items.append(("send", urllib.parse.unquote(item[5:])))
        elif item.startswith("binary="):
            items.append(("send", bytes.fromhex(item[7:])))
        elif item.startswith("await:"):
            items.append(("await", int(item[6:])))
        elif item.startswith("close:"):
            code, _, why = item[6:].partition(":")
            items.append(("close", (int(code), urllib.parse.unquote(why))))
        elif item == "hold":
            items.append(("hold", None))
        else:
            raise ValueError("bad send spec item %r" % item)
    return items


def spec_messages(spec):
    """The messages send:SPEC sends, in order (for the tests)."""
    return [v for a, v in parse_spec(spec) if a == "send"]


# --------------------------------------------------------------------------
# Raw frame parsing (stall mode; the self-check uses it as a raw client too).

def parse_frame(buf):
    """One frame from the start of buf: (fin, opcode, payload, used) or None."""
    if len(buf) < 2:
        return None
    b0, b1 = buf[0], buf[1]
    n = b1 & 0x7F
    pos = 2
    if n == 126:
        if len(buf) < 4:
            return None
        n = struct.unpack("!H", buf[2:4])[0]
        pos = 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n = struct.unpack("!Q", buf[2:10])[0]
        pos = 10
    mask = None
    if b1 & 0x80:
        if len(buf) < pos + 4:
            return None
        mask = buf[pos:pos + 4]
        pos += 4
    if len(buf) < pos + n:
        return None
    payload = bytes(buf[pos:pos + n])
    if mask:
        m = (bytes(mask) * (n // 4 + 1))[:n]
        payload = (int.from_bytes(payload, "big") ^ int.from_bytes(m, "big")).to_bytes(n, "big")
    return bool(b0 & 0x80), b0 & 0x0F, payload, pos + n


def accept_key(key):
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


# --------------------------------------------------------------------------

class Peer:
    def __init__(self, args):
        self.args = args
        self.mode = args.mode
        self.nconn = 0

    def emit(self, event, **fields):
        fields = dict(event=event, **fields)
        sys.stdout.write(json.dumps(fields) + "\n")
        sys.stdout.flush()

    # ---- python-websockets modes --------------------------------------------

    async def handler(self, ws):
        self.nconn += 1
        conn = self.nconn
        sslobj = ws.transport.get_extra_info("ssl_object")
        self.emit("connect", conn=conn, path=ws.path,
                  headers=[[k, v] for k, v in ws.request_headers.raw_items()],
                  subprotocol=ws.subprotocol,
                  tls_version=sslobj.version() if sslobj is not None else None)
        received = []
        got = asyncio.Event()

        async def reader(echo=False, close_after_first=None):
            try:
                async for msg in ws:
                    self.emit("message", conn=conn, **describe(msg))
                    received.append(msg)
                    got.set()
                    if echo:
                        await ws.send(msg)
                        self.emit("sent", conn=conn, fragments=1, **describe(msg))
                    if close_after_first is not None:
                        await ws.close(close_after_first, "closing with %d" % close_after_first)
                        return
            except ConnectionClosed:
                pass

        async def wait_count(n):
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.args.wait_timeout
            while len(received) < n and ws.open:
                got.clear()
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    await asyncio.wait_for(got.wait(), min(left, 0.5))
                except asyncio.TimeoutError:
                    pass
            if len(received) < n:
                self.emit("await_timeout", conn=conn, want=n, have=len(received))

        try:
            mode = self.mode
            if mode == "echo":
                await reader(echo=True)
            elif mode == "record":
                await reader()
            elif mode.startswith("close:"):
                await reader(close_after_first=int(mode[6:]))
            elif mode.startswith("send:"):
                task = asyncio.ensure_future(reader())
                closed = False
                for action, value in parse_spec(mode[5:]):
                    if action == "send":
                        await ws.send(value)
                        self.emit("sent", conn=conn, fragments=1, **describe(value))
                    elif action == "await":
                        await wait_count(value)
                    elif action == "close":
                        await ws.close(value[0], value[1])
                        closed = True
                    elif action == "hold":
                        await task
                        closed = True
                if not closed:
                    await ws.close(1000, "")
                await task
            elif mode == "fragmented":
                task = asyncio.ensure_future(reader())
                await self.send_fragmented(ws, conn)
                await wait_count(5)
                await ws.close(1000, "")
                await task
            elif mode == "ping":
                task = asyncio.ensure_future(reader())
                for payload in (b"", b"ping-1", bytes(range(125))):
                    waiter = await ws.ping(payload)
                    self.emit("ping_sent", conn=conn, data=payload.hex())
                    await self.wait_pong(conn, waiter, payload)
                await ws.close(1000, "")
                await task
            elif mode == "abort-midframe":
                ws.transport.write(b"\x82\x7e\x01\x00" + bytes(range(100)))
                ws.transport.close()
                self.emit("aborted", conn=conn)
            else:
                raise ValueError("unknown mode %r" % mode)
        except ConnectionClosed:
            pass
        except Exception as e:  # report, then let the connection go
            self.emit("error", conn=conn, error="%s: %s" % (type(e).__name__, e))
        try:
            await asyncio.wait_for(ws.wait_closed(), self.args.close_timeout + 5)
        except asyncio.TimeoutError:
            pass
        self.emit("closed", conn=conn,
                  code=ws.close_rcvd.code if ws.close_rcvd else None,
                  reason=ws.close_rcvd.reason if ws.close_rcvd else None,
                  sent_code=ws.close_sent.code if ws.close_sent else None,
                  sent_reason=ws.close_sent.reason if ws.close_sent else None,
                  client_first=ws.close_rcvd_then_sent)

    async def wait_pong(self, conn, waiter, payload):
        try:
            await asyncio.wait_for(waiter, self.args.wait_timeout)
            self.emit("pong", conn=conn, data=payload.hex())
        except asyncio.TimeoutError:
            self.emit("pong_timeout", conn=conn, data=payload.hex())

    async def send_fragmented(self, ws, conn):
        def sent(msg, nfrag):
            self.emit("sent", conn=conn, fragments=nfrag, **describe(msg))

        # 1. text from str fragments (websockets adds an empty final frame).
        frags = ["frag", "mented ", "tëxt ", "€𝄞"]
        await ws.send(frags)
        sent("".join(frags), len(frags) + 1)
        # 2. binary fragments, one of them empty.
        bfrags = [b"\x00\x01", b"", gen_binary(70000, 2)]
        await ws.send(bfrags)
        sent(b"".join(bfrags), len(bfrags) + 1)
        # 3. a UTF-8 character split across two frames ("é" is c3 a9).
        await ws.write_frame(False, 0x1, b"caf\xc3")
        await ws.write_frame(True, 0x0, b"\xa9 split")
        sent("café split", 2)
        # 4. a ping between the fragments of a message.
        ping = {}

        async def with_ping():
            yield "ping-"
            ping["waiter"] = await ws.ping(b"mid-fragment")
            self.emit("ping_sent", conn=conn, data=b"mid-fragment".hex())
            yield "inter"
            yield "leaved"
        await ws.send(with_ping())
        sent("ping-interleaved", 4)
        # 5. many small fragments.
        many = [gen_binary(100, 5 + i) for i in range(300)]
        await ws.send(many)
        sent(b"".join(many), len(many) + 1)
        await self.wait_pong(conn, ping["waiter"], b"mid-fragment")

    # ---- raw modes ----------------------------------------------------------

    async def raw_handler(self, reader, writer):
        self.nconn += 1
        conn = self.nconn
        try:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                self.emit("eof", conn=conn)
                return
            lines = head.decode("latin-1").split("\r\n")
            headers = [l.split(":", 1) for l in lines[1:] if ":" in l]
            headers = [[k.strip(), v.strip()] for k, v in headers]
            self.emit("request", conn=conn, request_line=lines[0], headers=headers)
            if self.mode == "no-upgrade":
                while await reader.read(65536):
                    pass
                self.emit("eof", conn=conn)
                return
            key = next((v for k, v in headers if k.lower() == "sec-websocket-key"), "")
            writer.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
                          % accept_key(key)).encode())
            await writer.drain()
            self.emit("upgraded", conn=conn)
            if self.mode == "stall-noread":
                await asyncio.Event().wait()  # forever; the harness kills us
            buf = bytearray()
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                buf += chunk
                while True:
                    f = parse_frame(buf)
                    if f is None:
                        break
                    fin, opcode, payload, used = f
                    del buf[:used]
                    ev = dict(fin=fin, opcode=opcode, len=len(payload),
                              data=payload[:PREVIEW].hex())
                    if opcode == 8 and len(payload) >= 2:
                        ev["close_code"] = struct.unpack("!H", payload[:2])[0]
                        ev["close_reason"] = payload[2:].decode("utf-8", "replace")
                    self.emit("frame", conn=conn, **ev)
            self.emit("eof", conn=conn)
        except ConnectionError as e:
            self.emit("eof", conn=conn, error=str(e))
        finally:
            if self.mode != "stall-noread":
                writer.close()

    # ---- main -----------------------------------------------------------------

    async def run(self):
        ctx = None
        if self.args.cert:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(self.args.cert, self.args.key)
        if self.mode in ("stall", "stall-noread", "no-upgrade"):
            server = await asyncio.start_server(self.raw_handler, "127.0.0.1", 0, ssl=ctx)
            port = server.sockets[0].getsockname()[1]
        else:
            server = await websockets.serve(
                self.handler, "127.0.0.1", 0, ssl=ctx, max_size=None, max_queue=None,
                compression=None, ping_interval=None, ping_timeout=None,
                close_timeout=self.args.close_timeout,
                subprotocols=self.args.subprotocol or None)
            port = server.sockets[0].getsockname()[1]
        self.emit("listening", port=port, tls=ctx is not None, mode=self.mode)
        await asyncio.Event().wait()  # until killed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--subprotocol", action="append", default=[])
    ap.add_argument("--close-timeout", type=float, default=10.0,
                    help="seconds a server-initiated close waits for the client's close")
    ap.add_argument("--wait-timeout", type=float, default=30.0,
                    help="seconds to wait for echoes (await:N, fragmented) and pongs")
    args = ap.parse_args()
    if bool(args.cert) != bool(args.key):
        ap.error("--cert and --key go together")
    known = ("echo", "record", "fragmented", "ping", "abort-midframe", "stall",
             "stall-noread", "no-upgrade")
    if args.mode not in known and not args.mode.startswith(("send:", "close:")):
        ap.error("unknown mode %r" % args.mode)
    if args.mode.startswith("send:"):
        parse_spec(args.mode[5:])  # fail early on a bad spec
    if args.mode.startswith("close:"):
        int(args.mode[6:])
    try:
        asyncio.run(Peer(args).run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
