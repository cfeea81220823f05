"""Several herd hosts behind a real load balancer, sharing their state through one Redis: each
host, Redis and haproxy (Debian's) in a network namespace of its own (topology.py), on
loopback-range addresses. haproxy checks each host's /healthz. Under wrk through haproxy: a
write made through one host is seen on every host; a host reloaded fails no request; a host
killed costs at most the requests in flight on its connections, and haproxy routes around it.
Root only (network namespaces); skipped with the reason elsewhere."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

import harness
import topology
from harness import plugin

HERE = os.path.dirname(os.path.abspath(__file__))
WHY_NOT = topology.available()
MISSING = [p for p in ("haproxy", "redis-server", "redis-cli", "wrk", "curl") if not shutil.which(p)]
HOSTS = ["h1", "h2", "h3"]


HAPROXY = topology.HAPROXY_DEFAULTS + """frontend web
    bind {lb}:8080
    default_backend hosts
backend hosts
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
    default-server inter 100ms fall 2 rise 2 port 8081
{servers}
"""


@unittest.skipIf(WHY_NOT, WHY_NOT or "")
@unittest.skipIf(MISSING, "missing: %s (scripts/test.sh installs them)" % ", ".join(MISSING))
class Fleet(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="herd-fleet-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.net = topology.Topology(["lb"] + HOSTS + ["redis"])
        self.net.__enter__()
        self.addCleanup(self.net.close)  # runs last: after every process inside is gone
        self.procs = []
        self.addCleanup(self.stop_procs)
        redis = self.net.address("redis")
        self.spawn("redis", ["redis-server", "--bind", redis, "--port", "6379", "--save", "",
                             "--appendonly", "no", "--protected-mode", "no", "--dir", self.tmp])
        harness.wait_until(lambda: self.in_ns("redis", ["redis-cli", "-h", redis, "PING"])
                           == "PONG", what="redis-server in its namespace")
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

    def config_for(self, name, greeting="hello"):
        address = self.net.address(name)
        return {"health": "%s:8081" % address,
                "state": {"backend": "redis",
                          "url": "redis://%s:6379/0" % self.net.address("redis")},
                "apps": [{"name": "web", "listen": "%s:8080" % address, "workers": 2,
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


if __name__ == "__main__":
    harness.main()
