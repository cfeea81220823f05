// A WebSocket load client for bench/websocket.py: one thread, epoll, non-blocking sockets, a
// minimal hand-rolled client side of RFC 6455 (the opening handshake with a fixed key, masked
// frames out, unmasked frames in; pings answered with pongs; no extensions, no fragmentation
// of its own messages). Built by bench/websocket.sh with cc -O2.
//
// usage: ws_load [-s SOURCES] HOST PORT MODE ...
//   idle N PATH               opens N sockets to PATH, prints {"open": N, ...} once all are open,
//                             then holds them (answering pings) until stdin closes or
//                             SIGTERM/SIGINT; then prints {"closed_by_server": K} and exits
//   echo N SECONDS SIZE PATH  opens N sockets to PATH; each sends a text message of SIZE bytes,
//                             waits for its echo and sends the next, for SECONDS; prints JSON:
//                             round trips, per second, p50/p90/p99/max latency in ms
//   fanout N PATH COUNT       opens N sockets to PATH (a room); COUNT times, socket 0 sends one
//                             text message to the room and the client waits until every one of
//                             the N sockets (socket 0 included) has it; prints JSON: the time
//                             from the send until the first and the last socket had it, per
//                             message, and their medians
//   -s SOURCES                spread the sockets over 127.0.0.1 .. 127.0.0.SOURCES as source
//                             addresses (IP_BIND_ADDRESS_NO_PORT), past one address's
//                             ephemeral ports
// At most 256 handshakes are in flight at once (the servers' listen backlogs are 511). A socket
// that fails or is closed by the server counts in "errors"; the run goes on without it.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  // RFC 6455's example answer to KEY
#define INFLIGHT 256
#define STDIN_TAG UINT64_MAX

enum state { FREE, CONNECTING, HANDSHAKE, OPEN, DEAD };

struct conn {
    int fd;
    enum state st;
    char* buf;  // bytes read but not parsed yet (a partial response or frame)
    size_t len, cap;
    uint64_t sent_ns;  // echo: when the message in flight went out
    uint32_t got;      // fanout: messages received in the current round
};

static struct conn* conns;
static int nconns, epfd, nsources = 1;
static struct sockaddr_in server;
static const char *host, *path;
static int port;
static char request[1024];
static size_t request_len;
static int opened, errors, in_flight, next_to_open, closed_by_server;
static volatile sig_atomic_t stop_flag;
static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

// This process's CPU time (user + system), for telling whether the client was the bottleneck.
static uint64_t cpu_ns(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * 1000000000ull +
           ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000ull;
}

static uint32_t next_mask(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

static void die(const char* what) {
    perror(what);
    exit(2);
}

static void fail(struct conn* c) {
    if (c->st == DEAD) return;
    if (c->st == CONNECTING || c->st == HANDSHAKE) in_flight--;
    if (c->st == OPEN) opened--;
    c->st = DEAD;
    errors++;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
}

// Writes all of it (a socket's send buffer takes a small frame whole); false on failure.
static int write_all(struct conn* c, const char* p, size_t n) {
    while (n > 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            return 0;  // EAGAIN too: a client of small messages never fills its send buffer
        }
        p += w;
        n -= (size_t)w;
    }
    return 1;
}

// A masked client frame: FIN, opcode, payload.
static int send_frame(struct conn* c, int opcode, const char* payload, size_t n) {
    char frame[16 + 65536];
    size_t h = 0;
    if (n > 65535) return 0;
    frame[h++] = (char)(0x80 | opcode);
    if (n < 126) {
        frame[h++] = (char)(0x80 | n);
    } else {
        frame[h++] = (char)(0x80 | 126);
        frame[h++] = (char)(n >> 8);
        frame[h++] = (char)(n & 0xff);
    }
    uint32_t m = next_mask();
    unsigned char mask[4] = {(unsigned char)m, (unsigned char)(m >> 8), (unsigned char)(m >> 16),
                             (unsigned char)(m >> 24)};
    memcpy(frame + h, mask, 4);
    h += 4;
    for (size_t i = 0; i < n; i++) frame[h + i] = (char)(payload[i] ^ mask[i & 3]);
    return write_all(c, frame, h + n);
}

static void open_more(void) {
    while (next_to_open < nconns && in_flight < INFLIGHT) {
        struct conn* c = &conns[next_to_open];
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) die("socket");
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (nsources > 1) {
            struct sockaddr_in src = {.sin_family = AF_INET};
            src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(next_to_open % nsources));
            setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
            if (bind(fd, (struct sockaddr*)&src, sizeof src) < 0) die("bind");
        }
        c->fd = fd;
        c->st = CONNECTING;
        in_flight++;
        struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u64 = (uint64_t)next_to_open};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
        next_to_open++;
        if (connect(fd, (struct sockaddr*)&server, sizeof server) < 0 && errno != EINPROGRESS)
            fail(c);
    }
}

static void keep(struct conn* c, const char* p, size_t n) {
    if (n == 0) {
        c->len = 0;
        return;
    }
    if (c->cap < n) {
        c->cap = n < 256 ? 256 : n;
        c->buf = realloc(c->buf, c->cap);
        if (!c->buf) die("realloc");
    }
    memmove(c->buf, p, n);
    c->len = n;
}

// What a mode does with a whole data message.
static void (*on_message)(struct conn* c, const char* p, size_t n);

// Parses frames in p[0..n); keeps a partial one in c. Returns 0 if the socket died.
static int parse_frames(struct conn* c, const char* p, size_t n) {
    while (n >= 2) {
        unsigned char b0 = (unsigned char)p[0], b1 = (unsigned char)p[1];
        size_t h = 2;
        uint64_t plen = b1 & 0x7f;
        if (b1 & 0x80) {  // a masked server frame: a protocol error
            fail(c);
            return 0;
        }
        if (plen == 126) {
            if (n < 4) break;
            plen = ((uint64_t)(unsigned char)p[2] << 8) | (unsigned char)p[3];
            h = 4;
        } else if (plen == 127) {
            if (n < 10) break;
            plen = 0;
            for (int i = 0; i < 8; i++) plen = (plen << 8) | (unsigned char)p[2 + i];
            h = 10;
        }
        if (n < h + plen) break;
        int opcode = b0 & 0x0f;
        if (opcode == 0x9) {  // ping: pong with its payload
            if (!send_frame(c, 0xA, p + h, (size_t)plen)) {
                fail(c);
                return 0;
            }
        } else if (opcode == 0x8) {  // close: the server ended it
            closed_by_server++;
            fail(c);
            return 0;
        } else if (opcode == 0x1 || opcode == 0x2 || opcode == 0x0) {
            if (b0 & 0x80) on_message(c, p + h, (size_t)plen);  // FIN: a whole message
            if (c->st != OPEN) return 0;
        }
        p += h + plen;
        n -= h + plen;
    }
    keep(c, p, n);
    return 1;
}

static void (*on_open)(struct conn* c);

static void handle(struct conn* c, uint32_t events) {
    static char rbuf[1 << 16];
    if (c->st == CONNECTING) {
        if (events & (EPOLLERR | EPOLLHUP)) {
            fail(c);
            return;
        }
        if (!(events & EPOLLOUT)) return;
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err != 0 || !write_all(c, request, request_len)) {
            fail(c);
            return;
        }
        c->st = HANDSHAKE;
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)(c - conns)};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
        return;
    }
    for (;;) {
        ssize_t r = recv(c->fd, rbuf, sizeof rbuf, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return;
            fail(c);
            return;
        }
        if (r == 0) {
            if (c->st == OPEN) closed_by_server++;
            fail(c);
            return;
        }
        const char* p = rbuf;
        size_t n = (size_t)r;
        if (c->len > 0) {  // a partial response or frame first
            if (c->cap < c->len + n) {
                c->cap = c->len + n;
                c->buf = realloc(c->buf, c->cap);
                if (!c->buf) die("realloc");
            }
            memcpy(c->buf + c->len, rbuf, n);
            c->len += n;
            p = c->buf;
            n = c->len;
        }
        if (c->st == HANDSHAKE) {
            const char* end = memmem(p, n, "\r\n\r\n", 4);
            if (!end) {
                if (p != c->buf) keep(c, p, n);
                if (n > 8192) fail(c);
                continue;
            }
            size_t hlen = (size_t)(end - p) + 4;
            if (n < 12 || memcmp(p, "HTTP/1.1 101", 12) != 0 ||
                !memmem(p, hlen, ACCEPT, strlen(ACCEPT))) {
                fprintf(stderr, "ws_load: not a 101 with the right accept key: %.*s\n",
                        (int)(hlen > 200 ? 200 : hlen), p);
                fail(c);
                return;
            }
            c->st = OPEN;
            in_flight--;
            opened++;
            p += hlen;
            n -= hlen;
            // keep() may move p's bytes inside c->buf: parse from a copy-safe place
            if (c->buf && p >= c->buf && p < c->buf + c->cap) {
                memmove(c->buf, p, n);
                p = c->buf;
            }
            c->len = 0;
            if (!parse_frames(c, p, n)) return;
            on_open(c);
            if (c->st != OPEN) return;
            continue;
        }
        if (p == c->buf) c->len = 0;  // parse_frames keeps what is left (memmove-safe)
        if (!parse_frames(c, p, n)) return;
    }
}

static void on_stop(int sig) {
    (void)sig;
    stop_flag = 1;
}

// Runs the loop once (up to timeout_ms); returns whether stdin closed.
static int poll_once(int timeout_ms) {
    struct epoll_event evs[512];
    int k = epoll_wait(epfd, evs, 512, timeout_ms);
    if (k < 0) {
        if (errno == EINTR) return 0;
        die("epoll_wait");
    }
    int stdin_closed = 0;
    for (int i = 0; i < k; i++) {
        if (evs[i].data.u64 == STDIN_TAG) {
            char b[256];
            ssize_t r = read(0, b, sizeof b);
            if (r <= 0) {
                stdin_closed = 1;
                epoll_ctl(epfd, EPOLL_CTL_DEL, 0, NULL);
            }
            continue;
        }
        struct conn* c = &conns[evs[i].data.u64];
        if (c->st != DEAD) handle(c, evs[i].events);
    }
    open_more();
    return stdin_closed;
}

// Opens every socket (at most INFLIGHT handshakes at once); returns the seconds it took.
static double open_all(void) {
    uint64_t t0 = now_ns();
    open_more();
    while (opened + errors < nconns && !stop_flag) poll_once(100);
    return (double)(now_ns() - t0) / 1e9;
}

// idle ----------------------------------------------------------------------------------------

static void nothing_open(struct conn* c) {
    (void)c;
}
static void nothing_msg(struct conn* c, const char* p, size_t n) {
    (void)c, (void)p, (void)n;
}

static int run_idle(void) {
    on_open = nothing_open;
    on_message = nothing_msg;
    double secs = open_all();
    printf("{\"open\": %d, \"errors\": %d, \"open_seconds\": %.3f}\n", opened, errors, secs);
    fflush(stdout);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = STDIN_TAG};
    int watch_stdin = epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev) == 0;
    while (!stop_flag) {
        if (poll_once(200) && watch_stdin) break;
    }
    printf("{\"closed_by_server\": %d, \"errors\": %d}\n", closed_by_server, errors);
    return 0;
}

// echo ----------------------------------------------------------------------------------------

static char* payload;
static size_t payload_len;
static uint64_t* samples;
static size_t nsamples, samples_cap;
static int measuring;
static uint64_t round_trips;

static void echo_send(struct conn* c) {
    c->sent_ns = now_ns();
    if (!send_frame(c, 0x1, payload, payload_len)) fail(c);
}

static void echo_msg(struct conn* c, const char* p, size_t n) {
    (void)p;
    (void)n;
    uint64_t t = now_ns();
    if (measuring) {
        round_trips++;
        if (nsamples == samples_cap) {
            samples_cap = samples_cap ? samples_cap * 2 : 1 << 20;
            samples = realloc(samples, samples_cap * sizeof *samples);
            if (!samples) die("realloc");
        }
        samples[nsamples++] = t - c->sent_ns;
    }
    echo_send(c);
}

static int cmp_u64(const void* a, const void* b) {
    uint64_t x = *(const uint64_t*)a, y = *(const uint64_t*)b;
    return x < y ? -1 : x > y;
}

static double pct_ms(double q) {
    if (nsamples == 0) return -1;
    size_t i = (size_t)(q * (double)(nsamples - 1));
    return (double)samples[i] / 1e6;
}

static int run_echo(double seconds, size_t size) {
    payload_len = size;
    payload = malloc(size + 1);
    memset(payload, 'a', size);  // never one of probe's commands ("pid", "close ...")
    on_open = nothing_open;      // nothing sent before every socket is open
    on_message = echo_msg;
    double open_secs = open_all();
    int ready = opened;
    on_open = echo_send;  // (none left to open)
    for (int i = 0; i < nconns; i++)
        if (conns[i].st == OPEN) echo_send(&conns[i]);
    // one second of warm-up, then the measured run
    uint64_t warm_end = now_ns() + 1000000000ull;
    while (now_ns() < warm_end && !stop_flag) poll_once(50);
    measuring = 1;
    uint64_t cpu0 = cpu_ns();
    uint64_t t0 = now_ns(), end = t0 + (uint64_t)(seconds * 1e9);
    while (now_ns() < end && !stop_flag) poll_once(50);
    measuring = 0;
    double elapsed = (double)(now_ns() - t0) / 1e9;
    double client_cpu = (double)(cpu_ns() - cpu0) / 1e9;
    qsort(samples, nsamples, sizeof *samples, cmp_u64);
    printf(
        "{\"sockets\": %d, \"open_seconds\": %.3f, \"seconds\": %.3f, \"size\": %zu, "
        "\"round_trips\": %llu, "
        "\"per_second\": %.1f, \"p50_ms\": %.4f, \"p90_ms\": %.4f, \"p99_ms\": %.4f, \"max_ms\": "
        "%.4f, "
        "\"client_cpu_share\": %.3f, \"errors\": %d, \"closed_by_server\": %d}\n",
        ready, open_secs, elapsed, size, (unsigned long long)round_trips,
        (double)round_trips / elapsed, pct_ms(0.5), pct_ms(0.9), pct_ms(0.99), pct_ms(1.0),
        client_cpu / elapsed, errors, closed_by_server);
    return 0;
}

// fanout --------------------------------------------------------------------------------------

static int round_got;  // sockets that have the current round's message
static uint64_t first_ns, last_ns;
static uint64_t extra_messages;  // messages beyond one per socket per round

static void fan_msg(struct conn* c, const char* p, size_t n) {
    (void)p;
    (void)n;
    uint64_t t = now_ns();
    if (c->got++ > 0) {
        extra_messages++;
        return;
    }
    if (round_got++ == 0) first_ns = t;
    last_ns = t;
}

static int cmp_d(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return x < y ? -1 : x > y;
}

static int run_fanout(int count) {
    on_open = nothing_open;
    on_message = fan_msg;
    double open_secs = open_all();
    // a short settle: the servers finish subscribing the last sockets
    uint64_t settle = now_ns() + 500000000ull;
    while (now_ns() < settle && !stop_flag) poll_once(50);
    struct conn* sender = NULL;
    for (int i = 0; i < nconns && !sender; i++)
        if (conns[i].st == OPEN) sender = &conns[i];
    if (!sender) {
        printf("{\"error\": \"no socket open\", \"errors\": %d}\n", errors);
        return 1;
    }
    double *firsts = calloc((size_t)count, sizeof(double)),
           *lasts = calloc((size_t)count, sizeof(double));
    double* cpus = calloc((size_t)count, sizeof(double));
    int* reached = calloc((size_t)count, sizeof(int));
    char msg[64];
    for (int r = 0; r < count && !stop_flag; r++) {
        for (int i = 0; i < nconns; i++) conns[i].got = 0;
        round_got = 0;
        int target = opened;
        int len = snprintf(msg, sizeof msg, "fanout message %d", r);
        uint64_t cpu0 = cpu_ns();
        uint64_t t0 = now_ns(), deadline = t0 + 30000000000ull;
        if (!send_frame(sender, 0x1, msg, (size_t)len)) fail(sender);
        while (round_got < target && now_ns() < deadline && !stop_flag) poll_once(50);
        firsts[r] = round_got ? (double)(first_ns - t0) / 1e6 : -1;
        lasts[r] = round_got ? (double)(last_ns - t0) / 1e6 : -1;
        reached[r] = round_got;
        cpus[r] = (double)(cpu_ns() - cpu0) / 1e6;
        // a pause between messages: the servers' queues empty
        uint64_t pause = now_ns() + 300000000ull;
        while (now_ns() < pause && !stop_flag) poll_once(50);
    }
    printf("{\"sockets\": %d, \"open_seconds\": %.3f, \"messages\": %d, \"first_ms\": [", opened,
           open_secs, count);
    for (int r = 0; r < count; r++) printf("%s%.3f", r ? ", " : "", firsts[r]);
    printf("], \"last_ms\": [");
    for (int r = 0; r < count; r++) printf("%s%.3f", r ? ", " : "", lasts[r]);
    printf("], \"client_cpu_ms\": [");
    for (int r = 0; r < count; r++) printf("%s%.3f", r ? ", " : "", cpus[r]);
    printf("], \"reached\": [");
    for (int r = 0; r < count; r++) printf("%s%d", r ? ", " : "", reached[r]);
    qsort(lasts, (size_t)count, sizeof *lasts, cmp_d);
    qsort(firsts, (size_t)count, sizeof *firsts, cmp_d);
    printf(
        "], \"median_last_ms\": %.3f, \"median_first_ms\": %.3f, \"extra_messages\": %llu, "
        "\"errors\": %d, "
        "\"closed_by_server\": %d}\n",
        lasts[count / 2], firsts[count / 2], (unsigned long long)extra_messages, errors,
        closed_by_server);
    return 0;
}

static void usage(void) {
    fprintf(stderr,
            "usage: ws_load [-s SOURCES] HOST PORT idle N PATH\n"
            "       ws_load [-s SOURCES] HOST PORT echo N SECONDS SIZE PATH\n"
            "       ws_load [-s SOURCES] HOST PORT fanout N PATH COUNT\n");
    exit(2);
}

int main(int argc, char** argv) {
    int a = 1;
    if (a + 1 < argc && strcmp(argv[a], "-s") == 0) {
        nsources = atoi(argv[a + 1]);
        if (nsources < 1 || nsources > 254) usage();
        a += 2;
    }
    if (argc - a < 4) usage();
    host = argv[a];
    port = atoi(argv[a + 1]);
    const char* mode = argv[a + 2];
    nconns = atoi(argv[a + 3]);
    if (nconns < 1) usage();
    char** rest = argv + a + 4;
    int nrest = argc - a - 4;
    if (strcmp(mode, "idle") == 0 && nrest == 1) {
        path = rest[0];
    } else if (strcmp(mode, "echo") == 0 && nrest == 3) {
        path = rest[2];
    } else if (strcmp(mode, "fanout") == 0 && nrest == 2) {
        path = rest[0];
    } else {
        usage();
    }

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)nconns + 16) {
        fprintf(stderr, "ws_load: RLIMIT_NOFILE %llu is too low for %d sockets\n",
                (unsigned long long)rl.rlim_cur, nconns);
        return 2;
    }
    server.sin_family = AF_INET;
    server.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &server.sin_addr) != 1) usage();
    request_len = (size_t)snprintf(
        request, sizeof request,
        "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
        path, host, port);
    conns = calloc((size_t)nconns, sizeof *conns);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!conns || epfd < 0) die("setup");
    struct sigaction sa = {.sa_handler = on_stop};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (strcmp(mode, "idle") == 0) return run_idle();
    if (strcmp(mode, "echo") == 0) return run_echo(atof(rest[0]), (size_t)atol(rest[1]));
    return run_fanout(atoi(rest[1]));
}
