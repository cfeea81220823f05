#!/usr/bin/env python3
"""Instructions per request of herd's hello, counted by valgrind --tool=callgrind: repeatable
even on a noisy machine, so a regression in the hot path shows as a changed number.

Method: herd runs under callgrind (1 worker, shared balancing); callgrind follows the fork,
so the master and the worker each write their own profile (callgrind.out.PID) when herd stops.
A client in this script sends exactly N requests (16 connections in lock-step, so the worker
sees batches as it does under wrk; keep-alive, or a new connection per request). Each run is
done twice, with a small and a large N; the difference of the worker's instruction counts
divided by the difference of N is the cost of one request, without start-up and shutdown.
The same difference per function (callgrind_annotate, self cost) gives where the instructions
of a request go. User-space instructions only: the kernel's part (epoll, read, writev, accept)
is not counted.

The same count is taken, as the reference, for nginx (one process: `master_process off`, the
`return 200` of bench/peers.py, access log off) and for bench/peers/raw_epoll.c (which does no
parsing at all): what herd spends in user space beside what they spend.

usage: bench/callgrind.py [--requests 20000] [--quick] [--no-peers]
"""
import argparse
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import ROOT, Proc, free_port, log, nginx_command, wait_port  # noqa: E402

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
CLOSE_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\nAccept: */*\r\nConnection: close\r\n\r\n"
HELLO = b"Hello, World!"


def drive(port, count, close, conns=16):
    """Sends exactly `count` requests over `conns` connections in lock-step."""
    sent = 0
    socks = []
    while sent < count:
        batch = min(conns, count - sent)
        if close or not socks:
            for s in socks:
                s.close()
            socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(batch if close else conns)]
        active = socks[:batch]
        for s in active:
            s.sendall(CLOSE_REQUEST if close else REQUEST)
        pending = {s: b"" for s in active}
        while pending:
            ready, _, _ = select.select(list(pending), [], [], 60)
            if not ready:
                raise RuntimeError("no response within 60 s")
            for s in ready:
                chunk = s.recv(65536)
                pending[s] += chunk
                if pending[s].endswith(HELLO) or not chunk:
                    if not pending[s].startswith(b"HTTP/1.1 200"):
                        raise RuntimeError("bad response: %r" % pending[s][:200])
                    del pending[s]
        sent += batch
    for s in socks:
        s.close()


def one_profile(build, tmp, count, close, tag):
    port = free_port()
    out = os.path.join(tmp, tag)
    os.makedirs(out, exist_ok=True)
    config = {"log_level": "info", "allow_root": os.geteuid() == 0, "control": os.path.join(out, "herd.sock"), "apps": [{
        "name": "cg", "listen": "127.0.0.1:%d" % port, "workers": 1, "watchdog_ms": 600000,
        "plugins": [{"mount": "/", "path": os.path.join(build, "plugins", "libhello.so")}]}]}
    path = os.path.join(out, "cg.json")
    with open(path, "w") as f:
        json.dump(config, f)
    p = Proc(["valgrind", "--tool=callgrind", "--callgrind-out-file=%s/callgrind.out.%%p" % out,
              os.path.join(build, "server", "herd"), "run", path],
             watch=r"(all apps ready)|worker cg/0 \(pid (\d+)\) ready")
    try:
        _, m = p.wait_matches(2, timeout=120)
        worker = int(p.matches[0][1].group(2) or p.matches[1][1].group(2))
        drive(port, count, close)
    finally:
        p.stop(timeout=120)
    files = {"master": os.path.join(out, "callgrind.out.%d" % p.pid),
             "worker": os.path.join(out, "callgrind.out.%d" % worker)}
    totals = {}
    for role, f in files.items():
        with open(f) as fh:
            totals[role] = int(re.search(r"^totals: (\d+)", fh.read(), re.M).group(1))
    return totals, files


def peer_profile(kind, tmp, count, close, tag, raw_binary):
    """Instructions of nginx (one process) or the raw epoll responder serving `count` requests."""
    port = free_port()
    out = os.path.join(tmp, tag)
    os.makedirs(out, exist_ok=True)
    if kind == "nginx":
        cmd = nginx_command(out, port, single_process=True)
    else:
        cmd = [raw_binary, str(port)]
    p = Proc(["valgrind", "--tool=callgrind", "--callgrind-out-file=%s/callgrind.out.%%p" % out] + cmd)
    try:
        wait_port(port, p.proc, timeout=120)
        drive(port, count, close)
    finally:
        p.stop(sig=signal.SIGQUIT if kind == "nginx" else signal.SIGTERM, timeout=120)
    f = os.path.join(out, "callgrind.out.%d" % p.pid)
    with open(f) as fh:
        return int(re.search(r"^totals: (\d+)", fh.read(), re.M).group(1))


def by_function(profile):
    """Self instructions per function, from callgrind_annotate's file:function list; the lines
    of one function inlined from several files (std::string's headers) are added up."""
    out = subprocess.run(["callgrind_annotate", "--auto=no", "--threshold=100", profile], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, check=True).stdout.decode("utf-8", "replace")
    funcs = {}
    in_list = False
    for line in out.splitlines():
        if re.match(r"\s*Ir\s+file:function", line):
            in_list = True
            continue
        if not in_list or line.startswith("---"):
            continue
        m = re.match(r"\s*([\d,]+)\s+\([\s\d.%]+\)\s+(\S.*)$", line)
        if not m:
            continue
        where = re.sub(r"\s+\[[^\]]*\]$", "", m.group(2).strip())  # drop the object file
        func = where.partition(":")[2] if ":" in where else where
        funcs[func] = funcs.get(func, 0) + int(m.group(1).replace(",", ""))
    return funcs


def short(func):
    """The function's name without its parameters and template arguments."""
    prev = None
    while prev != func:  # innermost <...> first
        prev, func = func, re.sub(r"<[^<>]*>", "", func)
    func = re.sub(r"\(anonymous namespace\)::", "", func)
    return re.sub(r"\(.*\)( const)?$", "()", func)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=20000, help="the large N (the small one is a tenth)")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-peers", action="store_true", help="herd only, without nginx and raw epoll")
    ap.add_argument("--build", default=os.environ.get("HERD_BUILD_DIR", os.path.join(ROOT, "build-release")))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args()
    if args.quick:
        args.requests = 4000
    build = os.path.abspath(args.build)
    tmp = tempfile.mkdtemp(prefix="herd-callgrind-")
    lines = ["%s; herd build %s; callgrind, user-space instructions; %d and %d requests, the difference" % (
        time.strftime("%Y-%m-%d"), os.path.relpath(build, ROOT), args.requests // 10, args.requests), ""]
    summary = ["| series | worker instructions per request | master instructions per request |", "| --- | --- | --- |"]
    herd_per = {}
    for close in (False, True):
        series = "new connection per request" if close else "keep-alive"
        large = args.requests if not close else args.requests // 2
        small = large // 10
        log("callgrind, %s: %d then %d requests" % (series, small, large))
        t_small, f_small = one_profile(build, tmp, small, close, "%s-small" % ("close" if close else "ka"))
        t_large, f_large = one_profile(build, tmp, large, close, "%s-large" % ("close" if close else "ka"))
        n = large - small
        worker_per = (t_large["worker"] - t_small["worker"]) / n
        master_per = (t_large["master"] - t_small["master"]) / n
        summary.append("| %s | %.0f | %.0f |" % (series, worker_per, master_per))
        herd_per[close] = worker_per
        fa, fb = by_function(f_small["worker"]), by_function(f_large["worker"])
        diff = sorted(((fb.get(k, 0) - fa.get(k, 0), k) for k in set(fa) | set(fb)), reverse=True)
        lines.append("%s: worker functions by self instructions per request (of %.0f)" % (series, worker_per))
        lines.append("")
        lines.append("| instructions/request | share | function |")
        lines.append("| --- | --- | --- |")
        for d, k in diff[:args.top]:
            if d <= 0:
                break
            lines.append("| %.0f | %.1f%% | %s |" % (d / n, 100.0 * d / (worker_per * n), short(k).replace("|", "\\|")))
        lines.append("")
        lines.append("profiles: %s (small), %s (large)" % (f_small["worker"], f_large["worker"]))
        lines.append("")
    if not args.no_peers:
        raw = os.path.join(build, "raw_epoll")
        subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", raw,
                        os.path.join(ROOT, "bench", "peers", "raw_epoll.c")], check=True)
        peers = ["| series | herd worker | nginx (one process) | raw epoll |", "| --- | --- | --- | --- |"]
        for close in (False, True):
            series = "new connection per request" if close else "keep-alive"
            large = args.requests if not close else args.requests // 2
            small = large // 10
            row = {"herd worker": herd_per[close]}
            for kind in ("nginx", "raw epoll"):
                log("callgrind, %s, %s: %d then %d requests" % (kind, series, small, large))
                tag = "%s-%s" % (kind.replace(" ", "-"), "close" if close else "ka")
                a = peer_profile(kind, tmp, small, close, tag + "-small", raw)
                b = peer_profile(kind, tmp, large, close, tag + "-large", raw)
                row[kind] = (b - a) / (large - small)
            peers.append("| %s | %.0f | %.0f | %.0f |" % (series, row["herd worker"], row["nginx"], row["raw epoll"]))
        summary += ["", "The same count for the peers (user-space instructions per request):", ""] + peers
    text = "\n".join(lines[:2] + summary + [""] + lines[2:]) + "\n"
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "callgrind.md"), "w") as f:
        f.write(text)
    sys.stdout.write("\n" + text)


if __name__ == "__main__":
    main()
