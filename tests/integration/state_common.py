"""Helpers for the shared-state tests: reading a key from every worker of an app."""
import json

import harness


def read_all(herd, port, key, app_name="web"):
    """{pid: value or None} for every live worker, read through round-robin connections
    (each new connection goes to the next worker)."""
    code, out = harness.run_herd("status", "--json", "-c", herd.config_path)
    assert code == 0, out
    app = [a for a in json.loads(out)["apps"] if a["name"] == app_name][0]
    pids = {w["pid"] for w in app["workers"] if w["state"] == "ready"}
    seen = {}
    for _ in range(4 * len(pids) + 4):
        with harness.Client(port) as c:
            r = c.request("GET", "/probe/state/" + key)
        pid = int(r.header("X-Pid"))
        seen[pid] = json.loads(r.body) if r.status == 200 else None
        if pids <= set(seen):
            break
    assert pids <= set(seen), "could not reach every worker: %s of %s" % (sorted(seen), sorted(pids))
    return {p: seen[p] for p in pids}


def wait_all(herd, port, key, value, seconds=10, app_name="web"):
    """Waits until every worker has key == value (None: absent); propagation is asynchronous.
    Returns {pid: value}."""
    last = {}

    def converged():
        last.clear()
        last.update(read_all(herd, port, key, app_name))
        return all(v == value for v in last.values())
    try:
        harness.wait_until(converged, seconds=seconds, what="%s=%r in every worker" % (key, value))
    except AssertionError:
        raise AssertionError("workers did not converge on %s=%r: %r" % (key, value, last))
    return dict(last)
