"""A backend stopped and started again under load (Redis, PostgreSQL, an upstream): what a
plugin's client must survive. Clients send `target` in a loop on keep-alive connections while
the test stops the backend, waits for the failures, and starts it again; then it checks that
answers were right before the outage, right again after it, and between only right answers
or failures (503s) that say why (and never the secret); that no worker was replaced; and that the workers
hold the descriptors they held before."""

import json
import os
import threading

import harness


def worker_fds(herd):
    code, out = harness.run_herd("status", "--json", "-c", herd.config_path)
    if code != 0:
        return None
    return [w["async"].get("fds") for w in json.loads(out)["apps"][0]["workers"]]


def proc_fds(herd):
    """Each worker's open descriptors now, from /proc (exact, unlike a heartbeat's figure,
    which may be a second old)."""
    return [len(os.listdir("/proc/%d/fd" % pid)) for pid in sorted(herd.worker_pids())]


def outage_under_load(test, herd, target, stop, start, before_ok, after_ok, reasons, secret=None,
                      clients=2, failure=503, at_rest=None):
    """before_ok / after_ok: the (status, body) expected before the outage and after it;
    failure: the status of a request the outage fails (503; probe's /fetch answers 502);
    reasons: byte strings of which such a failure's body must contain one."""
    port = herd.port()
    pids = sorted(herd.worker_pids())
    baseline = {}

    def settled():
        baseline["fds"] = worker_fds(herd)
        return baseline["fds"] is not None and None not in baseline["fds"]
    harness.wait_until(settled, what="the workers' descriptor counts")

    answers, lock, done = [], threading.Lock(), threading.Event()

    def load():
        with harness.Client(port, seconds=60) as c:
            while not done.is_set():
                r = c.request("GET", target)
                with lock:
                    answers.append((r.status, r.body))
    threads = [threading.Thread(target=load) for _ in range(clients)]
    for t in threads:
        t.start()

    def count():
        with lock:
            return len(answers)
    try:
        harness.wait_until(lambda: count() >= 50, what="answers before the outage")
        before = count()
        stop()

        def failing():
            with lock:
                return any(s == failure for s, _ in answers[before:])
        harness.wait_until(failing, what="failures during the outage")
        down_at = count()
        harness.wait_until(lambda: count() >= down_at + 20, what="answers during the outage")
        start()

        def recovered():
            with lock:
                tail = answers[-50:]
            return len(tail) == 50 and all(a == after_ok for a in tail)
        harness.wait_until(recovered, seconds=30, what="the backend answering again")
    finally:
        done.set()
        for t in threads:
            t.join(harness.timeout(60))
    with lock:
        seen = list(answers)
    test.assertTrue(all(a == before_ok for a in seen[:before]), seen[:before][:5])
    # Each worker finds the backend again in its own time (its back-off): after the last
    # failure, only right answers.
    last = max(i for i, (s, _) in enumerate(seen) if s == failure)
    test.assertGreater(last, before)
    test.assertTrue(all(a == after_ok for a in seen[last + 1:]))
    for status, body in seen[before:last + 1]:
        if status != failure:
            test.assertIn((status, body), (before_ok, after_ok))
            continue
        test.assertTrue(any(r in body for r in reasons), body)
        if secret:
            test.assertNotIn(secret.encode(), body)
    test.assertEqual(sorted(herd.worker_pids()), pids)
    seen_fds = {}
    if at_rest is not None:
        # (descriptors, bring_to_rest): the caller's exact count (proc_fds) when the workers
        # held no connection to the backend, and how to make them drop theirs again (a pool
        # keeps idle connections otherwise).
        expected, bring_to_rest = at_rest
        bring_to_rest()
        fds_now = lambda: proc_fds(herd)  # noqa: E731
    else:
        expected, fds_now = baseline["fds"], lambda: worker_fds(herd)  # noqa: E731

    def fds_back():
        seen_fds["now"] = fds_now()
        return seen_fds["now"] == expected
    try:
        harness.wait_until(fds_back, what="the workers back at %s descriptors" % expected)
    except AssertionError as e:
        raise AssertionError("%s (they have %s)" % (e, seen_fds.get("now"))) from None
