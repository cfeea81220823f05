"""How long the integration tests wait: every wait and every time limit given to herd is scaled
by HERD_TIMEOUT_SCALE (default 1), for slow machines and sanitizer builds. Shared by harness
and http_client; harness re-exports SCALE, timeout and ms."""
import os

SCALE = float(os.environ.get("HERD_TIMEOUT_SCALE", "1"))


def timeout(seconds):
    return seconds * SCALE


def ms(milliseconds):
    """A time limit for herd's config (watchdog_ms, drain_timeout_ms, header_timeout_ms, ...),
    scaled like every wait of the tests: a sanitizer build on a busy machine is several times
    slower, and a limit it misses fails the test for the wrong reason. A test that checks a
    limit fires waits for it through wait_for/timeout(), which scale the same way."""
    return int(milliseconds * SCALE)
