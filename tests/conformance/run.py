#!/usr/bin/python3
"""Run the WebSocket client conformance suite.

For each case: start `<client> echo ws://127.0.0.1:PORT/case/<id>` (the client
defaults to $STWS_BUILD/stws, STWS_BUILD defaulting to "build"), let the
in-process adversarial server judge the connection, then check the client's
exit status (0 after a clean closing handshake, non-zero with a reason on
stderr otherwise).  Prints a Markdown summary by category and one line per
failed case; exits 1 if any case failed, 2 on a usage error.

    /usr/bin/python3 tests/conformance/run.py [--client CMD] [--cases PATTERNS] [-j N]
"""

import argparse
import fnmatch
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True     # keep __pycache__ out of the source tree
sys.path.insert(0, HERE)

from cases import all_cases, category_name  # noqa: E402
from server import CaseServer  # noqa: E402

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "ERROR: ThreadSanitizer", "ERROR: MemorySanitizer", "SUMMARY: UndefinedBehaviorSanitizer")
CONNECT_WAIT = 10.0   # the client must connect and send its request this soon
EXIT_WAIT = 10.0      # the client must exit this soon after its connection ended


class Result:
    def __init__(self, case):
        self.case = case
        self.ok = False
        self.reason = ""
        self.returncode = None
        self.stderr = ""
        self.seconds = 0.0
        self.transcript = []


def natural_key(cid):
    return [(0, int(p)) if p.isdigit() else (1, p) for p in cid.split(".")]


class Runner:
    def __init__(self, client_cmd, cases, jobs, timeout_scale, fail_fast_wait, budget, verbose):
        self.client_cmd = client_cmd
        self.cases = cases
        self.jobs = jobs
        self.timeout_scale = timeout_scale
        self.verbose = verbose
        self.budget_end = time.monotonic() + budget
        self.server = CaseServer(cases, fail_fast_wait=fail_fast_wait, timeout_scale=timeout_scale)
        self.procs = set()
        self.lock = threading.Lock()
        self.stopping = False

    # ---- process control -----------------------------------------------------

    def _kill(self, proc):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def kill_all(self):
        with self.lock:
            procs = list(self.procs)
        for p in procs:
            self._kill(p)

    # ---- one case -------------------------------------------------------------------

    def run_case(self, case):
        res = Result(case)
        if self.stopping or time.monotonic() > self.budget_end:
            res.reason = "not run: the suite's time budget was exhausted"
            return res
        start = time.monotonic()
        rec = self.server.expect(case.id)
        url = "ws://127.0.0.1:%d/case/%s" % (self.server.port, case.id)
        out = tempfile.TemporaryFile()
        err = tempfile.TemporaryFile()
        proc = None
        try:
            try:
                proc = subprocess.Popen(self.client_cmd + ["echo", url], stdin=subprocess.DEVNULL,
                                        stdout=out, stderr=err, start_new_session=True)
            except OSError as e:
                res.reason = "cannot start the client: %s" % e
                return res
            with self.lock:
                self.procs.add(proc)
                stopping = self.stopping
            if stopping:
                res.reason = "not run: the runner is stopping"
                return res
            exited = threading.Event()
            wake = threading.Event()

            def waiter():
                proc.wait()
                exited.set()
                wake.set()
            threading.Thread(target=waiter, daemon=True).start()
            rec.wake = wake
            if rec.done.is_set():
                wake.set()

            limit = start + case.timeout * self.timeout_scale + 15
            # 1. wait for the judged connection to finish (or the client to die first)
            while not rec.done.is_set():
                if exited.is_set() and not rec.started:
                    # give a connection still in the accept queue the chance to show up
                    self.server.wait_unidentified(5)
                    if not rec.started:
                        break
                now = time.monotonic()
                if not rec.started and now - start > CONNECT_WAIT * self.timeout_scale:
                    self.server.wait_unidentified(5)
                    if not rec.started:
                        break
                rem = limit - now
                if rem <= 0:
                    break
                wake.wait(min(rem, CONNECT_WAIT) if not rec.started else rem)
                wake.clear()
            problems = []
            if not rec.done.is_set():
                if not rec.started:
                    problems.append("client exited (status %s) without opening a connection for "
                                    "the case" % proc.returncode if exited.is_set()
                                    else "client did not open a connection for the case within "
                                    "%.0f s" % (CONNECT_WAIT * self.timeout_scale))
                else:
                    problems.append("judge did not finish in time")
            elif not rec.verdict.ok:
                problems.append(rec.verdict.reason)
            # 2. the client must exit on its own soon after the connection ended
            wait_exit = EXIT_WAIT if not problems else 2.0
            if not exited.wait(wait_exit):
                self._kill(proc)
                if not problems:
                    problems.append("client did not exit within %.0f s after the connection closed"
                                    % EXIT_WAIT)
            rc = proc.returncode
            res.returncode = rc
            err.seek(0)
            res.stderr = err.read().decode("utf-8", "replace")
            # 3. exit status
            san = [ln for ln in res.stderr.splitlines() if any(m in ln for m in SANITIZER_MARKS)]
            if san:   # the cause, so it goes before the symptom the judge saw
                problems.insert(0, "sanitizer report: %s" % san[0].strip())
            if rc is not None and rc < 0 and not problems:
                problems.append("client killed by signal %d" % -rc)
            elif rc is not None and not problems:
                if case.expect_exit == "zero" and rc != 0:
                    problems.append("client exited with status %d after a clean closing handshake, "
                                    "expected 0 (stderr: %s)" % (rc, last_line(res.stderr)))
                elif case.expect_exit == "nonzero" and rc == 0:
                    problems.append("client exited with status 0, expected non-zero (the connection "
                                    "was failed or not cleanly closed)")
                elif case.expect_exit == "nonzero" and not res.stderr.strip():
                    problems.append("client exited with status %d but wrote no reason on stderr" % rc)
            if rec.extra_problem and not problems:
                problems.append(rec.extra_problem)
            res.ok = not problems
            res.reason = problems[0] if problems else ""
            if rec.verdict:
                res.transcript = rec.verdict.transcript
            return res
        finally:
            if proc is not None:
                if proc.poll() is None:
                    self._kill(proc)
                else:
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)   # stray children in its group
                    except (ProcessLookupError, PermissionError):
                        pass
                with self.lock:
                    self.procs.discard(proc)
            out.close()
            err.close()
            res.seconds = time.monotonic() - start
            if self.verbose:
                print("%-8s %-4s %5.2fs %s" % (case.id, "ok" if res.ok else "FAIL", res.seconds,
                                                res.reason), flush=True)

    def run(self):
        self.server.start()
        ex = ThreadPoolExecutor(max_workers=self.jobs)
        try:
            futures = [ex.submit(self.run_case, c) for c in self.cases]
            return [f.result() for f in futures]
        except BaseException:
            self.stopping = True      # no new client starts from here on
            self.kill_all()           # running cases see their client die and finish
            raise
        finally:
            ex.shutdown(wait=True, cancel_futures=True)
            self.kill_all()
            self.server.stop()


def last_line(s):
    lines = [ln for ln in s.strip().splitlines() if ln.strip()]
    return lines[-1][:200] if lines else "empty"


def select_cases(cases, patterns):
    if not patterns:
        return cases
    pats = [p.strip() for p in patterns.split(",") if p.strip()]
    out = []
    for c in cases:
        for p in pats:
            if fnmatch.fnmatchcase(c.id, p) or c.id == p or c.id.startswith(p.rstrip(".") + "."):
                out.append(c)
                break
    return out


def summary(results, elapsed, client_desc):
    cats = []
    for r in results:
        if r.case.category not in cats:
            cats.append(r.case.category)
    cats.sort(key=natural_key)
    lines = ["## WebSocket client conformance: %s" % client_desc, "",
             "| Category | Cases | Passed | Failed |", "| --- | ---: | ---: | ---: |"]
    for cat in cats:
        rs = [r for r in results if r.case.category == cat]
        p = sum(r.ok for r in rs)
        lines.append("| %s | %d | %d | %d |" % (category_name(cat), len(rs), p, len(rs) - p))
    p = sum(r.ok for r in results)
    lines.append("| **Total** | **%d** | **%d** | **%d** |" % (len(results), p, len(results) - p))
    failed = [r for r in results if not r.ok]
    if failed:
        lines += ["", "### Failed cases", ""]
        for r in sorted(failed, key=lambda r: natural_key(r.case.id)):
            lines.append("- `%s` %s: %s" % (r.case.id, r.case.desc, r.reason))
    lines += ["", "conformance: %d passed, %d failed (%.1f s)" % (p, len(failed), elapsed)]
    return "\n".join(lines)


def meta_checks(server, results):
    """Checks across all connections: masking keys must look random."""
    keys = []
    for rec in server.records.values():
        keys.extend(rec.mask_keys)
    if len(keys) >= 200:
        dup = len(keys) - len(set(keys))
        if dup * 100 > len(keys):
            return ["%d of %d client masking keys repeat an earlier key: keys must come from a "
                    "strong random source (RFC 6455 §5.3, §10.3)" % (dup, len(keys))]
    return []


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--client", help="client command (split like a shell would); it is run as "
                    "CMD echo URL.  Default: $STWS_BUILD/stws")
    ap.add_argument("--cases", help="comma-separated case ids, prefixes (e.g. 6.4) or globs")
    ap.add_argument("-j", "--jobs", type=int, default=2, help="parallel cases (default 2)")
    ap.add_argument("--timeout-scale", type=float, default=1.0,
                    help="multiply every per-case timeout (default 1)")
    ap.add_argument("--fail-fast-wait", type=float, default=10.0,
                    help="seconds to wait for the close in fail-fast cases (default 10)")
    ap.add_argument("--budget", type=float, default=600.0,
                    help="time budget in seconds: cases not started by then fail (default 600)")
    ap.add_argument("--json", help="write per-case results to this file")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each case as it finishes")
    args = ap.parse_args(argv)

    cases = select_cases(all_cases(), args.cases)
    if args.list:
        for c in cases:
            print("%-8s %-7s %s" % (c.id, "exit0" if c.expect_exit == "zero" else "exit!=0", c.desc))
        return 0
    if not cases:
        print("no case matches %r" % args.cases, file=sys.stderr)
        return 2
    if args.client:
        cmd = shlex.split(args.client)
    else:
        cmd = [os.path.join(os.environ.get("STWS_BUILD", "build"), "stws")]
    exe = cmd[0]
    if os.sep in exe and not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        print("conformance: client %s does not exist or is not executable" % exe, file=sys.stderr)
        print("conformance: 0 passed, %d failed" % len(cases))
        return 2
    if os.sep in exe:
        cmd[0] = os.path.abspath(exe)

    def on_signal(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_signal)

    t0 = time.monotonic()
    runner = Runner(cmd, cases, max(1, args.jobs), args.timeout_scale, args.fail_fast_wait,
                    args.budget, args.verbose)
    try:
        results = runner.run()
    except KeyboardInterrupt as e:
        print("conformance: interrupted (%s); all clients stopped" % (e or "SIGINT"), file=sys.stderr)
        return 130
    elapsed = time.monotonic() - t0
    meta = meta_checks(runner.server, results)
    if meta:
        from judge import Case
        for m in meta:
            r = Result(Case("meta.1", "Masking keys across the whole run", None))
            r.reason = m
            results.append(r)
    print(summary(results, elapsed, " ".join(shlex.quote(c) for c in cmd)), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"id": r.case.id, "desc": r.case.desc, "ok": r.ok, "reason": r.reason,
                        "returncode": r.returncode, "seconds": round(r.seconds, 3),
                        "stderr": r.stderr[-2000:], "transcript": r.transcript}
                       for r in results], f, indent=1)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
