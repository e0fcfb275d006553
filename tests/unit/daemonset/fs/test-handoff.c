/* test-handoff.c — the FUSE connection handoff between daemons (handoff.h): nobody to take
 * over from (no socket, a stale one), a full round trip (the descriptor received is the one
 * given: a pipe carries bytes through it; generation and FUSE_INIT copy intact), a second
 * successor refused, and hostile givers (bad magic, version, lengths, no or two descriptors):
 * clear errors and no descriptor leaked. */
#include "test.h"

#include "cleanup.h"
#include "handoff.h"

#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static char dir[40], sock_path[64];

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/sl-handoff-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(sock_path, sizeof sock_path, "%s/handoff.sock", dir);
    return 0;
}

static int teardown(void **state)
{
    unlink(sock_path);
    rmdir(dir);
    return 0;
}

static int open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    while (d && readdir(d))
        n++;
    if (d)
        closedir(d);
    return n;
}

static void test_nobody(void **state)
{
    struct sl_fs_handoff h;
    _cleanup_error_ sl_error_t err = NULL;
    assert_int_equal(sl_handoff_take(sock_path, 1000, &h, &err), 0);
    assert_int_equal(h.fd, -1);
    /* a socket file nobody listens on (a dead daemon's) */
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock_path);
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
    close(s);
    assert_int_equal(sl_handoff_take(sock_path, 1000, &h, &err), 0);
}

static int asked[2];

static void on_request(void *ud)
{
    char b = 1;
    assert_int_equal(write(asked[1], &b, 1), 1);
}

struct taker {
    struct sl_fs_handoff h;
    int r;
    char msg[256];
};

static void *take_main(void *ud)
{
    struct taker *t = ud;
    sl_error_t err = NULL;
    t->r = sl_handoff_take(sock_path, 5000, &t->h, &err);
    snprintf(t->msg, sizeof t->msg, "%s", sl_error_msg(err, t->r));
    sl_error_free(&err);
    return NULL;
}

static void test_round_trip(void **state)
{
    _cleanup_error_ sl_error_t err = NULL;
    assert_int_equal(pipe(asked), 0);
    struct sl_handoff *ho = NULL;
    assert_int_equal(sl_handoff_listen(sock_path, on_request, NULL, &ho, &err), 0);
    struct stat st;
    assert_int_equal(stat(sock_path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    assert_false(sl_handoff_asked(ho));
    struct taker t = {0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, take_main, &t), 0);
    char b;
    assert_int_equal(read(asked[0], &b, 1), 1); /* the successor asked */
    assert_true(sl_handoff_asked(ho));
    /* a second successor is refused */
    struct taker t2 = {0};
    take_main(&t2);
    assert_true(t2.r < 0);
    assert_non_null(strstr(t2.msg, "handoff"));

    int p[2];
    assert_int_equal(pipe(p), 0);
    static struct sl_fs_handoff give; /* large: slot maps */
    give = (struct sl_fs_handoff){.fd = p[0], .gen = 7, .init_len = 104};
    for (int i = 0; i < 104; i++)
        give.init[i] = (unsigned char)(i * 3);
    /* slot maps up to the last slot (the whole 8 KiB each: beyond one socket buffer read) */
    give.retired[0] = 0x06;                        /* slots 1, 2 */
    give.retired[SL_FS_SLOT_MAP_BYTES - 1] = 0x80; /* SL_FS_MAX_SLOT */
    give.used[1] = 0x01;                           /* slot 8 */
    give.used[4000] = 0x10;                        /* slot 32004 */
    assert_int_equal(sl_handoff_give(ho, &give, 5000, &err), 0);
    pthread_join(th, NULL);
    assert_int_equal(t.r, 1);
    assert_int_equal(t.h.gen, 7);
    assert_int_equal(t.h.init_len, 104);
    assert_memory_equal(t.h.init, give.init, 104);
    assert_memory_equal(t.h.retired, give.retired, sizeof give.retired);
    assert_memory_equal(t.h.used, give.used, sizeof give.used);
    assert_true(t.h.fd >= 0 && t.h.fd != p[0]);
    /* the same pipe */
    assert_int_equal(write(p[1], "xy", 2), 2);
    char got[2];
    assert_int_equal(read(t.h.fd, got, 2), 2);
    assert_memory_equal(got, "xy", 2);
    close(t.h.fd);
    close(p[0]);
    close(p[1]);
    sl_handoff_free(ho);
    close(asked[0]);
    close(asked[1]);
}

/* A fake giver: answers the request with `hdr` (+ init_len bytes) and nfds descriptors. */
struct fake {
    int fd;
    unsigned char msg[512];
    size_t len;
    int nfds;
};

static void *fake_main(void *ud)
{
    struct fake *f = ud;
    int c = accept(f->fd, NULL, NULL);
    char req[10];
    assert_int_equal(read(c, req, sizeof req), 10);
    int fds[2] = {dup(0), dup(0)};
    struct iovec iov = {.iov_base = f->msg, .iov_len = f->len};
    union {
        char buf[CMSG_SPACE(sizeof(int) * 2)];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    if (f->nfds) {
        m.msg_control = ctl.buf;
        m.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)f->nfds);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)f->nfds);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)f->nfds);
    }
    assert_true(sendmsg(c, &m, 0) >= 0);
    close(fds[0]);
    close(fds[1]);
    char ack;
    (void)!read(c, &ack, 1);
    close(c);
    return NULL;
}

static void hostile_maps(const char *magic, uint32_t version, uint32_t init_len, uint32_t map_len,
                         size_t extra, int nfds, const char *want)
{
    int before = open_fds();
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock_path);
    unlink(sock_path);
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(s, 1), 0);
    struct fake f = {.fd = s, .nfds = nfds};
    uint32_t hdr[6] = {0, 0, version, 3, init_len, map_len};
    memcpy(hdr, magic, 8);
    memcpy(f.msg, hdr, sizeof hdr);
    f.len = sizeof hdr + extra;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, fake_main, &f), 0);
    struct taker t = {0};
    take_main(&t);
    pthread_join(th, NULL);
    close(s);
    assert_true(t.r < 0);
    if (!strstr(t.msg, want))
        fail_msg("want `%s` in `%s`", want, t.msg);
    assert_int_equal(t.h.fd, -1);
    assert_int_equal(open_fds(), before); /* nothing leaked */
}

static void hostile(const char *magic, uint32_t version, uint32_t init_len, size_t extra, int nfds,
                    const char *want)
{
    hostile_maps(magic, version, init_len, 0, extra, nfds, want);
}

static void test_hostile_givers(void **state)
{
    hostile("SLHOGIVX", 1, 104, 104, 1, "not a handoff message");
    hostile("SLHOGIVE", 3, 104, 104, 1, "unknown version");
    /* version 2: slot maps after init */
    hostile_maps("SLHOGIVE", 2, 104, SL_FS_SLOT_MAP_BYTES + 1, 300, 1, "bad length");
    hostile_maps("SLHOGIVE", 2, 104, 100, 104 + 150, 1, "short message");
    hostile_maps("SLHOGIVE", 2, 104, 10, 104 + 30, 1, "bad length"); /* too long */
    hostile_maps("SLHOGIVE", 1, 104, 10, 104 + 20, 1, "bad length"); /* v1 has no maps */
    hostile("SLHOGIVE", 1, 104, 50, 1, "bad length");
    hostile("SLHOGIVE", 1, 4096, 300, 1, "bad length");
    hostile("SLHOGIVE", 1, 104, 104, 0, "not exactly one descriptor");
    hostile("SLHOGIVE", 1, 104, 104, 2, "not exactly one descriptor");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_nobody, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_givers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
