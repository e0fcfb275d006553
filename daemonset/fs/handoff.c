/* handoff.c — the FUSE connection from a daemon to its successor over a unix socket
 * (handoff.h). */
#include "handoff.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define TAKE_REQ     "SLHOTAKE1\n"
#define TAKE_REQ_LEN (sizeof TAKE_REQ - 1)
#define GIVE_MAGIC   "SLHOGIVE"
#define VERSION      2u /* 1: no slot maps (still accepted) */
#define REQ_WAIT_MS  5000

struct give_hdr {
    char magic[8];
    uint32_t version, gen, init_len;
    uint32_t map_len; /* bytes of each slot map after init (version 2) */
};

/* Bytes of the slot maps worth sending: up to their last set byte. */
static uint32_t maps_len(const struct sl_fs_handoff *h)
{
    uint32_t n = SL_FS_SLOT_MAP_BYTES;
    while (n > 0 && !h->retired[n - 1] && !h->used[n - 1])
        n--;
    return n;
}

struct sl_handoff {
    char *path;
    int fd;      /* listening socket */
    int stop[2]; /* pipe: wakes the accept thread */
    int peer;    /* the successor that asked, -1 until then */
    pthread_mutex_t lock;
    pthread_t thread;
    bool running;
    sl_handoff_request_fn on_request;
    void *ud;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for `events` on fd until deadline (CLOCK_MONOTONIC ms): 0, -ETIMEDOUT or -errno. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, (int)SL_MIN(left, 1000));
        if (r < 0 && errno != EINTR)
            return -errno;
        if (r > 0)
            return 0;
    }
}

/* Reads exactly n bytes before the deadline. */
static int read_full(int fd, void *buf, size_t n, int64_t deadline)
{
    size_t got = 0;
    while (got < n) {
        int r = wait_fd(fd, POLLIN, deadline);
        if (r < 0)
            return r;
        ssize_t k = recv(fd, (char *)buf + got, n - got, MSG_DONTWAIT);
        if (k == 0)
            return -ECONNRESET;
        if (k < 0 && errno != EINTR && errno != EAGAIN)
            return -errno;
        if (k > 0)
            got += (size_t)k;
    }
    return 0;
}

/* The peer must run as root or as this process's user. */
static bool peer_trusted(int fd)
{
    struct ucred cr;
    socklen_t len = sizeof cr;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
        return false;
    return cr.uid == 0 || cr.uid == geteuid();
}

static int sockaddr_for(const char *path, struct sockaddr_un *sa, sl_error_t *err)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa->sun_path)
        return sl_error_make(err, ENAMETOOLONG, "handoff socket path too long: %s", path);
    memcpy(sa->sun_path, path, strlen(path));
    return 0;
}

static void *accept_main(void *ud)
{
    struct sl_handoff *ho = ud;
    for (;;) {
        struct pollfd p[2] = {{.fd = ho->fd, .events = POLLIN},
                              {.fd = ho->stop[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_warn("handoff: poll: %s", strerror(errno));
            return NULL;
        }
        if (p[1].revents)
            return NULL;
        int c = accept4(ho->fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        char req[TAKE_REQ_LEN];
        int r = peer_trusted(c) ? read_full(c, req, sizeof req, now_ms() + REQ_WAIT_MS) : -EPERM;
        if (r == 0 && memcmp(req, TAKE_REQ, TAKE_REQ_LEN) != 0)
            r = -EPROTO;
        pthread_mutex_lock(&ho->lock);
        bool first = r == 0 && ho->peer < 0;
        if (first)
            ho->peer = c;
        pthread_mutex_unlock(&ho->lock);
        if (!first) {
            log_warn("handoff: request on %s refused: %s", ho->path,
                     r < 0 ? strerror(-r) : "a successor already asked");
            close(c);
            continue;
        }
        log_info("handoff: a successor asks for the FUSE connection");
        ho->on_request(ho->ud);
    }
}

int sl_handoff_listen(const char *path, sl_handoff_request_fn on_request, void *ud,
                      struct sl_handoff **ret, sl_error_t *err)
{
    struct sockaddr_un sa;
    int r = sockaddr_for(path, &sa, err);
    if (r < 0)
        return r;
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return sl_error_make(err, errno, "socket: %s", strerror(errno));
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path); /* the predecessor's, which stopped listening */
    mode_t old = umask(0177);
    r = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (r < 0 || listen(fd, 4) < 0)
        return sl_error_make(err, errno, "listen on %s: %s", path, strerror(errno));
    struct sl_handoff *ho = sl_xcalloc(1, sizeof *ho);
    ho->path = sl_xstrdup(path);
    ho->fd = ho->peer = ho->stop[0] = ho->stop[1] = -1;
    ho->on_request = on_request;
    ho->ud = ud;
    pthread_mutex_init(&ho->lock, NULL);
    if (pipe2(ho->stop, O_CLOEXEC) < 0) {
        int e = errno;
        sl_handoff_free(ho);
        return sl_error_make(err, e, "pipe: %s", strerror(e));
    }
    ho->fd = TAKE_FD(fd);
    r = pthread_create(&ho->thread, NULL, accept_main, ho);
    if (r != 0) {
        sl_handoff_free(ho);
        return sl_error_make(err, r, "start the handoff listener: %s", strerror(r));
    }
    ho->running = true;
    *ret = ho;
    return 0;
}

int sl_handoff_give(struct sl_handoff *ho, const struct sl_fs_handoff *h, int timeout_ms,
                    sl_error_t *err)
{
    pthread_mutex_lock(&ho->lock);
    int c = ho->peer;
    pthread_mutex_unlock(&ho->lock);
    if (c < 0)
        return sl_error_make(err, ENOTCONN, "handoff: no successor asked");
    if (h->fd < 0 || h->init_len > SL_FS_INIT_MAX)
        return sl_error_make(err, EINVAL, "handoff: nothing to give");
    uint32_t map_len = maps_len(h);
    struct give_hdr hdr = {
        .version = VERSION, .gen = h->gen, .init_len = h->init_len, .map_len = map_len};
    memcpy(hdr.magic, GIVE_MAGIC, sizeof hdr.magic);
    struct iovec iov[4] = {{.iov_base = &hdr, .iov_len = sizeof hdr},
                           {.iov_base = (void *)h->init, .iov_len = h->init_len},
                           {.iov_base = (void *)h->retired, .iov_len = map_len},
                           {.iov_base = (void *)h->used, .iov_len = map_len}};
    size_t total = sizeof hdr + h->init_len + 2 * (size_t)map_len;
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct msghdr m = {
        .msg_iov = iov, .msg_iovlen = 4, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &h->fd, sizeof(int));
    ssize_t k;
    do
        k = sendmsg(c, &m, MSG_NOSIGNAL);
    while (k < 0 && errno == EINTR);
    if (k != (ssize_t)total)
        return sl_error_make(err, k < 0 ? errno : EIO, "handoff: send the FUSE connection: %s",
                             k < 0 ? strerror(errno) : "short write");
    char ack;
    int r = read_full(c, &ack, 1, now_ms() + timeout_ms);
    if (r == 0 && ack != 'K')
        r = -EPROTO;
    if (r < 0)
        return sl_error_make(err, r, "handoff: the successor did not acknowledge: %s",
                             strerror(-r));
    return 0;
}

bool sl_handoff_asked(struct sl_handoff *ho)
{
    pthread_mutex_lock(&ho->lock);
    bool asked = ho->peer >= 0;
    pthread_mutex_unlock(&ho->lock);
    return asked;
}

void sl_handoff_free(struct sl_handoff *ho)
{
    if (!ho)
        return;
    if (ho->running) {
        char b = 1;
        if (write(ho->stop[1], &b, 1) < 0)
            log_debug("handoff: wake the listener: %s", strerror(errno));
        pthread_join(ho->thread, NULL);
    }
    if (ho->fd >= 0)
        close(ho->fd);
    if (ho->peer >= 0)
        close(ho->peer);
    if (ho->stop[0] >= 0)
        close(ho->stop[0]);
    if (ho->stop[1] >= 0)
        close(ho->stop[1]);
    pthread_mutex_destroy(&ho->lock);
    free(ho->path);
    free(ho);
}

int sl_handoff_take(const char *path, int timeout_ms, struct sl_fs_handoff *ret, sl_error_t *err)
{
    ret->fd = -1;
    struct sockaddr_un sa;
    int r = sockaddr_for(path, &sa, err);
    if (r < 0)
        return r;
    _cleanup_close_ int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c < 0)
        return sl_error_make(err, errno, "socket: %s", strerror(errno));
    if (connect(c, (struct sockaddr *)&sa, sizeof sa) < 0) {
        if (errno == ENOENT || errno == ECONNREFUSED)
            return 0; /* no predecessor (or a dead one's socket) */
        return sl_error_make(err, errno, "connect to %s: %s", path, strerror(errno));
    }
    if (!peer_trusted(c))
        return sl_error_make(err, EPERM, "handoff: %s is served by another user", path);
    if (send(c, TAKE_REQ, TAKE_REQ_LEN, MSG_NOSIGNAL) != (ssize_t)TAKE_REQ_LEN)
        return sl_error_make(err, errno ? errno : EIO, "handoff: ask %s: %s", path,
                             strerror(errno));
    r = wait_fd(c, POLLIN, now_ms() + timeout_ms);
    if (r < 0)
        return sl_error_make(err, r, "handoff: no answer from %s within %d ms: %s", path,
                             timeout_ms, strerror(-r));
    struct give_hdr hdr;
    /* init, then the two slot maps, as one stream (their lengths are in the header) */
    _cleanup_free_ unsigned char *body = sl_xcalloc(1, SL_FS_INIT_MAX + 2 * SL_FS_SLOT_MAP_BYTES);
    struct iovec iov[2] = {
        {.iov_base = &hdr, .iov_len = sizeof hdr},
        {.iov_base = body, .iov_len = SL_FS_INIT_MAX + 2 * SL_FS_SLOT_MAP_BYTES}};
    union {
        char buf[CMSG_SPACE(sizeof(int) * 4)];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct msghdr m = {
        .msg_iov = iov, .msg_iovlen = 2, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
    ssize_t k;
    do
        k = recvmsg(c, &m, MSG_CMSG_CLOEXEC);
    while (k < 0 && errno == EINTR);
    int recv_errno = errno;
    /* every descriptor received is ours to close, whatever else is wrong (nothing was received
     * when recvmsg failed: the control buffer is then not walked) */
    int fds[4], nfds = 0;
    for (struct cmsghdr *cm = k < 0 ? NULL : CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm))
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
            for (size_t i = 0; i < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int) && nfds < 4; i++)
                memcpy(&fds[nfds++], CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
    const char *bad = NULL;
    size_t want = 0;
    if (k < 0)
        bad = strerror(recv_errno);
    else if ((size_t)k < sizeof hdr || memcmp(hdr.magic, GIVE_MAGIC, sizeof hdr.magic) != 0)
        bad = "not a handoff message";
    else if (hdr.version != VERSION && hdr.version != 1)
        bad = "unknown version";
    else if (hdr.version == 1 && hdr.map_len != 0)
        bad = "bad length";
    else if (hdr.init_len > SL_FS_INIT_MAX || hdr.map_len > SL_FS_SLOT_MAP_BYTES ||
             (size_t)k > (want = sizeof hdr + hdr.init_len + 2 * (size_t)hdr.map_len))
        bad = "bad length";
    else if ((size_t)k < want &&
             (hdr.version == 1 ||
              read_full(c, body + (k - sizeof hdr), want - (size_t)k,
                        now_ms() + (timeout_ms < 1000 ? timeout_ms : 1000)) < 0))
        bad = hdr.version == 1 ? "bad length" : "short message"; /* a stream may split the maps */
    else if (m.msg_flags & (MSG_CTRUNC | MSG_TRUNC))
        bad = "truncated";
    else if (nfds != 1)
        bad = "not exactly one descriptor";
    if (bad) {
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
        return sl_error_make(err, EPROTO, "handoff from %s: %s", path, bad);
    }
    ret->fd = fds[0];
    ret->gen = hdr.gen;
    ret->init_len = hdr.init_len;
    memcpy(ret->init, body, hdr.init_len);
    memset(ret->retired, 0, sizeof ret->retired);
    memset(ret->used, 0, sizeof ret->used);
    memcpy(ret->retired, body + hdr.init_len, hdr.map_len);
    memcpy(ret->used, body + hdr.init_len + hdr.map_len, hdr.map_len);
    if (send(c, "K", 1, MSG_NOSIGNAL) != 1)
        log_warn("handoff: acknowledge: %s", strerror(errno));
    return 1;
}
