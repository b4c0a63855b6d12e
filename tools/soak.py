#!/usr/bin/python3
"""`make soak`: flapping plain and TLS connections for --seconds (default an
hour), driven by tools/soak.c (built with ASan by the Makefile).

Starts two mock coordinators (tools/mock_coordinator.py) on 127.0.0.1 with
OS-chosen ports: one ws://, one wss:// with openssl-made certificates; each
drops every connection (abrupt TCP close) a few seconds after its
connection.ok and sends events; each records what the client sent
(--record).  Then runs the driver with one client per mock and prints, every
--report seconds, the driver's line per client (allocations through the
allocator hook, live blocks/bytes, RSS, sent, events, reconnects) with the
record's count of that client's messages: delivered (distinct), duplicated,
lost (missing below the highest delivered: nothing arrives after a later
one) and reordered.  At the end every sent message must have been recorded.

Exit status 0, or 1 on any lost, duplicated or reordered message, a driver
failure (duplicate server event, FATAL, queue that would not drain,
allocation left after destroy), a sanitizer report, or RSS growing more than
--rss-slack-mb between the first report and the end.  Every process started
here is stopped here, also on failure.

    make soak SOAK_SECONDS=300
    /usr/bin/python3 tools/soak.py --seconds 60 --report 10 --driver build/asan/soak
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import peers  # noqa: E402

API_KEY = "soak-key"
SECRET = "soak-secret-never-logged"
LINE = re.compile(r"^soak (t=\d+s|end) (\S+) .*rss_kb=(-?\d+)")


class Record:
    """The client messages of one mock's --record file, read incrementally."""

    def __init__(self, path):
        self.path, self.pos = path, 0
        self.seen, self.order, self.dups, self.reordered, self.max = set(), [], 0, 0, -1

    def update(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        self.pos += end
        for line in data[:end].split(b"\n"):
            if not line:
                continue
            try:
                m = json.loads(json.loads(line).get("text") or "")
            except ValueError:
                continue
            if not isinstance(m, dict) or m.get("type") != "soak":
                continue
            n = m["n"]
            if n in self.seen:
                self.dups += 1
                continue
            if n < self.max:
                self.reordered += 1
            self.seen.add(n)
            self.max = max(self.max, n)

    def lost(self, sent=None):
        top = self.max + 1 if sent is None else sent
        return top - len([n for n in self.seen if n < top])

    def summary(self, sent=None):
        return "delivered=%d duplicated=%d lost=%d reordered=%d" % (
            len(self.seen), self.dups, self.lost(sent), self.reordered)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3600)
    ap.add_argument("--report", type=float, default=60)
    ap.add_argument("--driver", default=os.path.join(REPO, "build", "asan", "soak"))
    ap.add_argument("--drop-every", type=float, default=2.0, help="seconds from connection.ok to the drop")
    ap.add_argument("--events-per-second", type=float, default=20)
    ap.add_argument("--rss-slack-mb", type=float, default=32)
    ap.add_argument("--seed", default="1")
    opts = ap.parse_args()
    if not os.access(opts.driver, os.X_OK):
        sys.exit("soak: %s is missing (make soak builds it)" % opts.driver)

    failures = []
    with tempfile.TemporaryDirectory(prefix="stws-soak-") as tmp:
        tls = peers.tls_material(os.path.join(tmp, "tls"))
        recs = {"plain": os.path.join(tmp, "plain.jsonl"), "tls": os.path.join(tmp, "tls.jsonl")}
        common = ["--api-key", API_KEY, "--secret", SECRET, "--drop-every", str(opts.drop_every),
                  "--events-per-second", str(opts.events_per_second), "-q"]
        with peers.mock_coordinator(*(common + ["--record", recs["plain"]])) as plain, \
                peers.mock_coordinator(*(common + ["--record", recs["tls"], "--tls-cert", tls.server.cert,
                                                   "--tls-key", tls.server.key])) as secure:
            argv = [opts.driver, "--seconds", str(opts.seconds), "--report", str(opts.report),
                    "--drop-every", str(opts.drop_every), "--api-key", API_KEY, "--secret", SECRET,
                    "--ca", tls.ca, "--seed", opts.seed,
                    "plain=ws://127.0.0.1:%d/api/v2/connect" % plain.port,
                    "tls=wss://127.0.0.1:%d/api/v2/connect" % secure.port]
            env = dict(os.environ)
            env["ASAN_OPTIONS"] = ("quarantine_size_mb=8:detect_leaks=1:"
                                   + env.get("ASAN_OPTIONS", ""))
            print("soak: %g s of flapping ws:// and wss:// connections (drop %g s after connection.ok), "
                  "driver %s" % (opts.seconds, opts.drop_every, os.path.relpath(opts.driver, REPO)), flush=True)
            records = {k: Record(v) for k, v in recs.items()}
            rss_first, rss_end, finals = None, None, {}
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                    start_new_session=True)
            err = peers._LineReader(proc.stderr)
            try:
                for raw in proc.stdout:
                    line = raw.decode("utf-8", "replace").rstrip("\n")
                    m = LINE.match(line)
                    if m:
                        name, rss = m.group(2), int(m.group(3))
                        if rss_first is None:
                            rss_first = rss
                        rss_end = rss
                        records[name].update()
                        print("%s | %s" % (line, records[name].summary()), flush=True)
                    elif line.startswith("soak final "):
                        f = dict(kv.split("=", 1) for kv in line.split()[3:])
                        finals[line.split()[2]] = f
                        print(line, flush=True)
                    else:
                        print(line, flush=True)
                status = proc.wait(timeout=opts.seconds + 300)
            finally:
                if proc.poll() is None:
                    peers._kill_group(proc)
                err.join()
            errtext = "\n".join(err.snapshot())
            if errtext:
                print(errtext[-4000:], file=sys.stderr)
            if status != 0:
                failures.append("the driver exited with status %d" % status)
            if peers.SANITIZER_RX.search(errtext):
                failures.append("a sanitizer report (above)")
            for name, rec in records.items():
                sent = int(finals.get(name, {}).get("sent", -1))
                deadline = time.monotonic() + 30
                while True:
                    rec.update()
                    if sent < 0 or len(rec.seen) >= sent or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
                print("soak result %s sent=%d %s" % (name, sent, rec.summary(sent)), flush=True)
                if sent < 0:
                    failures.append("%s: no final line from the driver" % name)
                elif rec.dups or rec.reordered or rec.lost(sent):
                    failures.append("%s: %s" % (name, rec.summary(sent)))
            if rss_first is not None and rss_end - rss_first > opts.rss_slack_mb * 1024:
                failures.append("RSS grew from %d KiB to %d KiB" % (rss_first, rss_end))
            for mock, name in ((plain, "plain"), (secure, "tls")):
                lines = mock.log()
                if lines:
                    print("soak: mock %s: %s" % (name, lines[-1][:300]), flush=True)
    if failures:
        print("soak: FAILED: " + "; ".join(failures), flush=True)
        return 1
    print("soak: ok (RSS %s -> %s KiB)" % (rss_first, rss_end), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
