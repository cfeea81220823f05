"""Several herd hosts behind a real load balancer, sharing their state through Redis with
Sentinel: each host, the Redis primary, its replica, three sentinels and haproxy (Debian's) in a
network namespace of its own (topology.py), on loopback-range addresses. The hosts find the
primary through the sentinels and acknowledge a write only once the replica has it
(min_replicas_ack 1); haproxy checks each host's /healthz. Under wrk through haproxy: a write
made through one host is seen on every host; a host reloaded fails no request; a host killed
costs at most the requests in flight on its connections, and haproxy routes around it; the
Redis primary killed under a stream of acknowledged writes: the sentinels promote the replica,
every host follows, writes resume, every worker converges and no acknowledged write is lost.
Root only (network namespaces); skipped with the reason elsewhere."""
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import harness
import topology
from harness import plugin

HERE = os.path.dirname(os.path.abspath(__file__))
WHY_NOT = topology.available()
MISSING = [p for p in ("haproxy", "redis-server", "redis-sentinel", "redis-cli", "wrk", "curl")
           if not shutil.which(p)]
HOSTS = ["h1", "h2", "h3"]
SENTINELS = ["s1", "s2", "s3"]


HAPROXY = topology.HAPROXY_DEFAULTS + """frontend web
    bind {lb}:8080
    default_backend hosts
backend hosts
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
    default-server inter 100ms fall 2 rise 2 port 8081
""" + topology.HAPROXY_BACKEND_RETRIES + """{servers}
"""

class Writer(threading.Thread):
    """Acknowledged writes through haproxy, one after another, from a thread inside the lb
    namespace: PUT /probe/state-ack/fo.<i> (the probe answers once its broker has: 200, or 503
    and why). Keeps (i, status, body, time.monotonic()) of each."""

    def __init__(self, net):
        super().__init__(daemon=True)
        self.net = net
        self.host = net.address("lb")
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.results = []
        self.error = None

    def run(self):
        try:
            self.net.enter("lb")
            conn = None
            i = 0
            while not self.stopping.is_set():
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, 8080, timeout=harness.timeout(30))
                try:
                    conn.request("PUT", "/probe/state-ack/fo.%d" % i, body=json.dumps(i),
                                 headers={"Content-Type": "application/json"})
                    r = conn.getresponse()
                    status, body = r.status, r.read().decode()
                except (OSError, http.client.HTTPException) as e:
                    status, body = 0, repr(e)
                    conn.close()
                    conn = None
                with self.lock:
                    self.results.append((i, status, body, time.monotonic()))
                i += 1
                self.stopping.wait(0.005)  # about 150 writes a second: bounded load
        except BaseException as e:  # reported by the test
            self.error = e

    def acknowledged(self, since=0.0):
        with self.lock:
            return [i for i, status, _, at in self.results if status == 200 and at >= since]

    def stop(self):
        self.stopping.set()
        self.join(harness.timeout(60))


@unittest.skipIf(WHY_NOT, WHY_NOT or "")
@unittest.skipIf(MISSING, "missing: %s (scripts/test.sh installs them)" % ", ".join(MISSING))
@unittest.skipIf(WHY_NOT, WHY_NOT or "")
@unittest.skipIf(MISSING, "missing: %s (scripts/test.sh installs them)" % ", ".join(MISSING))
class Fleet(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="herd-fleet-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.net = topology.Topology(["lb"] + HOSTS + ["r1", "r2"] + SENTINELS)
        self.net.__enter__()
        self.addCleanup(self.net.close)  # runs last: after every process inside is gone
        self.procs = []
        self.addCleanup(self.stop_procs)
        # The primary r1 and its replica r2; then the sentinels, which find r2 through r1.
        self.redis = {"r1": self.start_redis("r1"),
                      "r2": self.start_redis("r2", replica_of=self.net.address("r1"))}
        for name in SENTINELS:
            address = self.net.address(name)
            folder = os.path.join(self.tmp, name)
            os.mkdir(folder)
            conf = os.path.join(folder, "sentinel.conf")  # sentinels rewrite theirs
            with open(conf, "w") as f:
                f.write(topology.SENTINEL_CONF.format(address=address, dir=folder,
                                        primary=self.net.address("r1")))
            self.spawn(name, ["redis-sentinel", conf])
            harness.wait_until(
                lambda: self.in_ns(name, ["redis-cli", "-h", address, "-p", "26379", "SENTINEL",
                                          "get-master-addr-by-name", "herd"])
                == self.net.address("r1") + "\n6379", what="redis-sentinel in " + name)
        self.hosts = {}
        for name in HOSTS:
            config = self.config_for(name)
            herd = harness.Herd(config, wrapper=self.net.wrap(name))
            self.addCleanup(herd.__exit__, None, None, None)
            herd.start()
            self.hosts[name] = herd
        lb = self.net.address("lb")
        servers = "\n".join("    server %s %s:8080 check" % (n, self.net.address(n)) for n in HOSTS)
        cfg = os.path.join(self.tmp, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(HAPROXY.format(lb=lb, servers=servers))
        self.spawn("lb", ["haproxy", "-db", "-f", cfg])
        # Every host answers through haproxy before the load starts.
        seen = set()

        def every_host():
            for _ in range(6):
                code, body = self.curl("lb", "http://%s:8080/probe/pid" % lb)
                if code == 200:
                    seen.add(self.host_of(int(body)))
            return seen >= set(HOSTS)
        harness.wait_until(every_host, seconds=30, what="haproxy to reach every host")

    def start_redis(self, name, replica_of=None):
        address = self.net.address(name)
        folder = os.path.join(self.tmp, name)
        os.makedirs(folder, exist_ok=True)
        argv = ["redis-server", "--bind", address, "--port", "6379", "--save", "",
                "--appendonly", "no", "--protected-mode", "no", "--dir", folder]
        if replica_of:
            argv += ["--replicaof", replica_of, "6379"]
        proc = self.spawn(name, argv)
        harness.wait_until(lambda: self.redis_cli(name, "PING") == "PONG",
                           what="redis-server in " + name)
        return proc

    def redis_cli(self, name, *args):
        return self.in_ns(name, ["redis-cli", "-h", self.net.address(name)] + list(args))

    def config_for(self, name, greeting="hello"):
        address = self.net.address(name)
        return {"health": "%s:8081" % address,
                "state": {"backend": "redis",
                          "sentinels": ["%s:26379" % self.net.address(n) for n in SENTINELS],
                          "master_name": "herd", "min_replicas_ack": 1},
                "apps": [{"name": "web", "listen": "%s:8080" % address, "workers": 2,
                          "balance": "round-robin",
                          "plugins": [{"mount": "/", "path": plugin("hello"),
                                       "config": {"greeting": greeting}},
                                      {"mount": "/probe", "path": plugin("probe")}]}]}

    def spawn(self, ns, argv):
        p = subprocess.Popen(self.net.wrap(ns) + argv, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def stop_procs(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()

    def in_ns(self, ns, argv):
        r = self.net.run(ns, argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         timeout=harness.timeout(10))
        return r.stdout.decode().strip()

    def curl(self, ns, url, *args):
        out = self.in_ns(ns, ["curl", "-s", "-m", str(harness.timeout(5)), "-w", "\n%{http_code}"]
                         + list(args) + [url])
        body, _, code = out.rpartition("\n")
        return int(code) if code.isdigit() else 0, body

    def host_of(self, worker_pid):
        for name, herd in self.hosts.items():
            if worker_pid in herd.children():
                return name
        return None

    def wrk(self, seconds=600):
        lb = self.net.address("lb")
        return subprocess.Popen(
            self.net.wrap("lb") + ["wrk", "-t1", "-c12", "-d%ds" % seconds, "-s",
                                   os.path.join(HERE, "wrk_count.lua"), "http://%s:8080/" % lb],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def wrk_result(self, proc):
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=harness.timeout(30))[0].decode()
        m = re.search(r"^RESULT (.*)$", out, re.M)
        self.assertIsNotNone(m, out)
        sys.stderr.write("wrk through haproxy: %s\n" % m.group(1))
        return json.loads(m.group(1))

    def failures(self, result):
        return sum(result[k] for k in ("connect", "read", "write", "timeout", "status"))

    def served_by_all(self, seconds=20):
        """Waits until each host's workers have served more requests than now."""
        def counts():
            out = {}
            for name, herd in self.hosts.items():
                code, text = harness.run_herd("status", "--json", "-c", herd.config_path)
                out[name] = sum(w["requests"] for w in json.loads(text)["apps"][0]["workers"])
            return out
        before = counts()
        harness.wait_until(lambda: all(v > before[k] for k, v in counts().items()),
                           seconds=seconds, what="every host to serve requests")

    def test_state_reload_and_a_host_killed(self):
        # A write made through one host is seen on every host.
        code, _ = self.curl("lb", "http://%s:8080/probe/state/fleet" % self.net.address("h1"),
                            "-X", "PUT", "--data", '{"written": "through h1"}')
        self.assertEqual(code, 202)
        for name in HOSTS:
            url = "http://%s:8080/probe/state/fleet" % self.net.address(name)
            harness.wait_until(lambda: self.curl("lb", url) == (200, '{"written":"through h1"}'),
                               seconds=20, what="the write to reach " + name)

        # A host reloaded under load through haproxy fails no request.
        load = self.wrk()
        try:
            self.served_by_all()
            h2 = self.hosts["h2"]
            with open(h2.config_path, "w") as f:
                json.dump(harness.with_root_allowed(self.config_for("h2", "reloaded")), f)
            code, out = harness.run_herd("reload", "-c", h2.config_path, seconds=60)
            self.assertEqual(code, 0, out)
            self.served_by_all()
        finally:
            result = self.wrk_result(load)
        self.assertEqual(self.failures(result), 0, result)
        self.assertEqual(set(result["statuses"]), {"2xx"}, result)
        self.assertIn("reloaded", result["bodies"])

        # A host killed: at most the requests in flight on its connections fail (wrk holds
        # 12), and haproxy routes around it.
        load = self.wrk()
        try:
            self.served_by_all()
            self.hosts["h3"].kill()
            del self.hosts["h3"]
            self.served_by_all()
        finally:
            result = self.wrk_result(load)
        self.assertLessEqual(self.failures(result), 12, result)
        self.assertEqual(set(result["statuses"]) - {"2xx", "5xx"}, set(), result)
        # And then nothing fails.
        load = self.wrk()
        try:
            self.served_by_all()
        finally:
            result = self.wrk_result(load)
        self.assertEqual(self.failures(result), 0, result)
        self.assertEqual(set(result["statuses"]), {"2xx"}, result)


    def status(self, name):
        code, text = harness.run_herd("status", "--json", "-c", self.hosts[name].config_path)
        self.assertEqual(code, 0, text)
        return json.loads(text)

    def ready_for_failover(self):
        """The replica in step, and every sentinel knowing the other two and the replica (they
        meet through hello messages every 2 s)."""
        if "master_link_status:up" not in self.redis_cli("r2", "INFO", "replication"):
            return False
        for name in SENTINELS:
            ask = ["redis-cli", "-h", self.net.address(name), "-p", "26379", "SENTINEL"]
            if self.in_ns(name, ask + ["sentinels", "herd"]).split("\n").count("name") < 2:
                return False
            if self.in_ns(name, ask + ["replicas", "herd"]).split("\n").count("name") < 1:
                return False
        return True

    def worker_copies(self, name, count):
        """{pid: {version, present}} of every worker of host name: /probe/state-range asked on
        new connections (from the lb namespace) until each worker has answered."""
        pids = set(self.hosts[name].worker_pids())
        url_host = self.net.address(name)

        def ask():
            out = {}
            for _ in range(100):
                c = http.client.HTTPConnection(url_host, 8080, timeout=harness.timeout(10))
                c.request("GET", "/probe/state-range?prefix=fo.&count=%d" % count,
                          headers={"Connection": "close"})
                body = json.loads(c.getresponse().read())
                c.close()
                out[body["pid"]] = body
                if set(out) >= pids:
                    return out
            raise AssertionError("%s: only workers %s of %s answered" % (name, set(out), pids))
        return self.net.call_in("lb", ask)

    def test_redis_primary_killed_under_acknowledged_writes(self):
        harness.wait_until(self.ready_for_failover, seconds=30,
                           what="the sentinels to know each other and the replica")
        load = self.wrk()
        writer = Writer(self.net)
        writer.start()
        self.addCleanup(writer.stop)
        try:
            harness.wait_until(lambda: len(writer.acknowledged()) >= 20, seconds=30,
                               what="acknowledged writes through haproxy")
            killed_at = time.monotonic()
            self.redis["r1"].kill()
            self.redis["r1"].wait()
            # The sentinels promote the replica; every host's broker follows them there.
            r2 = self.net.address("r2") + ":6379"

            def followed():
                for name in HOSTS:
                    primary = self.status(name)["state"].get("primary", {})
                    if primary.get("address") != r2 or primary.get("failovers") != 1:
                        return False
                return True
            harness.wait_until(followed, seconds=60, what="every host to follow the failover")
            # With the only replica promoted, no replica is left: writes are applied but not
            # acknowledged. The old primary comes back (as systemd would restart it) and the
            # sentinels make it a replica of the new one: writes are acknowledged again.
            self.redis["r1"] = self.start_redis("r1")
            harness.wait_until(lambda: len(writer.acknowledged(killed_at)) >= 20, seconds=60,
                               what="acknowledged writes after the failover")
        finally:
            writer.stop()
            result = self.wrk_result(load)
        self.assertIsNone(writer.error)
        # Reads never depended on Redis.
        self.assertEqual(self.failures(result), 0, result)
        self.assertEqual(set(result["statuses"]), {"2xx"}, result)

        # Every write got an answer: acknowledged, or failed saying why.
        written = len(writer.results)
        acked = writer.acknowledged()
        failed = [(i, body) for i, status, body, _ in writer.results if status != 200]
        reasons = ("may be lost if the primary fails", "may or may not have been applied",
                   "is down")
        by_reason = {r: 0 for r in reasons}
        for i, status, body, _ in writer.results:
            if status != 200:
                self.assertEqual(status, 503, (i, body))
                self.assertTrue(any(r in body for r in reasons), (i, body))
                by_reason[next(r for r in reasons if r in body)] += 1
        sys.stderr.write("writes: %d, acknowledged %d, failed %d %s\n" % (
            written, len(acked), len(failed), json.dumps(by_reason)))
        # The outage lasted at least the sentinels' second: writes made then failed (above,
        # each with its reason), none hung.
        self.assertTrue(any(at >= killed_at and status != 200
                            for _, status, _, at in writer.results), "no write failed")

        # No acknowledged write was lost: the new primary has each one ...
        fields = set(self.redis_cli("r2", "HKEYS", "herd:data").split("\n"))
        lost = [i for i in acked if "fo.%d" % i not in fields]
        self.assertEqual(lost, [], "acknowledged writes missing on the new primary")
        # ... and every worker of every host converges to its state.
        version = int(self.redis_cli("r2", "GET", "herd:version"))

        def converged():
            for name in HOSTS:
                for pid, copy in self.worker_copies(name, written).items():
                    if copy["version"] != version:
                        return False
            return True
        harness.wait_until(converged, seconds=30, what="every worker to converge")
        for name in HOSTS:
            for pid, copy in self.worker_copies(name, written).items():
                missing = set(acked) - set(copy["present"])
                self.assertEqual(missing, set(), "%s worker %d lacks acknowledged writes"
                                 % (name, pid))
            state = self.status(name)["state"]
            self.assertEqual(state["primary"], {"address": r2, "role": "master", "failovers": 1})
            self.assertEqual(state["details"]["min_replicas_ack"], 1)
        # Each write the replicas did not confirm was counted by the broker that made it.
        self.assertEqual(sum(self.status(n)["state"]["details"]["unconfirmed_writes"]
                             for n in HOSTS), by_reason["may be lost if the primary fails"])


if __name__ == "__main__":
    harness.main()
