#!/usr/bin/python3
"""RFC 6455 client conformance: runs tests/conformance/run.py against
$STWS_BUILD/stws (STWS_BUILD defaults to "build") and fails if any case fails.

A missing stws binary is a failure, not a skip: the suite cannot vouch for a
client it could not run.

    STWS_BUILD=build /usr/bin/python3 tests/integration/test_conformance.py
"""

import os
import subprocess
import sys
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNNER = os.path.join(ROOT, "tests", "conformance", "run.py")
# The runner's own budget (--budget) bounds a misbehaving client; this is the
# outer safety net.
OUTER_TIMEOUT = 1200


class ConformanceTest(unittest.TestCase):
    def test_autobahn_style_conformance(self):
        build = os.environ.get("STWS_BUILD", "build")
        stws = build if os.path.isabs(build) else os.path.join(ROOT, build)
        stws = os.path.join(stws, "stws")
        if not (os.path.isfile(stws) and os.access(stws, os.X_OK)):
            self.fail("MISSING CLIENT: %s does not exist or is not executable, so the conformance "
                      "suite could not run (a missing binary counts as a failure, not a skip; "
                      "build it first: make builds $STWS_BUILD/stws)" % stws)
        cmd = [sys.executable, RUNNER, "--client", stws]
        extra = os.environ.get("STWS_CONFORMANCE_ARGS")   # e.g. "--cases 6.4 -v"
        if extra:
            cmd += extra.split()
        sys.stdout.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL)
        try:
            proc.wait(OUTER_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.terminate()              # the runner stops its clients and server on SIGTERM
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self.fail("conformance runner did not finish within %d s" % OUTER_TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.assertEqual(proc.returncode, 0,
                         "conformance suite failed against %s (runner exit status %d; "
                         "the failed cases are listed above)" % (stws, proc.returncode))


if __name__ == "__main__":
    unittest.main()
