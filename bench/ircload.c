/*
 * ircload: the chat benchmark's load tool, in C so that it is not the bottleneck.
 *
 *   ircload fanout HOST PORT CLIENTS SENDERS SECONDS RATE SIZE [WARMUP [STUCK]]
 *       CLIENTS connections register (NICK/USER) and join #bench; then SENDERS of them
 *       send PRIVMSG #bench for SECONDS (after WARMUP seconds): as fast as the server
 *       takes them (RATE 0) or RATE messages per second in total. Every client reads
 *       everything, except the last STUCK ones (default 0), which stop reading once
 *       joined (a 4 KiB receive buffer: a client on a dead link). Prints one JSON
 *       line: messages sent, deliveries (PRIVMSG lines received by the readers) per
 *       second, delivery latency p50/p99/max in microseconds (send time is in the
 *       message; one clock for all), readers the server dropped, and how many stuck
 *       clients the server disconnected by the end.
 *   ircload relay PORT
 *       a minimal C relay (answers registration with 001 and 366, copies every PRIVMSG
 *       to every other client): the ceiling of the tool itself.
 *
 * One thread, epoll, non-blocking sockets, TCP_NODELAY.
 */
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

#include "bench_common.h"

#define RBUF 65536
#define WBUF 65536
#define MAX_SAMPLES 4000000

typedef struct {
    int fd;
    int joined;
    int dead;
    size_t rlen, wlen;
    char rbuf[RBUF];
    char wbuf[WBUF];
    int want_out;
} conn_t;

static int ep;

static void watch(conn_t *c, uint32_t id) {
    int want = c->wlen > 0;
    if (want == c->want_out) return;
    c->want_out = want;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.u32 = id};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Write what is buffered; 0 when the connection broke. */
static int flush(conn_t *c, uint32_t id) {
    while (c->wlen > 0) {
        ssize_t w = write(c->fd, c->wbuf, c->wlen);
        if (w < 0) {
            if (errno == EAGAIN) break;
            return 0;
        }
        memmove(c->wbuf, c->wbuf + w, c->wlen - (size_t)w);
        c->wlen -= (size_t)w;
    }
    watch(c, id);
    return 1;
}

static int queue_out(conn_t *c, const char *data, size_t len) {
    if (c->wlen + len > WBUF) return 0;
    memcpy(c->wbuf + c->wlen, data, len);
    c->wlen += len;
    return 1;
}

/* The command of an IRC line (tags and source skipped); sets *rest to what follows. */
static const char *command_of(const char *line, const char *end, size_t *clen, const char **rest) {
    const char *p = line;
    if (p < end && *p == '@') {
        while (p < end && *p != ' ') p++;
        while (p < end && *p == ' ') p++;
    }
    if (p < end && *p == ':') {
        while (p < end && *p != ' ') p++;
        while (p < end && *p == ' ') p++;
    }
    const char *c = p;
    while (p < end && *p != ' ') p++;
    *clen = (size_t)(p - c);
    *rest = p;
    return c;
}

/* ------------------------------------------------------------------------------------ */

static int run_fanout(int argc, char **argv) {
    const char *host = argv[2];
    int port = atoi(argv[3]), nclients = atoi(argv[4]), nsenders = atoi(argv[5]);
    double seconds = atof(argv[6]), rate = atof(argv[7]);
    int size = atoi(argv[8]);
    double warmup = argc > 9 ? atof(argv[9]) : 1.0;
    int nstuck = argc > 10 ? atoi(argv[10]) : 0;
    if (nclients < 1 || nsenders < 1 || nsenders + nstuck > nclients || nstuck < 0 || size < 40 ||
        size > 400) {
        fprintf(stderr, "need 1 <= SENDERS <= CLIENTS - STUCK and 40 <= SIZE <= 400\n");
        return 2;
    }
    raise_nofile();
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    conn_t *conns = calloc((size_t)nclients, sizeof *conns);
    ep = epoll_create1(0);
    int one = 1;
    char line[512];
    /* Connect and register in batches of 50 (no SYN burst over the server's backlog);
     * the run starts once every client has seen the end of its own JOIN (366). */
    int joined = 0, dropped = 0;
    struct epoll_event events[1024];
    uint64_t deadline = now_ns() + 120ull * 1000000000ull;
    for (int base = 0; base < nclients; base += 50) {
        int top = base + 50 < nclients ? base + 50 : nclients;
        for (int i = base; i < top; i++) {
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            if (i >= nclients - nstuck) {
                int small = 4096;
                setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
            }
            if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
                perror("connect");
                return 1;
            }
            /* Nicks unique per run (a previous run's may linger) and within ngircd's 9. */
            int n = snprintf(line, sizeof line, "NICK %c%c%d\r\nUSER b 0 * :bench\r\nJOIN #bench\r\n",
                             'a' + getpid() % 26, 'a' + (getpid() / 26) % 26, i);
            if (write(fd, line, (size_t)n) != n) {
                perror("write");
                return 1;
            }
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
            conns[i].fd = fd;
            struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
            epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        }
        while (joined < top) {
            if (now_ns() > deadline) {
                fprintf(stderr, "only %d of %d clients joined within 120 s\n", joined, nclients);
                return 1;
            }
            int n = epoll_wait(ep, events, 1024, 100);
            for (int k = 0; k < n; k++) {
                uint32_t id = events[k].data.u32;
                conn_t *c = &conns[id];
                ssize_t r = read(c->fd, c->rbuf + c->rlen, RBUF - c->rlen);
                if (r <= 0) {
                    if (r < 0 && errno == EAGAIN) continue;
                    fprintf(stderr, "client %u closed while registering\n", id);
                    return 1;
                }
                c->rlen += (size_t)r;
                char *start = c->rbuf, *end = c->rbuf + c->rlen, *nl;
                while ((nl = memchr(start, '\n', (size_t)(end - start))) != NULL) {
                    size_t clen;
                    const char *rest;
                    const char *cmd = command_of(start, nl, &clen, &rest);
                    if (clen == 3 && memcmp(cmd, "366", 3) == 0 && !c->joined) {
                        c->joined = 1;
                        joined++;
                    } else if (clen == 4 && memcmp(cmd, "PING", 4) == 0) {
                        int m = snprintf(line, sizeof line, "PONG%.*s\n", (int)(nl - rest), rest);
                        queue_out(c, line, (size_t)m);
                        flush(c, id);
                    }
                    start = nl + 1;
                }
                c->rlen = (size_t)(end - start);
                memmove(c->rbuf, start, c->rlen);
            }
        }
    }
    /* The run. The stuck clients stop reading now. */
    for (int i = nclients - nstuck; i < nclients; i++) epoll_ctl(ep, EPOLL_CTL_DEL, conns[i].fd, NULL);
    uint32_t *samples = malloc(sizeof(uint32_t) * MAX_SAMPLES);
    size_t nsamples = 0;
    uint64_t delivered = 0, sent = 0, sent_measured = 0, max_ns = 0, errors = 0;
    uint64_t t0 = now_ns();
    uint64_t mstart = t0 + (uint64_t)(warmup * 1e9), mend = mstart + (uint64_t)(seconds * 1e9);
    uint64_t stop_at = mend;
    char pad[512];
    memset(pad, 'x', sizeof pad);
    int next_sender = 0;
    while (1) {
        uint64_t now = now_ns();
        if (now >= stop_at) break;
        int sending = now < mend;
        /* Offer messages: up to the schedule (RATE), or whatever fits (RATE 0). */
        if (sending) {
            uint64_t due = rate > 0 ? (uint64_t)((double)(now - t0) / 1e9 * rate) : UINT64_MAX;
            int budget = 4096; /* per loop turn, so reading is never starved */
            while (sent < due && budget-- > 0) {
                int tries = 0, ok = 0;
                while (tries++ < nsenders) {
                    int s = next_sender;
                    next_sender = (next_sender + 1) % nsenders;
                    conn_t *c = &conns[s];
                    if (c->dead) continue;
                    uint64_t ts = now_ns();
                    int head = snprintf(line, sizeof line, "PRIVMSG #bench :%llu %llu ",
                                        (unsigned long long)ts, (unsigned long long)sent);
                    int padlen = size - head - 2;
                    if (padlen < 0) padlen = 0;
                    if (c->wlen + (size_t)(head + padlen + 2) > WBUF) continue;
                    memcpy(line + head, pad, (size_t)padlen);
                    memcpy(line + head + padlen, "\r\n", 2);
                    queue_out(c, line, (size_t)(head + padlen + 2));
                    if (ts >= mstart) sent_measured++;
                    sent++;
                    ok = 1;
                    break;
                }
                if (!ok) break; /* every sender's buffer is full: the server is behind */
            }
            for (int s = 0; s < nsenders; s++)
                if (!conns[s].dead && conns[s].wlen && !flush(&conns[s], (uint32_t)s)) {
                    conns[s].dead = 1;
                    dropped++;
                }
        }
        int n = epoll_wait(ep, events, 1024, rate > 0 ? 0 : 1);
        for (int k = 0; k < n; k++) {
            uint32_t id = events[k].data.u32;
            conn_t *c = &conns[id];
            if (c->dead) continue;
            if (events[k].events & EPOLLOUT) {
                if (!flush(c, id)) {
                    c->dead = 1;
                    dropped++;
                    continue;
                }
            }
            if (!(events[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            ssize_t r = read(c->fd, c->rbuf + c->rlen, RBUF - c->rlen);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN) continue;
                c->dead = 1;
                dropped++;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                continue;
            }
            c->rlen += (size_t)r;
            uint64_t at = now_ns();
            char *start = c->rbuf, *end = c->rbuf + c->rlen, *nl;
            while ((nl = memchr(start, '\n', (size_t)(end - start))) != NULL) {
                size_t clen;
                const char *rest;
                const char *cmd = command_of(start, nl, &clen, &rest);
                if (clen == 7 && memcmp(cmd, "PRIVMSG", 7) == 0) {
                    const char *colon = memchr(rest, ':', (size_t)(nl - rest));
                    if (colon != NULL) {
                        uint64_t ts = strtoull(colon + 1, NULL, 10);
                        /* Counted by arrival in the window: at full speed, what was sent
                         * in it may still be queued when the run ends. */
                        if (at >= mstart && at < mend) {
                            delivered++;
                            uint64_t lat = at > ts ? at - ts : 0;
                            if (lat > max_ns) max_ns = lat;
                            if (nsamples < MAX_SAMPLES) samples[nsamples++] = (uint32_t)(lat / 1000 > UINT32_MAX ? UINT32_MAX : lat / 1000);
                        }
                    } else {
                        errors++;
                    }
                } else if (clen == 4 && memcmp(cmd, "PING", 4) == 0) {
                    int m = snprintf(line, sizeof line, "PONG%.*s\n", (int)(nl - rest), rest);
                    queue_out(c, line, (size_t)m);
                    flush(c, id);
                } else if (clen == 5 && memcmp(cmd, "ERROR", 5) == 0) {
                    errors++;
                }
                start = nl + 1;
            }
            c->rlen = (size_t)(end - start);
            memmove(c->rbuf, start, c->rlen);
        }
    }
    /* Did the server cut the stuck clients off? Read what they hold: a disconnected one
     * ends in EOF or a reset, a connected one in EAGAIN. */
    int stuck_cut = 0;
    for (int i = nclients - nstuck; i < nclients; i++) {
        char sink[65536];
        ssize_t r;
        while ((r = read(conns[i].fd, sink, sizeof sink)) > 0) {}
        if (r == 0 || (r < 0 && errno != EAGAIN)) stuck_cut++;
    }
    qsort(samples, nsamples, sizeof *samples, cmp_u32);
    uint32_t p50 = nsamples ? samples[nsamples / 2] : 0;
    uint32_t p99 = nsamples ? samples[(size_t)((double)nsamples * 0.99)] : 0;
    double expected = (double)sent_measured * (double)(nclients - nstuck - 1); /* roughly: arrivals lag */
    printf("{\"clients\": %d, \"senders\": %d, \"offered_rate\": %.0f, \"sent_per_s\": %.0f, "
           "\"deliveries_per_s\": %.0f, \"delivered_fraction\": %.4f, \"p50_us\": %u, \"p99_us\": %u, "
           "\"max_us\": %llu, \"dropped\": %d, \"errors\": %llu, \"stuck\": %d, \"stuck_cut\": %d}\n",
           nclients, nsenders, rate, (double)sent_measured / seconds, (double)delivered / seconds,
           expected > 0 ? (double)delivered / expected : 0.0, p50, p99, (unsigned long long)(max_ns / 1000),
           dropped, (unsigned long long)errors, nstuck, stuck_cut);
    return 0;
}

/* ------------------------------------------------------------------------------------ */

static int run_relay(int port) {
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
    printf("relay listening on 127.0.0.1:%d\n", ntohs(sa.sin_port));
    fflush(stdout);
    ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    int cap = 65536, count = 0;
    conn_t **conns = calloc((size_t)cap, sizeof *conns);
    struct epoll_event events[1024];
    static char out[1024];
    int pending_flush = 0;
    for (;;) {
        int n = epoll_wait(ep, events, 1024, -1);
        for (int k = 0; k < n; k++) {
            uint32_t id = events[k].data.u32;
            if (id == UINT32_MAX) {
                int c;
                while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0 && count < cap) {
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conns[count] = calloc(1, sizeof(conn_t));
                    conns[count]->fd = c;
                    struct epoll_event cev = {.events = EPOLLIN, .data.u32 = (uint32_t)count};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                    count++;
                }
                continue;
            }
            conn_t *c = conns[id];
            if (c->dead) continue;
            if (events[k].events & EPOLLOUT) flush(c, id);
            if (!(events[k].events & EPOLLIN)) continue;
            ssize_t r = read(c->fd, c->rbuf + c->rlen, RBUF - c->rlen);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN) continue;
                c->dead = 1;
                close(c->fd);
                continue;
            }
            c->rlen += (size_t)r;
            char *start = c->rbuf, *end = c->rbuf + c->rlen, *nl;
            while ((nl = memchr(start, '\n', (size_t)(end - start))) != NULL) {
                size_t clen;
                const char *rest;
                const char *cmd = command_of(start, nl, &clen, &rest);
                if (clen == 4 && memcmp(cmd, "JOIN", 4) == 0) {
                    int m = snprintf(out, sizeof out, ":relay 001 b :hi\r\n:relay 366 b #bench :end\r\n");
                    queue_out(c, out, (size_t)m);
                    flush(c, id);
                } else if (clen == 7 && memcmp(cmd, "PRIVMSG", 7) == 0) {
                    int m = snprintf(out, sizeof out, ":b%u!~b@127.0.0.1 %.*s\n", id, (int)(nl - cmd), cmd);
                    for (int j = 0; j < count; j++) {
                        if (j == (int)id || conns[j]->dead) continue;
                        queue_out(conns[j], out, (size_t)m); /* full buffer: dropped (slow reader) */
                    }
                    pending_flush = 1;
                }
                start = nl + 1;
            }
            c->rlen = (size_t)(end - start);
            memmove(c->rbuf, start, c->rlen);
        }
        if (pending_flush) { /* one write per client per loop turn, not one per message */
            for (int j = 0; j < count; j++)
                if (!conns[j]->dead && conns[j]->wlen) flush(conns[j], (uint32_t)j);
            pending_flush = 0;
        }
    }
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN); /* a peer that left is an error return, not a crash */
    if (argc >= 3 && strcmp(argv[1], "relay") == 0) return run_relay(atoi(argv[2]));
    if (argc >= 9 && strcmp(argv[1], "fanout") == 0) return run_fanout(argc, argv);
    fprintf(stderr,
            "usage: ircload fanout HOST PORT CLIENTS SENDERS SECONDS RATE SIZE [WARMUP]\n"
            "       ircload relay PORT\n");
    return 2;
}
