/* sl-netdelay: one-way delay for an emulated WAN link (tests/e2e/wan.sh).
 *
 * The kernel here has no netem, so delay is done in user space: an iptables rule sends every
 * packet arriving on a veth to NFQUEUE N, and this program holds each one for D ms (monotonic
 * clock) and then accepts it, in arrival order. Delay must be applied on ingress: delaying
 * egress holds packets behind the sender's own qdisc and TCP collapses.
 *
 * One thread, one poll loop over the netlink socket and a timerfd armed for the oldest held
 * packet. Held packets live in a fixed ring of (packet id, due time); beyond its capacity a
 * packet is dropped (NF_DROP), as a full router queue would, rather than the ring growing.
 * Only the packet id is kept: the payload stays in the kernel (copy mode "meta").
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

struct held {
    uint32_t id;
    uint64_t due_ns;
};

struct delay_state {
    struct nfq_q_handle *qh;
    struct held *ring;
    size_t cap, head, len;
    uint64_t delay_ns;
    uint64_t accepted, dropped;
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *nfa,
                     void *data)
{
    struct delay_state *st = data;
    struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
    uint32_t id;

    (void)msg;
    if (!ph)
        return 0;
    id = ntohl(ph->packet_id);
    if (st->len == st->cap) {
        st->dropped++;
        return nfq_set_verdict(qh, id, NF_DROP, 0, NULL) < 0 ? -1 : 0;
    }
    st->ring[(st->head + st->len) % st->cap] = (struct held){id, now_ns() + st->delay_ns};
    st->len++;
    return 0;
}

/* Accept every held packet whose time has come; return the due time of the next one (0 when
 * none is held). */
static int release_due(struct delay_state *st, uint64_t *next_due)
{
    uint64_t now = now_ns();

    while (st->len > 0 && st->ring[st->head].due_ns <= now) {
        if (nfq_set_verdict(st->qh, st->ring[st->head].id, NF_ACCEPT, 0, NULL) < 0 &&
            errno != ENOENT)
            return -errno;
        st->accepted++;
        st->head = (st->head + 1) % st->cap;
        st->len--;
    }
    *next_due = st->len > 0 ? st->ring[st->head].due_ns : 0;
    return 0;
}

static int arm_timer(int tfd, uint64_t due_ns)
{
    struct itimerspec its = {0};

    /* due_ns == 0 disarms; an absolute time in the past fires at once */
    its.it_value.tv_sec = (time_t)(due_ns / 1000000000u);
    its.it_value.tv_nsec = (long)(due_ns % 1000000000u);
    return timerfd_settime(tfd, due_ns ? TFD_TIMER_ABSTIME : 0, &its, NULL) < 0 ? -errno : 0;
}

static void usage(FILE *f)
{
    fprintf(f, "Usage: sl-netdelay [OPTIONS]\n"
               "Hold each packet of an NFQUEUE queue for a fixed delay, then accept it in\n"
               "arrival order (user-space one-way delay for tests/e2e/wan.sh).\n\n"
               "  -q, --queue N      queue number (default 0)\n"
               "  -d, --delay MS     one-way delay in milliseconds (default 25; may be\n"
               "                     fractional)\n"
               "  -c, --cap N        most packets held at once; more are dropped (default 65536)\n"
               "  -h, --help         this text\n\n"
               "Exits 0 on SIGTERM/SIGINT, printing accepted/dropped counts to stderr.\n");
}

static int parse_u64(const char *s, uint64_t max, uint64_t *ret)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v > max)
        return -EINVAL;
    *ret = v;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"queue", required_argument, NULL, 'q'},
        {"delay", required_argument, NULL, 'd'},
        {"cap", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct delay_state st = {0};
    uint64_t queue = 0, cap = 65536, next_due = 0, armed_due = 0;
    double delay_ms = 25;
    struct nfq_handle *h = NULL;
    struct sigaction sa = {0};
    char buf[65536] __attribute__((aligned));
    int c, fd, tfd = -1, rc = 1, r;

    while ((c = getopt_long(argc, argv, "q:d:c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'q':
            if (parse_u64(optarg, UINT16_MAX, &queue) < 0) {
                fprintf(stderr, "sl-netdelay: bad --queue `%s`\n", optarg);
                return 2;
            }
            break;
        case 'd': {
            char *end;
            delay_ms = strtod(optarg, &end);
            if (end == optarg || *end || !(delay_ms >= 0 && delay_ms <= 60000)) {
                fprintf(stderr, "sl-netdelay: bad --delay `%s` (0..60000 ms)\n", optarg);
                return 2;
            }
            break;
        }
        case 'c':
            if (parse_u64(optarg, 1u << 24, &cap) < 0 || cap == 0) {
                fprintf(stderr, "sl-netdelay: bad --cap `%s` (1..16777216)\n", optarg);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }

    st.delay_ns = (uint64_t)(delay_ms * 1e6);
    st.cap = cap;
    st.ring = calloc(cap, sizeof(*st.ring));
    if (!st.ring) {
        fprintf(stderr, "sl-netdelay: out of memory\n");
        return 1;
    }

    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    h = nfq_open();
    if (!h) {
        fprintf(stderr, "sl-netdelay: nfq_open: %s\n", strerror(errno));
        goto out;
    }
    st.qh = nfq_create_queue(h, (uint16_t)queue, on_packet, &st);
    if (!st.qh) {
        fprintf(stderr, "sl-netdelay: bind queue %" PRIu64 ": %s\n", queue, strerror(errno));
        goto out;
    }
    if (nfq_set_mode(st.qh, NFQNL_COPY_META, 0) < 0 ||
        nfq_set_queue_maxlen(st.qh, (uint32_t)(cap > UINT32_MAX ? UINT32_MAX : cap)) < 0) {
        fprintf(stderr, "sl-netdelay: configure queue: %s\n", strerror(errno));
        goto out;
    }
    fd = nfq_fd(h);
    {
        /* a burst of acks or a window's worth of segments must not overflow the socket */
        int sz = 8 << 20;
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz));
    }
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (tfd < 0) {
        fprintf(stderr, "sl-netdelay: timerfd: %s\n", strerror(errno));
        goto out;
    }
    fprintf(stderr, "sl-netdelay: queue %" PRIu64 ", delay %.3f ms, cap %" PRIu64 "\n", queue,
            delay_ms, cap);

    while (!stop_requested) {
        struct pollfd pfd[2] = {{.fd = fd, .events = POLLIN}, {.fd = tfd, .events = POLLIN}};
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "sl-netdelay: poll: %s\n", strerror(errno));
            goto out;
        }
        if (pfd[0].revents & POLLIN) {
            /* drain what is queued without blocking */
            for (;;) {
                ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
                if (n < 0) {
                    if (errno == EAGAIN || errno == EINTR)
                        break;
                    if (errno == ENOBUFS) { /* the kernel dropped notifications: go on */
                        st.dropped++;
                        continue;
                    }
                    fprintf(stderr, "sl-netdelay: recv: %s\n", strerror(errno));
                    goto out;
                }
                nfq_handle_packet(h, buf, (int)n);
            }
        }
        if (pfd[1].revents & POLLIN) {
            uint64_t ticks;
            (void)!read(tfd, &ticks, sizeof(ticks));
        }
        r = release_due(&st, &next_due);
        if (r < 0) {
            fprintf(stderr, "sl-netdelay: verdict: %s\n", strerror(-r));
            goto out;
        }
        /* re-arm only when the oldest held packet changed */
        if (next_due != armed_due || (pfd[1].revents & POLLIN)) {
            armed_due = next_due;
            r = arm_timer(tfd, next_due);
            if (r < 0) {
                fprintf(stderr, "sl-netdelay: timerfd_settime: %s\n", strerror(-r));
                goto out;
            }
        }
    }
    rc = 0;
out:
    if (st.qh) {
        /* let go of what is still held so no connection stalls on our exit */
        while (st.len > 0) {
            (void)nfq_set_verdict(st.qh, st.ring[st.head].id, NF_ACCEPT, 0, NULL);
            st.head = (st.head + 1) % st.cap;
            st.len--;
        }
        nfq_destroy_queue(st.qh);
    }
    if (h)
        nfq_close(h);
    if (tfd >= 0)
        close(tfd);
    fprintf(stderr, "sl-netdelay: accepted %" PRIu64 ", dropped %" PRIu64 "\n", st.accepted,
            st.dropped);
    free(st.ring);
    return rc;
}
