#!/usr/bin/python3
"""A local mock of Stream's real-time coordinator (the WebSocket server side of
docs/PROTOCOL.md), for tests and demos of the stream_ws.h Stream client.

Run it with Debian's /usr/bin/python3 and python3-websockets (10.4); it needs
nothing else.  See `mock_coordinator.py --help` for the options and the
behaviour a client can rely on.
"""

import argparse
import asyncio
import base64
import hashlib
import hmac
import http
import json
import logging
import os
import random
import re
import select
import signal
import sys
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import websockets
from websockets.exceptions import ConnectionClosed, InvalidState
from websockets.frames import OP_CONT, OP_TEXT

CONNECT_PATHS = ("/api/v2/connect", "/video/connect")
PRODUCTS = ("chat", "video", "feeds")

# (event type, product, weight): the mix of --events-per-second traffic.
EVENT_MIX = (
    ("message.new", "chat", 45),
    ("typing.start", "chat", 20),
    ("reaction.new", "chat", 15),
    ("call.created", "video", 10),
    ("feeds.activity.added", "feeds", 10),
)
EVENT_MIN_BYTES = 200
EVENT_MAX_BYTES = 2000
NON_ASCII_SHARE = 0.12

# connection.error codes (PROTOCOL.md section 6) and their messages.
ERR_API_KEY = (2, 401, "api_key not found")
ERR_INPUT = 4
ERR_EXPIRED = (40, 401, "JWTAuth error: token has expired")
ERR_NOT_YET = (41, 401, "JWTAuth error: token is not valid yet")
ERR_IAT = (42, 401, "JWTAuth error: token used before issue at (iat)")
ERR_SIGNATURE = (43, 401, "JWTAuth error: signature is not valid")
ERR_USER_MISMATCH = (43, 401, "JWTAuth error: token user_id does not match user_details.id")
ERR_NO_USER_ID = (43, 401, "JWTAuth error: token has no user_id claim")

REDACTED = "<redacted>"
JSON_SEPARATORS = (",", ":")

HELP_DESCRIPTION = """\
A local mock of Stream's real-time coordinator (the server side of
docs/PROTOCOL.md) for tests and demos of WebSocket clients.

Startup: listens on --host:--port, then prints exactly one line "PORT <n>" to
stdout (flushed).  Log lines go to stderr, prefixed "mock_coordinator: "; they
never contain tokens, the secret or the api_key (of the query only the
X-Stream-Client value is logged).  On exit (SIGTERM, SIGINT,
--max-connections) the last stderr line is a one-line JSON summary, e.g.
  {"connections":3,"connections_ok":2,"auth_failures":{"43":1},"events_sent":10,
   "health_checks_sent":4,"client_messages":5,"client_health_checks":2,...}
and the exit status is 0.

Endpoints: ws://HOST:PORT/api/v2/connect and ws://HOST:PORT/video/connect
(wss:// with --tls-cert and --tls-key), with the query
?api_key=KEY&stream-auth-type=jwt&X-Stream-Client=... .  Any other path: the
upgrade is answered with HTTP 404.  A missing or wrong api_key: the upgrade
succeeds, the mock at once sends connection.error code 2 (StatusCode
401, "api_key not found") and closes with 1000.  stream-auth-type may be
omitted; any value but "jwt" gives connection.error code 4.

Authentication: the first client message must be a text frame holding a JSON
object {"token":JWT,"user_details":{"id":...,"name":...,"image":...,
"custom":{...},"language":...,"invisible":bool},"products":[...]}.  The mock is
strict: a missing/empty token or user_details.id, a null field, a field of the
wrong type or an unknown product gives code 4 (StatusCode 400).  The token is
checked in this order:
  43  not three base64url parts, not JSON, alg not HS256, or a bad HMAC-SHA256
      signature with --secret ("JWTAuth error: signature is not valid")
  40  exp <= now ("JWTAuth error: token has expired"); also, with
      --expire-after T, iat < now - T
  41  nbf > now + --iat-leeway
  42  iat > now + --iat-leeway ("JWTAuth error: token used before issue at (iat)")
  43  no user_id claim, or user_id != user_details.id
      ("JWTAuth error: token user_id does not match user_details.id")
Every error is {"type":"connection.error","connection_id":"","created_at":T,
"error":{"code":C,"message":M,"StatusCode":S,"duration":"","more_info":"",
"details":[]}} followed by a close frame 1000 (empty reason).  No auth message
within --auth-timeout seconds: close 1000 with reason "auth timeout" and no
connection.error.

Success: {"type":"connection.ok","connection_id":ID,"created_at":T,"me":{...}};
ID is a fresh UUID per socket.  Then, until the socket ends:
  - {"type":"health.check","connection_id":ID,"created_at":T,"custom":{}} every
    --health-interval seconds, and in answer to every client health check
    [{"type":"health.check","client_id":ID}] (array form only: the object
    form is recorded but not answered);
  - product events (--events-per-second), filtered by the auth message's
    "products" (omitted: all products; []: no events).  Every event has
    "seq" (1, 2, ... per connection) and "global_seq" (across connections).
Timestamps are RFC 3339 UTC with 9 fractional digits.  All server messages are
text frames of compact JSON (UTF-8, not ASCII-escaped).

Signals: SIGUSR1 drops every open connection abruptly (TCP closed without a
close frame); SIGUSR2 stalls every open connection (as --stall-after);
SIGTERM/SIGINT close every connection with 1001 "going away" (stalled ones are
dropped), stop listening and exit 0.
"""

HELP_EPILOG = """\
fault switches, timing: --drop-every, --stall-after and --close-with count
from the moment connection.ok was sent, on every connection.  A drop is an
abrupt TCP close (the client sees 1006, no close frame); --drop-close-code C
sends a close frame with code C instead (C = 1006: abrupt drop).  Close codes
must be sendable: 1000-1003, 1007-1014, 3000-4999 (or 1006 = abrupt drop).
A stalled connection gets nothing more (no events, health checks, pongs or
close frames) and is not read any more (its data stays in the kernel), but is
kept open until the peer closes it.

examples:
  mock_coordinator.py --health-interval 0.5 --events-per-second 20
  mock_coordinator.py --me-padding 100000 --fragment 4096
  mock_coordinator.py --drop-every 3 --record /tmp/rec.jsonl --max-connections 3
"""


# --------------------------------------------------------------------------
# Small helpers

def rfc3339(ns=None):
    """UTC RFC 3339 time with nanoseconds, e.g. 2024-05-01T12:34:56.123456789Z."""
    if ns is None:
        ns = time.time_ns()
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + ".%09dZ" % frac


def dumps(obj):
    return json.dumps(obj, ensure_ascii=False, separators=JSON_SEPARATORS)


def utf8_len(text):
    return len(text.encode("utf-8"))


def _consume_result(future):
    """Mark a future's exception as retrieved (no "never retrieved" warning)."""
    if not future.cancelled():
        future.exception()


class AuthError(Exception):
    def __init__(self, code, status, message):
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message


def input_error(message):
    return AuthError(ERR_INPUT, 400, message)


_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def b64url_decode(part):
    if not _B64URL.fullmatch(part) or len(part) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def verify_jwt(token, secret):
    """The claims of an HS256 JWT signed with secret; AuthError 43 otherwise."""
    try:
        parts = token.split(".")
        if len(parts) != 3:
            raise ValueError("not three parts")
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        signature = b64url_decode(parts[2])
        if not isinstance(header, dict) or header.get("alg") != "HS256":
            raise ValueError("alg")
        if not isinstance(claims, dict):
            raise ValueError("claims")
        for name in ("exp", "iat", "nbf"):
            if name in claims and not is_number(claims[name]):
                raise ValueError("claim type")
    except (ValueError, UnicodeDecodeError):
        raise AuthError(*ERR_SIGNATURE) from None
    signed = (parts[0] + "." + parts[1]).encode("ascii")
    expected = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise AuthError(*ERR_SIGNATURE)
    return claims


def check_auth_message(text, opts, now):
    """Validate the first client message; returns (user_details, products).
    products is None when the client sent none (= no filter)."""
    if not isinstance(text, str):
        raise input_error("the auth message must be a text frame")
    try:
        msg = json.loads(text)
    except ValueError:
        raise input_error("the auth message is not valid JSON") from None
    if not isinstance(msg, dict):
        raise input_error("the auth message must be a JSON object")
    token = msg.get("token")
    if token is None or token == "":
        raise input_error('"token" is required')
    if not isinstance(token, str):
        raise input_error('"token" must be a string')
    details = msg.get("user_details")
    if not isinstance(details, dict):
        raise input_error('"user_details" is required and must be an object')
    uid = details.get("id")
    if not isinstance(uid, str) or uid == "":
        raise input_error('"user_details.id" is required and must be a non-empty string')
    for field, kind, kind_name in (("name", str, "a string"), ("image", str, "a string"),
                                   ("language", str, "a string"), ("custom", dict, "an object"),
                                   ("invisible", bool, "a boolean")):
        if field in details and not isinstance(details[field], kind):
            raise input_error('"user_details.%s" must be %s' % (field, kind_name))
    products = None
    if "products" in msg:
        products = msg["products"]
        if not isinstance(products, list) or not all(isinstance(p, str) for p in products):
            raise input_error('"products" must be an array of strings')
        for p in products:
            if p not in PRODUCTS:
                raise input_error('"products": unknown product "%s"' % p[:40])

    claims = verify_jwt(token, opts.secret)
    if "exp" in claims and claims["exp"] <= now:
        raise AuthError(*ERR_EXPIRED)
    if opts.expire_after is not None and "iat" in claims and claims["iat"] < now - opts.expire_after:
        raise AuthError(*ERR_EXPIRED)
    if "nbf" in claims and claims["nbf"] > now + opts.iat_leeway:
        raise AuthError(*ERR_NOT_YET)
    if "iat" in claims and claims["iat"] > now + opts.iat_leeway:
        raise AuthError(*ERR_IAT)
    if "user_id" not in claims:
        raise AuthError(*ERR_NO_USER_ID)
    if claims["user_id"] != uid:
        raise AuthError(*ERR_USER_MISMATCH)
    return details, products


def connection_error(code, status, message):
    return {
        "type": "connection.error",
        "connection_id": "",
        "created_at": rfc3339(),
        "error": {
            "code": code,
            "message": message,
            "StatusCode": status,
            "duration": "",
            "more_info": "",
            "details": [],
        },
    }


PADDING_PATTERN = "lorem ipsum dolor sit amet, café ☕ naïve Zoë 😀 façade "


def make_padding(nbytes):
    """A string of exactly nbytes UTF-8 bytes (ASCII and multi-byte mixed)."""
    pattern_bytes = utf8_len(PADDING_PATTERN)
    text = PADDING_PATTERN * (nbytes // pattern_bytes + 1)
    out = []
    size = 0
    for ch in text:
        n = utf8_len(ch)
        if size + n > nbytes:
            break
        out.append(ch)
        size += n
    return "".join(out) + "." * (nbytes - size)


def build_me(details, padding):
    now = rfc3339()
    uid = details["id"]
    custom = dict(details.get("custom") or {})
    me = {
        "id": uid,
        "name": details.get("name", uid),
    }
    if "image" in details:
        me["image"] = details["image"]
    me.update({
        "role": "user",
        "teams": [],
        "teams_role": {},
        "created_at": "2024-01-15T09:30:00.123456789Z",
        "updated_at": now,
        "last_active": now,
        "banned": False,
        "shadow_banned": False,
        "online": True,
        "invisible": details.get("invisible", False),
        "language": details.get("language", ""),
        "devices": [],
        "mutes": [],
        "channel_mutes": [],
        "blocked_user_ids": [],
        "unread_count": 0,
        "total_unread_count": 0,
        "unread_channels": 0,
        "unread_threads": 0,
        "privacy_settings": {
            "typing_indicators": {"enabled": True},
            "read_receipts": {"enabled": True},
        },
        "push_preferences": {"chat_level": "all", "call_level": "all", "disabled_until": None},
        "custom": custom,
    })
    # Chat flattens custom fields into the user object; video keeps "custom".
    for key, value in custom.items():
        if key not in me:
            me[key] = value
    if padding > 0:
        me["mock_padding"] = make_padding(padding)
    return me


# --------------------------------------------------------------------------
# Product events

ASCII_USERS = (("bob", "Bob Smith"), ("carol", "Carol Jones"), ("dave", "Dave Lee"),
               ("erin", "Erin Walsh"))
NON_ASCII_USERS = (("zoe", "Zoë Ångström"), ("jose", "José Muñoz"), ("lei", "李雷"),
                   ("soren", "Søren Kierkegård"))
ASCII_WORDS = ("hello", "world", "the", "quick", "brown", "fox", "jumps", "over", "lazy",
               "dog", "stream", "chat", "video", "feeds", "event", "message", "ship",
               "it", "today", "review", "build", "green", "merge", "deploy", "lunch?")
NON_ASCII_WORDS = ("café", "naïve", "résumé", "Ελληνικά", "日本語", "😀", "🎉", "👍🏽",
                   "Ünïcödé", "façade", "São Paulo", "Kraków", "🇫🇷", "emoji 🚀")
ESCAPE_WORDS = ('"quoted"', "back\\slash", "line\nbreak", "tab\there", "ctl\u0001char",
                "</script>")
REACTIONS = ("like", "love", "haha", "wow", "sad")


class EventFactory:
    """Realistic product events of 200..2000 bytes, deterministic for a seed."""

    def __init__(self, rng, products, me_id, me_name):
        self.rng = rng
        allowed = [(t, w) for (t, p, w) in EVENT_MIX
                   if products is None or p in products]
        self.types = [t for t, _ in allowed]
        self.weights = [w for _, w in allowed]
        self.me = (me_id, me_name)

    def enabled(self):
        return bool(self.types)

    def user(self, uid, name, now):
        return {
            "id": uid, "name": name,
            "image": "https://getstream.io/random_png/?name=" + uid,
            "role": "user", "online": True, "banned": False,
            "created_at": "2023-11-02T08:00:00.000000000Z", "updated_at": now,
            "last_active": now, "teams": [], "custom": {},
        }

    def filler(self, nbytes, non_ascii, escapes):
        """Text whose JSON-escaped UTF-8 form is at most nbytes bytes."""
        rng = self.rng
        words = []
        if non_ascii:
            words.append(rng.choice(NON_ASCII_WORDS))
        if escapes:
            words.append(rng.choice(ESCAPE_WORDS))
        while True:
            text = " ".join(words)
            if self.escaped_len(text) >= nbytes:
                break
            pool = NON_ASCII_WORDS if (non_ascii and rng.random() < 0.3) else ASCII_WORDS
            words.append(rng.choice(pool))
        while text and self.escaped_len(text) > nbytes:
            text = text[:-1]
        return text

    @staticmethod
    def escaped_len(text):
        return utf8_len(dumps(text)) - 2

    def make(self, seq, global_seq):
        rng = self.rng
        etype = rng.choices(self.types, self.weights)[0]
        non_ascii = rng.random() < NON_ASCII_SHARE
        escapes = rng.random() < 0.1
        users = NON_ASCII_USERS if non_ascii else ASCII_USERS
        actor = rng.choice(users + (self.me,)) if not non_ascii else rng.choice(users)
        target = rng.randint(EVENT_MIN_BYTES, EVENT_MAX_BYTES)
        ctx = {
            "now": rfc3339(),
            "actor": actor,
            "channel": rng.choice(("general", "random", "team-42", "support")),
            "id": uuid.UUID(int=rng.getrandbits(128), version=4).hex,
            "seq": seq,
            "global_seq": global_seq,
        }
        build = getattr(self, "_" + etype.replace(".", "_"))
        base = utf8_len(dumps(build(ctx, "")))
        room = max(0, target - base)
        if non_ascii and room < 16:
            room = min(16, EVENT_MAX_BYTES - base)
        text = self.filler(room, non_ascii, escapes and room > 12)
        return dumps(build(ctx, text))

    def _message(self, ctx, text, cid):
        uid, name = ctx["actor"]
        return {
            "id": uid + "-" + ctx["id"],
            "text": text,
            "html": "",
            "type": "regular",
            "user": self.user(uid, name, ctx["now"]),
            "attachments": [],
            "latest_reactions": [],
            "own_reactions": [],
            "reaction_counts": {},
            "reaction_scores": {},
            "reply_count": 0,
            "cid": cid,
            "created_at": ctx["now"],
            "updated_at": ctx["now"],
            "mentioned_users": [],
            "silent": False,
            "pinned": False,
        }

    def _message_new(self, ctx, text):
        cid = "messaging:" + ctx["channel"]
        uid, name = ctx["actor"]
        message = self._message(ctx, text, cid)
        return {
            "type": "message.new",
            "cid": cid,
            "channel_type": "messaging",
            "channel_id": ctx["channel"],
            "message_id": message["id"],
            "message": message,
            "user": self.user(uid, name, ctx["now"]),
            "watcher_count": 1 + ctx["seq"] % 7,
            "created_at": ctx["now"],
            "seq": ctx["seq"],
            "global_seq": ctx["global_seq"],
        }

    def _typing_start(self, ctx, text):
        uid, name = ctx["actor"]
        user = {"id": uid, "name": name, "custom": {"status": text}}
        return {
            "type": "typing.start",
            "cid": "messaging:" + ctx["channel"],
            "channel_type": "messaging",
            "channel_id": ctx["channel"],
            "user": user,
            "created_at": ctx["now"],
            "seq": ctx["seq"],
            "global_seq": ctx["global_seq"],
        }

    def _reaction_new(self, ctx, text):
        cid = "messaging:" + ctx["channel"]
        uid, name = ctx["actor"]
        message = self._message(ctx, text, cid)
        kind = REACTIONS[ctx["seq"] % len(REACTIONS)]
        reaction = {
            "message_id": message["id"],
            "user_id": uid,
            "user": self.user(uid, name, ctx["now"]),
            "type": kind,
            "score": 1,
            "created_at": ctx["now"],
            "updated_at": ctx["now"],
        }
        message["latest_reactions"] = [{"type": kind, "user_id": uid, "score": 1}]
        message["reaction_counts"] = {kind: 1}
        message["reaction_scores"] = {kind: 1}
        return {
            "type": "reaction.new",
            "cid": cid,
            "channel_type": "messaging",
            "channel_id": ctx["channel"],
            "message": message,
            "reaction": reaction,
            "user": {"id": uid, "name": name},
            "created_at": ctx["now"],
            "seq": ctx["seq"],
            "global_seq": ctx["global_seq"],
        }

    def _call_created(self, ctx, text):
        uid, name = ctx["actor"]
        call_id = ctx["id"][:12]
        return {
            "type": "call.created",
            "call_cid": "default:" + call_id,
            "created_at": ctx["now"],
            "call": {
                "type": "default",
                "id": call_id,
                "cid": "default:" + call_id,
                "current_session_id": "",
                "created_by": {"id": uid, "name": name, "role": "user", "custom": {},
                               "created_at": "2023-11-02T08:00:00.000000000Z",
                               "updated_at": ctx["now"]},
                "custom": {"description": text},
                "recording": False,
                "transcribing": False,
                "backstage": False,
                "blocked_user_ids": [],
                "settings": {"audio": {"mic_default_on": True},
                             "video": {"camera_default_on": True}},
                "created_at": ctx["now"],
                "updated_at": ctx["now"],
            },
            "members": [{"user_id": uid, "role": "host", "custom": {},
                         "created_at": ctx["now"], "updated_at": ctx["now"]}],
            "seq": ctx["seq"],
            "global_seq": ctx["global_seq"],
        }

    def _feeds_activity_added(self, ctx, text):
        uid, name = ctx["actor"]
        fid = "user:" + uid
        return {
            "type": "feeds.activity.added",
            "fid": fid,
            "created_at": ctx["now"],
            "activity": {
                "id": ctx["id"],
                "type": "post",
                "text": text,
                "user": {"id": uid, "name": name, "custom": {}},
                "feeds": [fid],
                "visibility": "public",
                "reaction_count": 0,
                "comment_count": 0,
                "custom": {},
                "created_at": ctx["now"],
                "updated_at": ctx["now"],
            },
            "custom": {},
            "seq": ctx["seq"],
            "global_seq": ctx["global_seq"],
        }


# --------------------------------------------------------------------------
# Connections

class Conn:
    """One accepted WebSocket connection."""

    def __init__(self, mock, num, ws):
        self.mock = mock
        self.num = num
        self.ws = ws
        self.connection_id = str(uuid.uuid4())
        self.lock = asyncio.Lock()
        self.stalled = False
        self.unstall_never = asyncio.get_running_loop().create_future()
        self.token = None
        self.tasks = []
        self.seq = 0

    # -- output -----------------------------------------------------------

    async def send(self, obj, fragment=None):
        text = obj if isinstance(obj, str) else dumps(obj)
        async with self.lock:
            if self.stalled:
                await self.unstall_never
            if fragment:
                await self.send_fragmented(text, fragment)
            else:
                await self.ws.send(text)

    async def send_fragmented(self, text, size):
        """text as one text message in frames of `size` payload bytes (split on
        byte boundaries, so a UTF-8 sequence may span two frames)."""
        data = text.encode("utf-8")
        await self.ws.ensure_open()
        chunks = [data[i:i + size] for i in range(0, len(data), size)] or [b""]
        try:
            for i, chunk in enumerate(chunks):
                await self.ws.write_frame(i == len(chunks) - 1,
                                          OP_TEXT if i == 0 else OP_CONT, chunk)
        except InvalidState:
            await self.ws.ensure_open()
            raise

    async def send_health(self):
        await self.send({"type": "health.check", "connection_id": self.connection_id,
                         "created_at": rfc3339(), "custom": {}},
                        self.mock.opts.fragment if self.mock.opts.fragment_all else None)
        self.mock.stats["health_checks_sent"] += 1

    # -- faults -----------------------------------------------------------

    def abort(self):
        """Close the TCP connection at once, without a close frame."""
        transport = self.ws.transport
        if transport is not None:
            transport.abort()

    async def close_with(self, code, reason=""):
        if code == 1006 or self.stalled:
            self.abort()
            return
        try:
            await asyncio.wait_for(self.lock.acquire(), self.mock.opts.close_timeout)
        except asyncio.TimeoutError:
            self.abort()
            return
        try:
            await self.ws.close(code, reason)
        finally:
            self.lock.release()

    def stall(self):
        if self.stalled:
            return
        self.stalled = True
        self.mock.log("conn %d: stalled" % self.num)
        transport = self.ws.transport
        if transport is not None and not transport.is_closing():
            try:
                transport.pause_reading()
            except RuntimeError:
                pass
        ping_task = getattr(self.ws, "keepalive_ping_task", None)
        if ping_task is not None:
            ping_task.cancel()
        self.spawn(self.watch_hangup())

    async def watch_hangup(self):
        """While stalled nothing reads the socket, so asyncio cannot see the
        peer leave; poll for it and drop the connection then."""
        sock = self.ws.transport.get_extra_info("socket") if self.ws.transport else None
        if sock is None:
            return
        mask = getattr(select, "POLLRDHUP", 0) | select.POLLHUP | select.POLLERR
        poller = select.poll()
        poller.register(sock.fileno(), mask)
        while True:
            await asyncio.sleep(0.1)
            if self.ws.transport is None or self.ws.transport.is_closing():
                return
            if any(ev & mask for _, ev in poller.poll(0)):
                self.mock.log("conn %d: peer left while stalled" % self.num)
                self.abort()
                return

    # -- tasks ------------------------------------------------------------

    def spawn(self, coro):
        task = asyncio.get_running_loop().create_task(self.guard(coro))
        self.tasks.append(task)
        return task

    async def guard(self, coro):
        try:
            await coro
        except (ConnectionClosed, asyncio.CancelledError):
            pass
        except Exception as exc:  # a bug in the mock: report, drop the socket
            self.mock.log("conn %d: internal error %s: %s" % (self.num, type(exc).__name__, exc))
            self.abort()

    def cancel_tasks(self):
        for task in self.tasks:
            task.cancel()

    # -- recording --------------------------------------------------------

    def redact(self, text):
        if self.token:
            return text.replace(self.token, REDACTED)
        return text

    def record(self, message, auth=False):
        mock = self.mock
        mock.stats["client_messages"] += 1
        if isinstance(message, str):
            if auth:
                message = self.redact_auth(message)
            else:
                message = self.redact(message)
            entry = {"conn": self.num, "connection_id": self.connection_id,
                     "t": time.monotonic(), "text": message}
        else:
            entry = {"conn": self.num, "connection_id": self.connection_id,
                     "t": time.monotonic(), "text": None,
                     "binary_base64": base64.b64encode(bytes(message)).decode("ascii")}
        if mock.record_file is not None:
            mock.record_file.write(dumps(entry) + "\n")
            mock.record_file.flush()

    def redact_auth(self, text):
        try:
            msg = json.loads(text)
        except ValueError:
            return text
        if isinstance(msg, dict) and isinstance(msg.get("token"), str) and msg["token"]:
            self.token = msg["token"]
            if self.token in text:
                return text.replace(self.token, REDACTED)
            msg["token"] = REDACTED  # escaped oddly: re-serialise instead
            return dumps(msg)
        return text


class Mock:
    def __init__(self, opts):
        self.opts = opts
        self.conns = set()
        self.next_conn = 0
        self.ended = 0
        self.attempts = 0
        self.global_seq = 0
        self.ok_count = 0
        self.stop = asyncio.Event()
        self.stop_reason = None
        self.record_file = (open(opts.record, "a", encoding="utf-8")
                            if opts.record else None)
        self.stats = {
            "connections": 0, "connections_ok": 0, "auth_failures": {},
            "auth_timeouts": 0, "events_sent": 0, "health_checks_sent": 0,
            "client_messages": 0, "client_health_checks": 0,
            "http_503": 0, "http_404": 0, "drops": 0, "stalls": 0,
            "pings_sent": 0, "pongs_received": 0,
        }

    def log(self, line):
        if not self.opts.quiet:
            print("mock_coordinator: " + line, file=sys.stderr, flush=True)

    def request_stop(self, reason):
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stop.set()

    # -- HTTP stage -------------------------------------------------------

    async def process_request(self, path, headers):
        self.attempts += 1
        attempt = self.attempts
        if self.stop.is_set():
            return (http.HTTPStatus.SERVICE_UNAVAILABLE, [("Content-Type", "text/plain")],
                    b"Service Unavailable\n")
        if attempt <= self.opts.refuse_first:
            self.stats["http_503"] += 1
            self.log("request %d: refused with 503 (--refuse-first)" % attempt)
            return (http.HTTPStatus.SERVICE_UNAVAILABLE,
                    [("Content-Type", "text/plain"), ("Retry-After", "1")],
                    b"Service Unavailable (mock --refuse-first)\n")
        if urlsplit(path).path not in CONNECT_PATHS:
            self.stats["http_404"] += 1
            self.log("request %d: unknown path, 404" % attempt)
            return http.HTTPStatus.NOT_FOUND, [("Content-Type", "text/plain")], b"Not Found\n"
        return None

    # -- WebSocket stage --------------------------------------------------

    async def handler(self, ws, path):
        self.next_conn += 1
        conn = Conn(self, self.next_conn, ws)
        self.conns.add(conn)
        self.stats["connections"] += 1
        try:
            await self.serve_conn(conn, path)
        except ConnectionClosed:
            pass
        except Exception as exc:
            self.log("conn %d: internal error %s: %s" % (conn.num, type(exc).__name__, exc))
            conn.abort()
        finally:
            conn.cancel_tasks()
            self.conns.discard(conn)
            self.ended += 1
            self.log("conn %d: ended (%s)" % (conn.num, ws.close_code))
            if self.opts.max_connections and self.ended >= self.opts.max_connections:
                self.request_stop("max-connections")

    async def fail(self, conn, code, status, message):
        failures = self.stats["auth_failures"]
        failures[str(code)] = failures.get(str(code), 0) + 1
        self.log("conn %d: connection.error %d (%s)" % (conn.num, code, message))
        await conn.send(connection_error(code, status, message))
        await conn.ws.close(1000)

    async def serve_conn(self, conn, path):
        opts = self.opts
        ws = conn.ws
        query = parse_qs(urlsplit(path).query, keep_blank_values=True)
        client = query.get("X-Stream-Client", [""])[0]
        self.log("conn %d: open %s client=%r" % (conn.num, urlsplit(path).path, client[:80]))
        if query.get("api_key", [None])[0] != opts.api_key:
            await self.fail(conn, *ERR_API_KEY)
            return
        auth_type = query.get("stream-auth-type", ["jwt"])[0]
        if auth_type != "jwt":
            await self.fail(conn, ERR_INPUT, 400,
                            "stream-auth-type %r is not supported by the mock" % auth_type[:20])
            return

        try:
            message = await asyncio.wait_for(ws.recv(), opts.auth_timeout)
        except asyncio.TimeoutError:
            self.stats["auth_timeouts"] += 1
            self.log("conn %d: no auth message within %gs" % (conn.num, opts.auth_timeout))
            await ws.close(1000, "auth timeout")
            return
        conn.record(message, auth=True)
        if opts.silent_auth:
            self.stats["stalls"] += 1
            conn.stall()
            await ws.wait_closed()
            return
        try:
            details, products = check_auth_message(message, opts, time.time())
        except AuthError as err:
            await self.fail(conn, err.code, err.status, err.message)
            return
        self.ok_count += 1
        if self.ok_count <= opts.fail_first:
            await self.fail(conn, opts.fail_code, opts.fail_status,
                            "simulated server error (mock --fail-first)")
            return

        me = build_me(details, opts.me_padding)
        ok = dumps({"type": "connection.ok", "connection_id": conn.connection_id,
                    "created_at": rfc3339(), "me": me})
        await conn.send(ok, opts.fragment)
        self.stats["connections_ok"] += 1
        self.log("conn %d: connection.ok user=%r (%d bytes)" % (conn.num, details["id"][:60],
                                                                   utf8_len(ok)))
        if opts.close_with is not None:
            self.log("conn %d: closing with %d (--close-with)" % (conn.num, opts.close_with))
            await conn.close_with(opts.close_with)
            await ws.wait_closed()
            return

        seed = (opts.seed * 1_000_003 + conn.num) & 0xFFFFFFFF
        factory = EventFactory(random.Random(seed), products, details["id"],
                               details.get("name", details["id"]))
        conn.spawn(self.reader(conn))
        if opts.health_interval > 0:
            conn.spawn(self.health_loop(conn))
        if opts.events_per_second > 0 and factory.enabled() and opts.events != 0:
            conn.spawn(self.event_loop(conn, factory))
        if opts.ws_ping_interval > 0:
            conn.spawn(self.ping_loop(conn))
        if opts.drop_every is not None:
            conn.spawn(self.drop_later(conn))
        if opts.stall_after is not None:
            conn.spawn(self.stall_later(conn))
        await ws.wait_closed()

    async def reader(self, conn):
        async for message in conn.ws:
            if conn.stalled:
                await conn.unstall_never
            conn.record(message)
            if not isinstance(message, str):
                continue
            try:
                msg = json.loads(message)
            except ValueError:
                continue
            if (isinstance(msg, list) and msg and isinstance(msg[0], dict)
                    and msg[0].get("type") == "health.check"):
                self.stats["client_health_checks"] += 1
                await conn.send_health()

    async def health_loop(self, conn):
        while True:
            await asyncio.sleep(self.opts.health_interval)
            await conn.send_health()

    async def event_loop(self, conn, factory):
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.opts.events_per_second
        due = loop.time() + interval
        limit = self.opts.events
        frag = self.opts.fragment if self.opts.fragment_all else None
        while limit < 0 or conn.seq < limit:
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            due += interval
            conn.seq += 1
            self.global_seq += 1
            await conn.send(factory.make(conn.seq, self.global_seq), frag)
            self.stats["events_sent"] += 1

    async def ping_loop(self, conn):
        interval = self.opts.ws_ping_interval
        while True:
            await asyncio.sleep(interval)
            if conn.stalled:
                await conn.unstall_never
            waiter = await conn.ws.ping()
            waiter.add_done_callback(_consume_result)
            self.stats["pings_sent"] += 1
            await asyncio.wait([waiter], timeout=interval)
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.stats["pongs_received"] += 1
            else:
                self.log("conn %d: no pong within %gs" % (conn.num, interval))

    async def drop_later(self, conn):
        await asyncio.sleep(self.opts.drop_every)
        self.stats["drops"] += 1
        code = self.opts.drop_close_code
        if code is None or code == 1006:
            self.log("conn %d: dropping (--drop-every)" % conn.num)
            conn.abort()
        else:
            self.log("conn %d: closing with %d (--drop-every)" % (conn.num, code))
            await conn.close_with(code)

    async def stall_later(self, conn):
        await asyncio.sleep(self.opts.stall_after)
        self.stats["stalls"] += 1
        conn.stall()

    # -- control ----------------------------------------------------------

    def drop_all(self):
        self.log("SIGUSR1: dropping %d connection(s)" % len(self.conns))
        for conn in list(self.conns):
            self.stats["drops"] += 1
            conn.abort()

    def stall_all(self):
        self.log("SIGUSR2: stalling %d connection(s)" % len(self.conns))
        for conn in list(self.conns):
            if not conn.stalled:
                self.stats["stalls"] += 1
                conn.stall()

    async def run(self):
        opts = self.opts
        loop = asyncio.get_running_loop()
        tls = None
        if opts.tls_cert:
            import ssl
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls.load_cert_chain(opts.tls_cert, opts.tls_key)
        server = await websockets.serve(
            self.handler, opts.host, opts.port, ssl=tls,
            process_request=self.process_request,
            compression="deflate" if opts.compression else None,
            max_size=None, ping_interval=None, ping_timeout=None,
            close_timeout=opts.close_timeout)
        port = server.sockets[0].getsockname()[1]
        print("PORT %d" % port, flush=True)
        self.log("listening on %s port %d" % (opts.host, port))
        loop.add_signal_handler(signal.SIGTERM, self.request_stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self.request_stop, "SIGINT")
        loop.add_signal_handler(signal.SIGUSR1, self.drop_all)
        loop.add_signal_handler(signal.SIGUSR2, self.stall_all)
        await self.stop.wait()
        self.log("shutting down (%s)" % self.stop_reason)
        for conn in list(self.conns):
            if conn.stalled:
                conn.abort()
        server.close()
        try:
            await asyncio.wait_for(server.wait_closed(), 2 * opts.close_timeout + 2)
        except asyncio.TimeoutError:
            for conn in list(self.conns):
                conn.abort()
        if self.record_file is not None:
            self.record_file.close()
        print(dumps(self.stats), file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Command line

def non_negative(kind):
    def parse(text):
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError("must be >= 0")
        return value
    return parse


def positive(kind):
    def parse(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError("must be > 0")
        return value
    return parse


def close_code(text):
    code = int(text)
    if code == 1006 or 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999:
        return code
    raise argparse.ArgumentTypeError(
        "a close code must be 1000-1003, 1007-1014, 3000-4999, or 1006 (abrupt drop)")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="mock_coordinator.py", description=HELP_DESCRIPTION, epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("listening and credentials")
    g.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; use a numeric address)")
    g.add_argument("--port", type=non_negative(int), default=0,
                   help="port to listen on (default 0: the OS chooses; see the PORT line)")
    g.add_argument("--api-key", default="key", metavar="KEY",
                   help="the only api_key accepted (default: key)")
    g.add_argument("--secret", default="secret",
                   help="HS256 secret that user tokens must be signed with (default: secret)")
    g.add_argument("--tls-cert", metavar="FILE", default=None,
                   help="serve wss:// with this PEM certificate (chain) instead of ws://")
    g.add_argument("--tls-key", metavar="FILE", default=None,
                   help="the PEM private key of --tls-cert")
    g.add_argument("--compression", action="store_true",
                   help="accept permessage-deflate when the client offers it (default: off)")
    g = p.add_argument_group("authentication")
    g.add_argument("--auth-timeout", type=positive(float), default=15.0, metavar="S",
                   help="seconds to wait for the auth message; then close 1000 "
                        "'auth timeout' without a connection.error (default 15)")
    g.add_argument("--iat-leeway", type=non_negative(float), default=2.0, metavar="S",
                   help="an iat (or nbf) up to S seconds in the future is accepted; "
                        "later: code 42 (nbf: 41) (default 2)")
    g.add_argument("--expire-after", type=non_negative(float), default=None, metavar="T",
                   help="a token whose iat is more than T seconds before the auth message "
                        "arrives is expired (code 40); tokens without iat are not affected")
    g.add_argument("--fail-first", type=non_negative(int), default=0, metavar="K",
                   help="the first K otherwise successful authentications get a "
                        "connection.error with --fail-code/--fail-status, then close 1000")
    g.add_argument("--fail-code", type=int, default=-1, metavar="CODE",
                   help="error.code for --fail-first (default -1)")
    g.add_argument("--fail-status", type=int, default=500, metavar="STATUS",
                   help="error.StatusCode for --fail-first (default 500: transient)")
    g.add_argument("--silent-auth", action="store_true",
                   help="read the auth message and never answer (stall): for a client's "
                        "handshake watchdog")
    g = p.add_argument_group("messages")
    g.add_argument("--me-padding", type=non_negative(int), default=0, metavar="BYTES",
                   help="add a string field me.mock_padding of BYTES UTF-8 bytes (ASCII "
                        "and multi-byte characters) to connection.ok (default 0)")
    g.add_argument("--fragment", type=positive(int), default=None, metavar="N",
                   help="send connection.ok as a fragmented text message, N payload bytes "
                        "per frame (split on byte boundaries, UTF-8 sequences may span frames)")
    g.add_argument("--fragment-all", action="store_true",
                   help="with --fragment: fragment every server message, not only connection.ok")
    g.add_argument("--health-interval", type=non_negative(float), default=25.0, metavar="S",
                   help="send health.check every S seconds after connection.ok "
                        "(default 25; 0: only in answer to the client's)")
    g.add_argument("--events-per-second", type=non_negative(float), default=0.0, metavar="R",
                   help="send R product events per second per connection (default 0: none)")
    g.add_argument("--events", type=int, default=-1, metavar="N",
                   help="stop after N events per connection (default -1: unlimited)")
    g.add_argument("--seed", type=int, default=0,
                   help="seed of the event generator (per connection: seed and connection "
                        "number; default 0)")
    g.add_argument("--ws-ping-interval", type=non_negative(float), default=0.0, metavar="S",
                   help="send a WebSocket ping every S seconds and count pongs "
                        "(default 0: no pings; Stream uses JSON health checks)")
    g = p.add_argument_group("faults (times count from connection.ok, on every connection)")
    g.add_argument("--drop-every", type=non_negative(float), default=None, metavar="S",
                   help="S seconds after connection.ok, close the TCP connection "
                        "abruptly (no close frame)")
    g.add_argument("--drop-close-code", type=close_code, default=None, metavar="C",
                   help="with --drop-every: send a close frame with code C instead "
                        "(1006: abrupt drop)")
    g.add_argument("--stall-after", type=non_negative(float), default=None, metavar="S",
                   help="S seconds after connection.ok stop sending anything (health "
                        "checks, events, pongs) and stop reading; keep the socket open")
    g.add_argument("--close-with", type=close_code, default=None, metavar="C",
                   help="close with code C right after connection.ok (1006: abrupt drop)")
    g.add_argument("--refuse-first", type=non_negative(int), default=0, metavar="K",
                   help="answer the first K HTTP requests (any path) with HTTP 503")
    g.add_argument("--max-connections", type=non_negative(int), default=0, metavar="N",
                   help="exit 0 once N WebSocket connections (upgraded, whatever their "
                        "outcome) have ended (default 0: never)")
    g = p.add_argument_group("output")
    g.add_argument("--record", metavar="FILE", default=None,
                   help='append each client message as a JSON line {"conn":N,'
                        '"connection_id":ID,"t":MONOTONIC,"text":MESSAGE} (binary: "text":'
                        'null,"binary_base64":...), the token replaced by "<redacted>"')
    g.add_argument("--close-timeout", type=positive(float), default=2.0, metavar="S",
                   help="how long to wait for the client's close frame (default 2)")
    g.add_argument("-q", "--quiet", action="store_true",
                   help="no log lines (the exit summary is still printed)")
    opts = p.parse_args(argv)
    if opts.drop_close_code is not None and opts.drop_every is None:
        p.error("--drop-close-code needs --drop-every")
    if opts.fragment_all and opts.fragment is None:
        p.error("--fragment-all needs --fragment")
    return opts


def main(argv=None):
    opts = parse_args(argv)
    # websockets' own errors (a bug of the mock) go to stderr; its info and
    # debug lines (request paths, i.e. query strings) never do.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("mock_coordinator: websockets: %(message)s"))
    ws_logger = logging.getLogger("websockets")
    ws_logger.addHandler(handler)
    ws_logger.setLevel(logging.CRITICAL if opts.quiet else logging.ERROR)
    ws_logger.propagate = False
    try:
        asyncio.run(Mock(opts).run())
    except OSError as exc:
        print("mock_coordinator: %s" % exc, file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
