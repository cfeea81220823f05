/* The machine's ceiling for the benchmark: one process, one epoll loop, a fixed response.
 *
 * It does not parse HTTP. It reads what arrives and answers one fixed "Hello, World!" response
 * per request head in the buffer (each "\r\n\r\n"; wrk sends whole heads, no bodies), in one
 * write. A request carrying "Connection: close" gets a response that says so and the
 * connection is closed after it, as a real server does (wrk reconnects only when the response
 * says close). Everything else stays open (keep-alive). Nothing else: no Date, no timeouts,
 * no limits. What it costs per request is what the kernel and the loop cost.
 *
 * usage: raw_epoll PORT        (listens on 127.0.0.1:PORT, prints "ready PORT")
 * build: gcc -O2 -Wall -Wextra -Werror -o raw_epoll raw_epoll.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static const char keep_response[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";
static const char close_response[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\n"
    "Hello, World!";

#define MAX_BATCH 64

static void die(const char *what) {
    perror(what);
    exit(1);
}

/* Answers every complete request head in buf[0..len); returns 1 if the connection must close. */
static int answer(int fd, const char *buf, size_t len) {
    static char out[MAX_BATCH * sizeof close_response];
    size_t used = 0;
    int close_after = 0;
    const char *p = buf;
    const char *end = buf + len;
    const char *head_end;
    while ((head_end = memmem(p, (size_t)(end - p), "\r\n\r\n", 4)) != NULL && used + sizeof close_response <= sizeof out) {
        if (memmem(p, (size_t)(head_end - p), "\r\nConnection: close", 19) != NULL) {
            memcpy(out + used, close_response, sizeof close_response - 1);
            used += sizeof close_response - 1;
            close_after = 1;
            break;
        }
        memcpy(out + used, keep_response, sizeof keep_response - 1);
        used += sizeof keep_response - 1;
        p = head_end + 4;
    }
    if (used > 0 && write(fd, out, used) != (ssize_t)used) return 1; /* a client that stalls is dropped */
    return close_after;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int port = atoi(argv[1]);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0) die("socket");
    int one = 1;
    if (setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) die("setsockopt");
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(lfd, 511) < 0) die("listen");

    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) die("epoll_ctl");
    printf("ready %d\n", port);
    fflush(stdout);

    static char buf[16384];
    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(ep, events, 256, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == lfd) {
                for (;;) {
                    int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (c < 0) break; /* EAGAIN, or out of descriptors: try again on the next wake-up */
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev) < 0) close(c);
                }
                continue;
            }
            ssize_t got = read(fd, buf, sizeof buf);
            if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            if (got <= 0 || answer(fd, buf, (size_t)got)) close(fd); /* close also removes it from epoll */
        }
    }
}
