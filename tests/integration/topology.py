"""Several machines on one: network namespaces joined by veth pairs to a bridge that lives in a
namespace of its own (so the host's firewall never sees the traffic), with addresses in the
loopback range only: 127.77.0.0/24, `route_localnet` set so that the kernel routes them, and
each namespace's own loopback narrowed to 127.0.0.1/32 so that 127.77.0.x is not "local" in
every namespace. Needs root (CAP_NET_ADMIN); `available()` says why not otherwise.

    with Topology(["lb", "h1", "h2"]) as net:
        net.address("h1")            # "127.77.0.11"
        net.run("h1", ["cmd", ...])  # a command inside h1
        net.wrap("h1")               # ["ip", "netns", "exec", NAME]: to prefix a Popen's argv
        net.enter("lb")              # the calling thread's sockets from now on are in lb
"""
import ctypes
import os
import shutil
import subprocess
import threading

SUBNET = "127.77.0"
CLONE_NEWNET = 0x40000000

# haproxy's global and defaults sections in front of herd hosts (test_fleet.py, bench/fleet.py;
# docs/deployment.md says why each line): a request that meets a host that just died is sent
# to another one; an answer, even a 503, is never replayed elsewhere (a write a plugin refused
# must not be made again on another host). Each backend adds HAPROXY_BACKEND_RETRIES.
HAPROXY_DEFAULTS = """global
    maxconn 2000
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch
    retry-on conn-failure empty-response response-timeout
"""
# Only GET and HEAD are retried once sent (a host that died while answering them); any other
# method only when its connection failed (nothing was sent).
HAPROXY_BACKEND_RETRIES = "    http-request disable-l7-retry if !METH_GET\n"

# A redis-sentinel watching the primary "herd" (test_fleet.py, bench/fleet.py): quorum 2 of 3;
# the primary is down once it has not answered for a second (Sentinel's default is 30 s).
SENTINEL_CONF = """port 26379
bind {address}
protected-mode no
daemonize no
logfile ""
dir {dir}
sentinel monitor herd {primary} 6379 2
sentinel down-after-milliseconds herd 1000
sentinel failover-timeout herd 10000
sentinel parallel-syncs herd 1
"""


def _ip(*args, check=True):
    return subprocess.run(["ip"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          check=check)


def enter_netns(ns):
    """Moves the calling thread into the network namespace ns (a name under /run/netns): the
    sockets it opens from then on are there. Threads are tasks to the kernel, so the other
    threads of the process stay where they are. (ctypes: Python 3.11 has no os.setns.)"""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open("/run/netns/" + ns, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns(%s)" % ns)
    finally:
        os.close(fd)


def available():
    """None when namespaces can be made here, else why not (a skip message)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is missing"
    name = "herdprobe%d" % os.getpid()
    r = _ip("netns", "add", name, check=False)
    if r.returncode != 0:
        return "cannot make a network namespace: " + r.stderr.decode().strip()
    _ip("netns", "del", name, check=False)
    return None


class Topology:
    def __init__(self, names, first_host=10):
        self.prefix = "hf%d" % (os.getpid() % 100000)
        self.names = list(names)
        # lb gets .1; the others .11, .12, ... in order
        self.addresses = {}
        n = first_host
        for name in self.names:
            if name == "lb":
                self.addresses[name] = SUBNET + ".1"
            else:
                n += 1
                self.addresses[name] = "%s.%d" % (SUBNET, n)
        self.made = []

    def ns(self, name):
        return "%s-%s" % (self.prefix, name)

    def address(self, name):
        return self.addresses[name]

    def wrap(self, name):
        return ["ip", "netns", "exec", self.ns(name)]

    def enter(self, name):
        enter_netns(self.ns(name))

    def call_in(self, name, fn, *args):
        """fn(*args) in a thread of its own inside namespace name (the caller's stays where it
        is); its result, or its exception raised here."""
        out = {}

        def body():
            try:
                self.enter(name)
                out["value"] = fn(*args)
            except BaseException as e:  # handed to the caller
                out["error"] = e
        t = threading.Thread(target=body, daemon=True)
        t.start()
        t.join()
        if "error" in out:
            raise out["error"]
        return out["value"]

    def run(self, name, argv, **kw):
        return subprocess.run(self.wrap(name) + argv, **kw)

    def __enter__(self):
        try:
            switch = self.ns("sw")
            _ip("netns", "add", switch)
            self.made.append(switch)
            self.run("sw", ["sh", "-ec", "ip link set lo up; ip link add br0 type bridge; "
                                         "ip link set br0 up"], check=True)
            for i, name in enumerate(self.names):
                ns = self.ns(name)
                _ip("netns", "add", ns)
                self.made.append(ns)
                veth = "%sv%d" % (self.prefix, i)
                _ip("link", "add", veth, "netns", switch, "type", "veth", "peer", "name", "eth0",
                    "netns", ns)
                self.run("sw", ["ip", "link", "set", veth, "master", "br0", "up"], check=True)
                self.run(name, ["sh", "-ec",
                                "ip link set lo up; ip addr del 127.0.0.1/8 dev lo; "
                                "ip addr add 127.0.0.1/32 dev lo; "
                                "sysctl -qw net.ipv4.conf.all.route_localnet=1; "
                                "sysctl -qw net.ipv4.conf.eth0.route_localnet=1; "
                                "ip addr add %s/24 dev eth0; ip link set eth0 up"
                                % self.address(name)], check=True)
        except BaseException:
            self.close()
            raise
        return self

    def close(self):
        for ns in reversed(self.made):
            _ip("netns", "del", ns, check=False)
        self.made = []

    def __exit__(self, *exc):
        self.close()
        return False
