"""The soak's report (bench/soak.py): each failed request attributed to a fault or not, the
table printed on stdout, and the CSV files in bench/results/."""
import collections
import csv
import os
import re

from benchlib import log

KILL_ATTRIBUTION_S = 5.0
NEAR_KILL_S = 0.5
FILL_GRACE_S = 1.0


# ---------------------------------------------------------------- the report

def attribute(failures, events, fill):
    kills = [e for e in events if e["fault"] == "kill -9 worker"]
    out = []
    for f in failures:
        t, kind, port, opened = f[0], f[1], f[2], f[3]
        reason = None
        for k in kills:
            if port and port in k["ports"] and opened <= k["t"] <= t <= k["t"] + KILL_ATTRIBUTION_S:
                reason = "killed worker"
                break
        if reason is None and kind in ("reset", "eof", "send", "recv"):
            if any(k["t"] <= t <= k["t"] + NEAR_KILL_S for k in kills):
                reason = "near a kill"
        if reason is None and fill and fill[0] <= t <= fill[1] + FILL_GRACE_S:
            reason = "descriptor fill"
        out.append(reason or "other")
    return out


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%d CPU(s) (nproc), %s" % (len(os.sched_getaffinity(0)), cpu)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def report(soak, args, started, load_before, load_after, master_alive, settled, settle_error, exit_code):
    c = soak.client
    failures = c["failures"]
    reasons = attribute(failures, soak.events, soak.fill)
    by_reason = collections.Counter(reasons)
    by_kind = collections.defaultdict(collections.Counter)
    for f, r in zip(failures, reasons):
        by_kind[r][f[1]] += 1
    ev = collections.Counter(e["fault"] for e in soak.events)
    writes = collections.Counter(w[2] for w in soak.writes)
    refusals = collections.Counter(re.sub(r"\d+", "N", w[3]) for w in soak.writes if w[2] != "acknowledged")
    v = getattr(soak, "verified", None)
    # The longest time without a successful response, from the per-100 ms counts.
    ticks = {int(k): n for k, n in c["ok_per_tick"].items()}
    first, last = int(soak.t0 * 10) + 1, int(soak.until * 10)
    stalls, run_start = [], None   # (start tick, length in ticks) of runs without a success
    for tick in range(first, last + 1):
        if tick < last and ticks.get(tick, 0) == 0:
            run_start = tick if run_start is None else run_start
        elif run_start is not None:
            stalls.append((run_start, tick - run_start))
            run_start = None
    longest = max(stalls, key=lambda st: st[1]) if stalls else (first, 0)
    reloads_ok = sum(1 for r in soak.reload_results if r[2] == 0)
    worker_kills = ev["kill -9 worker"]

    def kinds(r):
        k = by_kind.get(r)
        return " (%s)" % ", ".join("%s %d" % kv for kv in sorted(k.items())) if k else ""

    rows = [
        ("duration", "%.0f s under load, %d workers, %d keep-alive connections, RLIMIT_NOFILE %d, seed %d"
         % (args.seconds, args.workers, args.connections, args.nofile, args.seed)),
        ("faults injected", "%d worker kill -9 (every %.0f ms), %d SIGSTOP of 1 s, %d broker kill -9, "
         "%d Redis restarts (SIGTERM, SIGKILL), %d reloads (%d of %d attempts answered ok), "
         "descriptor fill: %s connections held 3 s, %d \"pausing accept\" warnings"
         % (worker_kills, args.kill_every * 1000, ev["SIGSTOP worker"], ev["kill -9 broker"],
            ev["Redis started"], len({r[0] for r in soak.reload_results}), reloads_ok, len(soak.reload_results),
            soak.fill_stats.get("opened", "no"), soak.fill_stats.get("accept_pauses", 0))),
        ("requests sent", "%d" % c["counts"]["attempted"]),
        ("succeeded", "%d (p50 %.1f ms, p99 %.1f ms, max %.0f ms)"
         % (c["counts"]["ok"], c["latency"]["p50"] * 1000, c["latency"]["p99"] * 1000,
            c["latency"]["max"] * 1000)),
        ("longest time without a successful response", "%s; %d stretch(es) of 300 ms or more; "
         "the load client's own loop stood still over 200 ms %d time(s)"
         % ("%d ms (from %.1f s)" % (longest[1] * 100, longest[0] / 10 - soak.t0) if longest[1]
            else "under 100 ms", sum(1 for st in stalls if st[1] >= 3),
            sum(1 for g in c["loop_gaps"] if soak.t0 <= g[0] <= soak.until))),
        ("failed", "%d" % len(failures)),
        ("answered with Connection: close (reloads; not failures)", "%d" % c["counts"]["closed_by_server"]),
        ("failed: on a worker killed by kill -9", "%d%s" % (by_reason["killed worker"], kinds("killed worker"))),
        ("failed: within %.1f s of a kill -9, socket not seen" % NEAR_KILL_S,
         "%d%s" % (by_reason["near a kill"], kinds("near a kill"))),
        ("failed: during the descriptor fill", "%d%s" % (by_reason["descriptor fill"], kinds("descriptor fill"))),
        ("failed: not explained by a fault", "%d%s" % (by_reason["other"], kinds("other"))),
        ("state writes sent", "%d (acknowledged %d, refused %d, unanswered %d)" % (
            len(soak.writes), writes["acknowledged"], writes["refused"], writes["unanswered"])),
    ]
    if v:
        rows += [
            ("acknowledged writes present at the end", "%d of %d by `herd state get`, %d of %d in Redis (HGET)" % (
                v["acknowledged"] - len(v["lost_cli"]), v["acknowledged"],
                v["acknowledged"] - len(v["lost_redis"]), v["acknowledged"])),
            ("acknowledged writes lost", "%d" % len(v["lost"])),
            ("refused or unanswered writes present anyway", "%d of %d (allowed: a write whose confirmation "
             "was lost may have been applied)" % (v["not_acked_present"], v["not_acked"])),
            ("workers' copies", "%d workers read, %d key(s) each (the last acknowledged + a sample): %s" % (
                len(v["workers_checked"]), v["sample"],
                "all present" if not v["workers_missing"] and not v["workers_unreached"]
                else "missing %s, unreached %s" % (v["workers_missing"], v["workers_unreached"]))),
        ]
    else:
        rows.append(("acknowledged writes present at the end", "not checked: %s" % (settle_error or "master gone")))
    rows.append(("workers that started without the state", "%d (herd log: \"no state from the broker\")"
                 % len(soak.herd.no_state)))
    rows.append(("master", "%s; exit code %s on SIGTERM" % (
        "ran throughout" if master_alive else "EXITED during the soak", exit_code)))
    rows.append(("machine", "%s; load average %s before, %s after" % (machine(), load_before, load_after)))

    print("\n| soak, %s | |" % started.strftime("%Y-%m-%d %H:%M"))
    print("| --- | --- |")
    for k, val in rows:
        print("| %s | %s |" % (k, val))
    if refusals:
        print("\nrefused or unanswered writes, by reason:")
        for reason, n in refusals.most_common():
            print("  %5d  %s" % (n, reason))
    if v and v["lost"]:
        print("\nLOST acknowledged writes (key, written, herd state get, its error, Redis, written at s):")
        for row in v["lost"][:50]:
            print("  %r" % (row,))
    if soak.herd.no_state:
        print("\nworkers that started their plugins without the state (herd log):")
        for line in soak.herd.no_state:
            print("  " + line)
    other = [(f, r) for f, r in zip(failures, reasons) if r == "other"]
    if other:
        print("\nfailures not explained by a fault (t since start, kind, port, detail):")
        for f, _ in other[:50]:
            print("  %8.3f s  %-8s port %-5d  %s" % (f[0] - soak.t0, f[1], f[2], f[5]))
    if stalls:
        print("\nstretches of 300 ms or more without a successful response (from s, ms):")
        for st in stalls:
            if st[1] >= 3:
                print("  %7.1f s  %5d ms" % (st[0] / 10 - soak.t0, st[1] * 100))
    gaps = [g for g in c["loop_gaps"] if soak.t0 <= g[0] <= soak.until]
    print("\nthe load client's own loop stood still for over 200 ms %d time(s)%s" % (
        len(gaps), ": " + ", ".join("%.1f s (%d ms)" % (g[0] - soak.t0, g[1] * 1000) for g in gaps[:20]) if gaps else ""))
    print("\nbodies: %s" % dict(c["bodies"]))
    print("reloads: %s" % [(g, a, code, out.replace("\n", " | ")) for g, a, code, out in soak.reload_results])

    res = args.results
    with open(os.path.join(res, "soak.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["measure", "value"])
        w.writerow(["date", started.isoformat(timespec="seconds")])
        for k, val in rows:
            w.writerow([k, val])
        w.writerow(["requests_sent", c["counts"]["attempted"]])
        w.writerow(["requests_ok", c["counts"]["ok"]])
        w.writerow(["requests_failed", len(failures)])
        for r in ("killed worker", "near a kill", "descriptor fill", "other"):
            w.writerow(["failed_" + r.replace(" ", "_"), by_reason[r]])
        w.writerow(["writes_acknowledged", writes["acknowledged"]])
        w.writerow(["writes_lost", len(v["lost"]) if v else "not checked"])
    with open(os.path.join(res, "soak_events.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "fault", "detail", "client_ports"])
        for e in sorted(soak.events, key=lambda e: e["t"]):
            w.writerow(["%.3f" % (e["t"] - soak.t0), e["fault"], e["detail"], " ".join(map(str, sorted(e["ports"])))])
    with open(os.path.join(res, "soak_failures.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "kind", "client_port", "connection_age_s", "responses_before", "attribution", "detail"])
        for fl, r in zip(failures, reasons):
            w.writerow(["%.3f" % (fl[0] - soak.t0), fl[1], fl[2], "%.3f" % (fl[0] - fl[3]), fl[4], r, fl[5]])
    with open(os.path.join(res, "soak_writes.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "key", "outcome", "detail"])
        for wr in soak.writes:
            w.writerow(["%.3f" % (wr[4] - soak.t0), wr[0], wr[2], wr[3]])
    with open(os.path.join(res, "soak_timeline.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "ok_per_100ms", "failed_per_100ms"])
        failed_ticks = collections.Counter(int(fl[0] * 10) for fl in failures)
        for tick in range(first, last):
            w.writerow(["%.1f" % (tick / 10 - soak.t0), ticks.get(tick, 0), failed_ticks.get(tick, 0)])
    log("soak: results in %s (soak.csv, soak_events.csv, soak_failures.csv, soak_writes.csv, soak_timeline.csv, "
        "soak-herd.log)" % res)
