/*
 * loadgen: the benchmarks' load generator, written in C so that it is not the bottleneck.
 *
 *   loadgen tcp  HOST PORT CONNS SECONDS SIZE [WARMUP [BATCH]]  ping-pong over CONNS connections
 *   loadgen udp  HOST PORT FLOWS SECONDS SIZE [WARMUP [BATCH]]  the same with datagrams (a socket a flow)
 *   loadgen hold HOST PORT CONNS                         open CONNS connections (one round trip
 *                                                         each), print "ready", hold them until
 *                                                         stdin closes (idle-memory benchmark)
 *   loadgen echo PORT                                    a C epoll echo server (TCP), to measure
 *                                                         the generator's own ceiling
 *
 * Each connection sends SIZE bytes, waits for SIZE bytes back, records the round trip,
 * and repeats. One thread, epoll, non-blocking sockets, TCP_NODELAY. Prints one JSON
 * line: requests, requests/s, p50/p99/max latency in microseconds, errors.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"

#define MAX_SIZE 65536

typedef struct {
    int fd;
    size_t got;
    uint64_t sent_at;
    uint64_t done; /* round trips completed in the measured window */
} conn_t;

static int run_echo(int port) {
    raise_nofile();
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) || listen(lfd, 4096)) {
        perror("bind/listen");
        return 1;
    }
    socklen_t len = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &len);
    printf("%d\n", ntohs(sa.sin_port));
    fflush(stdout);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    static char buf[MAX_SIZE];
    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(ep, events, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == lfd) {
                int c;
                while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                }
                continue;
            }
            ssize_t r = read(fd, buf, sizeof buf);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN) continue;
                close(fd);
                continue;
            }
            ssize_t off = 0;
            while (off < r) {  /* tiny messages: the send buffer never fills in ping-pong */
                ssize_t w = write(fd, buf + off, (size_t)(r - off));
                if (w < 0) {
                    if (errno == EAGAIN) continue;
                    break;
                }
                off += w;
            }
        }
    }
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "echo") == 0) return run_echo(atoi(argv[2]));
    if (argc < 7 && !(argc >= 5 && strcmp(argv[1], "hold") == 0)) {
        fprintf(stderr, "usage: loadgen tcp|udp HOST PORT CONNS SECONDS SIZE [WARMUP [BATCH]] | loadgen echo PORT\n");
        return 2;
    }
    int hold = argc >= 5 && strcmp(argv[1], "hold") == 0;
    if (hold) {
        /* Same establishment as tcp mode, then wait: reuse the argument layout. */
        static char *fake[9];
        fake[0] = argv[0]; fake[1] = "tcp"; fake[2] = argv[2]; fake[3] = argv[3]; fake[4] = argv[4];
        fake[5] = "0"; fake[6] = "64"; fake[7] = "0"; fake[8] = "4";
        argv = fake;
        argc = 9;
    }
    int udp = strcmp(argv[1], "udp") == 0;
    const char *host = argv[2];
    int port = atoi(argv[3]), nconn = atoi(argv[4]);
    double seconds = atof(argv[5]), warmup = argc > 7 ? atof(argv[7]) : 0.5;
    size_t size = (size_t)atoi(argv[6]);
    if (size < 1 || size > MAX_SIZE || nconn < 1 || (argc > 8 && atoi(argv[8]) < 1)) {
        fprintf(stderr, "bad size or connection count\n");
        return 2;
    }
    raise_nofile();
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    conn_t *conns = calloc((size_t)nconn, sizeof *conns);
    int ep = epoll_create1(0);
    int one = 1;
    uint64_t errors = 0;
    /* Establish in batches: connect BATCH sockets, then complete one round trip on each
     * before the next batch. No SYN burst overflows the server's listen backlog, and
     * measurement starts only once the server has accepted and served every connection
     * (otherwise a connection the client believes open may not be accepted for seconds,
     * and a server would be measured on fewer connections than asked). */
    static char msg[MAX_SIZE], buf[MAX_SIZE];
    memset(msg, 'x', size);
    /* Default batch 4: below the stdlib's listen backlog of 5. A larger BATCH (argument 8)
     * measures how a server copes with a burst of connections (establish_ms). */
    const int BATCH = argc > 8 ? atoi(argv[8]) : 4;
    uint64_t establish_start = now_ns();
    struct epoll_event cevents[1024];
    for (int base = 0; base < nconn; base += BATCH) {
        int top = base + BATCH < nconn ? base + BATCH : nconn;
        for (int i = base; i < top; i++) {
            int fd = socket(AF_INET, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK, 0);
            if (fd < 0) {
                perror("socket");
                return 1;
            }
            if (!udp) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            conns[i].fd = fd;
            if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
                perror("connect");
                return 1;
            }
            struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)i};
            epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        }
        int pending = top - base, answered = 0;
        uint64_t deadline = now_ns() + 30ull * 1000000000ull;
        while (answered < top - base) {
            if (now_ns() > deadline) {
                fprintf(stderr, "connections %d-%d: no first reply within 30 s\n", base, top - 1);
                return 1;
            }
            int n = epoll_wait(ep, cevents, 1024, 100);
            for (int k = 0; k < n; k++) {
                conn_t *c = &conns[cevents[k].data.u32];
                if (pending > 0 && (cevents[k].events & EPOLLOUT)) {
                    int err = 0;
                    socklen_t len = sizeof err;
                    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                    if (err) {
                        fprintf(stderr, "connect: %s\n", strerror(err));
                        return 1;
                    }
                    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = cevents[k].data.u32};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                    pending--;
                    if (write(c->fd, msg, size) != (ssize_t)size) errors++;
                    continue;
                }
                ssize_t r = read(c->fd, buf, udp ? size : size - c->got);
                if (r <= 0) {
                    if (r < 0 && errno == EAGAIN) continue;
                    fprintf(stderr, "connection closed during the first round trip\n");
                    return 1;
                }
                c->got = udp ? size : c->got + (size_t)r;
                if (c->got == size) {
                    c->got = 0;
                    answered++;
                }
            }
        }
    }
    double establish_ms = (double)(now_ns() - establish_start) / 1e6;
    if (hold) {
        printf("ready %d %.1f\n", nconn, establish_ms);
        fflush(stdout);
        while (read(0, buf, sizeof buf) > 0) {
        }
        return 0;
    }
    size_t cap = 1 << 20, nsamples = 0;
    uint32_t *samples = malloc(cap * sizeof *samples);
    uint64_t start = now_ns();
    uint64_t measure_from = start + (uint64_t)(warmup * 1e9);
    uint64_t end = measure_from + (uint64_t)(seconds * 1e9);
    for (int i = 0; i < nconn; i++) {
        conns[i].sent_at = now_ns();
        if (write(conns[i].fd, msg, size) != (ssize_t)size) errors++;
    }
    struct epoll_event events[1024];
    uint64_t t = start;
    while (t < end) {
        int n = epoll_wait(ep, events, 1024, 100);
        t = now_ns();
        for (int k = 0; k < n; k++) {
            conn_t *c = &conns[events[k].data.u32];
            ssize_t r = read(c->fd, buf, udp ? size : size - c->got);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN) continue;
                errors++;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                continue;
            }
            c->got += (size_t)r;
            if (udp) c->got = size;
            if (c->got < size) continue;
            c->got = 0;
            if (c->sent_at >= measure_from && t < end) {
                if (nsamples == cap) {
                    cap *= 2;
                    samples = realloc(samples, cap * sizeof *samples);
                }
                uint64_t us = (t - c->sent_at) / 1000;
                samples[nsamples++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
                c->done++;
            }
            c->sent_at = t;
            if (write(c->fd, msg, size) != (ssize_t)size) errors++;
        }
    }
    qsort(samples, nsamples, sizeof *samples, cmp_u32);
    double p50 = nsamples ? samples[nsamples / 2] : 0;
    double p99 = nsamples ? samples[(size_t)(nsamples * 0.99)] : 0;
    double pmax = nsamples ? samples[nsamples - 1] : 0;
    /* A server that starves some connections can look fast: report how many were
     * served at all during the window, and the least-served one. */
    int starved = 0;
    uint64_t least = UINT64_MAX;
    for (int i = 0; i < nconn; i++) {
        if (conns[i].done == 0) starved++;
        if (conns[i].done < least) least = conns[i].done;
    }
    printf("{\"requests\": %zu, \"rps\": %.0f, \"p50_us\": %.0f, \"p99_us\": %.0f, \"max_us\": %.0f, "
           "\"errors\": %llu, \"connections\": %d, \"starved\": %d, \"least_served\": %llu, "
           "\"establish_ms\": %.1f}\n",
           nsamples, nsamples / seconds, p50, p99, pmax, (unsigned long long)errors, nconn, starved,
           (unsigned long long)least, establish_ms);
    return 0;
}
