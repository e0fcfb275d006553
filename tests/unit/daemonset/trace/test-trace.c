/* test-trace.c — the startup-trace recorder: cgroup parsing, first access per container,
 * the report document for a group of two images (one timeline), image attribution,
 * persistence across reopen, and no deletion when the upload fails (a fake proxy on
 * loopback answers 500 or 200 and keeps the body it got). */
#include "test.h"

#include "cleanup.h"
#include "json.h"
#include "trace.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define L0 "sha256:0000000000000000000000000000000000000000000000000000000000000000"
#define L1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define L2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define IA "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define IB "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static char db_path[128];

static int setup(void **state)
{
    char dir[] = "/tmp/sl-trace-XXXXXX";
    assert_non_null(mkdtemp(dir));
    snprintf(db_path, sizeof(db_path), "%s/trace.db", dir);
    return 0;
}

static int teardown(void **state)
{
    unlink(db_path);
    char p[160];
    snprintf(p, sizeof(p), "%s-wal", db_path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", db_path);
    unlink(p);
    *strrchr(db_path, '/') = 0;
    rmdir(db_path);
    return 0;
}

static struct sl_trace *open_trace(void)
{
    struct sl_trace *t = NULL;
    _cleanup_error_ sl_error_t err = NULL;
    int r = sl_trace_open(db_path, &t, &err);
    if (r < 0)
        fail_msg("%s", sl_error_msg(err, r));
    return t;
}

static void images(struct sl_trace *t)
{
    const char *a[] = {L0, L1};     /* image A: L0 L1 */
    const char *b[] = {L0, L2};     /* image B: L0 L2 */
    const char *c[] = {L0, L1, L2}; /* image C: all three (bigger: A wins for {L0,L1}) */
    assert_int_equal(sl_trace_add_image(t, IA, a, 2, NULL), 0);
    assert_int_equal(sl_trace_add_image(t, IB, b, 2, NULL), 0);
    assert_int_equal(sl_trace_add_image(t, "sha256:cc", c, 3, NULL), 0);
}

static void test_cgroup_parse(void **state)
{
    char *p = NULL;
    assert_int_equal(sl_trace_cgroup_parse("0::/default/redis1\n", &p), 0);
    assert_string_equal(p, "/default/redis1");
    free(p);
    /* hybrid: v2 line is "/", the v1 pids hierarchy names the container */
    assert_int_equal(
        sl_trace_cgroup_parse("12:cpu,cpuacct:/x\n5:pids:/kubepods/pod1/c1\n0::/\n", &p), 0);
    assert_string_equal(p, "/kubepods/pod1/c1");
    free(p);
    assert_int_equal(sl_trace_cgroup_parse("3:cpuset:/only\n", &p), 0);
    assert_string_equal(p, "/only");
    free(p);
    assert_int_equal(sl_trace_cgroup_parse("garbage\n", &p), -ENOENT);
    assert_int_equal(sl_trace_cgroup_parse("", &p), -ENOENT);
}

static json_t *list(struct sl_trace *t)
{
    json_t *j = NULL;
    assert_int_equal(sl_trace_list(t, &j, NULL), 0);
    return j;
}

static void test_dedup_and_off(void **state)
{
    struct sl_trace *t = open_trace();
    /* off: nothing is recorded */
    sl_trace_record(t, "/c1", L0, "etc/a", 100);
    assert_int_equal(sl_trace_set_optimizer(t, true, NULL, NULL, NULL), 0);
    sl_trace_record(t, "/c1", L0, "etc/b", 2000);
    sl_trace_record(t, "/c1", L0, "etc/b", 1500); /* earlier, arrived later: kept */
    sl_trace_record(t, "/c1", L0, "etc/b", 3000);
    sl_trace_record(t, "/c1", L1, "etc/b", 3100); /* another layer: another file */
    sl_trace_record(t, "/c2", L0, "etc/b", 5000); /* another container: its own first access */
    int finished = -1;
    assert_int_equal(sl_trace_set_optimizer(t, false, NULL, &finished, NULL), 0);
    assert_int_equal(finished, 2);
    sl_trace_record(t, "/c1", L0, "etc/c", 9000); /* off again */
    json_auto_t *j = list(t);
    json_t *tr = json_object_get(j, "traces");
    assert_int_equal(json_array_size(tr), 2);
    json_t *t1 = json_array_get(tr, 0);
    assert_string_equal(json_string_value(json_object_get(t1, "cgroup")), "/c1");
    assert_int_equal(json_integer_value(json_object_get(t1, "accesses")), 2);
    assert_int_equal(json_integer_value(json_object_get(t1, "startNs")), 1500);
    assert_true(json_is_true(json_object_get(t1, "finished")));
    assert_string_equal(json_string_value(json_object_get(t1, "group")), "default");
    sl_trace_close(t);
}

/* Two containers of two images in one group: one group document, times shifted onto the
 * group's clock. A trace of the default group is a document group of its own. A trace no
 * image explains is dropped. */
static void test_group_document(void **state)
{
    struct sl_trace *t = open_trace();
    images(t);
    assert_int_equal(sl_trace_set_optimizer(t, true, "web", NULL, NULL), 0);
    sl_trace_record(t, "/app", L1, "usr/bin/app", 1000);
    sl_trace_record(t, "/app", L0, "lib/libc.so", 1300);
    sl_trace_record(t, "/db", L2, "usr/bin/db", 1100);
    sl_trace_record(t, "/db", L0, "etc/db.conf", 1250);
    sl_trace_record(t, "/stray", "sha256:99", "x", 1200); /* no image holds this layer */
    assert_int_equal(sl_trace_set_optimizer(t, true, NULL, NULL, NULL), 0); /* default group */
    sl_trace_record(t, "/solo", L0, "bin/sh", 7000);
    sl_trace_record(t, "/solo", L2, "usr/bin/db", 7400);
    assert_int_equal(sl_trace_set_optimizer(t, false, NULL, NULL, NULL), 0);

    json_auto_t *doc = NULL;
    _cleanup_free_ int64_t *ids = NULL;
    size_t n = 0;
    int skipped = 0;
    _cleanup_error_ sl_error_t err = NULL;
    int r = sl_trace_build_report(t, &doc, &ids, &n, &skipped, &err);
    if (r < 0)
        fail_msg("%s", sl_error_msg(err, r));
    assert_int_equal(n, 4);
    assert_int_equal(skipped, 1);
    _cleanup_free_ char *s = sl_json_dump(doc, NULL);
    assert_string_equal(s, "{\"version\":1,\"groups\":["
                           "{\"name\":\"web\",\"images\":[\"" IA "\",\"" IB "\"],\"accesses\":["
                           "{\"image\":0,\"layer\":1,\"path\":\"usr/bin/app\",\"timeNs\":0},"
                           "{\"image\":1,\"layer\":1,\"path\":\"usr/bin/db\",\"timeNs\":100},"
                           "{\"image\":1,\"layer\":0,\"path\":\"etc/db.conf\",\"timeNs\":250},"
                           "{\"image\":0,\"layer\":0,\"path\":\"lib/libc.so\",\"timeNs\":300}]},"
                           "{\"name\":\"default\",\"images\":[\"" IB "\"],\"accesses\":["
                           "{\"image\":0,\"layer\":0,\"path\":\"bin/sh\",\"timeNs\":0},"
                           "{\"image\":0,\"layer\":1,\"path\":\"usr/bin/db\",\"timeNs\":400}]}]}");
    sl_trace_close(t);
}

static void test_persistence(void **state)
{
    struct sl_trace *t = open_trace();
    images(t);
    assert_int_equal(sl_trace_set_optimizer(t, true, "g", NULL, NULL), 0);
    sl_trace_record(t, "/c1", L0, "a", 10);
    sl_trace_close(t); /* daemon stops while recording */
    t = open_trace();
    assert_true(sl_trace_enabled(t));       /* the optimizer state survives */
    sl_trace_record(t, "/c1", L1, "b", 20); /* the same trace goes on */
    assert_int_equal(sl_trace_set_optimizer(t, false, NULL, NULL, NULL), 0);
    sl_trace_close(t);
    t = open_trace();
    assert_false(sl_trace_enabled(t));
    json_auto_t *j = list(t);
    json_t *tr = json_object_get(j, "traces");
    assert_int_equal(json_array_size(tr), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(tr, 0), "accesses")), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(tr, 0), "group")), "g");
    sl_trace_close(t);
}

/* ---- a fake proxy ---- */

struct fake {
    int lfd, port, status;
    char body[65536];
    char target[256];
    pthread_t th;
};

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    int fd = accept(f->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    char buf[131072];
    size_t len = 0;
    long clen = -1;
    char *hend = NULL;
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = 0;
        if (!hend && (hend = strstr(buf, "\r\n\r\n"))) {
            char *cl = strcasestr(buf, "content-length:");
            clen = cl ? strtol(cl + 15, NULL, 10) : 0;
        }
        if (hend && (long)(len - (size_t)(hend + 4 - buf)) >= clen)
            break;
    }
    if (hend) {
        sscanf(buf, "%*s %255s", f->target);
        snprintf(f->body, sizeof(f->body), "%s", hend + 4);
    }
    const char *msg = f->status == 200 ? "{\"status\":\"OK\",\"code\":200}" : "{\"error\":\"db\"}";
    char out[512];
    int n = snprintf(out, sizeof(out),
                     "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: "
                     "%zu\r\nConnection: close\r\n\r\n%s",
                     f->status, strlen(msg), msg);
    (void)!write(fd, out, (size_t)n);
    close(fd);
    return NULL;
}

static void fake_start(struct fake *f, int status)
{
    memset(f, 0, sizeof(*f));
    f->status = status;
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t sl = sizeof(sa);
    getsockname(f->lfd, (struct sockaddr *)&sa, &sl);
    f->port = ntohs(sa.sin_port);
    assert_int_equal(listen(f->lfd, 4), 0);
    pthread_create(&f->th, NULL, fake_main, f);
}

static void fake_stop(struct fake *f)
{
    pthread_join(f->th, NULL);
    close(f->lfd);
}

static size_t n_traces(struct sl_trace *t)
{
    json_auto_t *j = list(t);
    return json_array_size(json_object_get(j, "traces"));
}

static void test_report_keeps_on_failure(void **state)
{
    struct sl_trace *t = open_trace();
    images(t);
    assert_int_equal(sl_trace_set_optimizer(t, true, "g", NULL, NULL), 0);
    sl_trace_record(t, "/c1", L0, "a", 10);
    sl_trace_record(t, "/c1", L1, "b", 20);
    assert_int_equal(sl_trace_set_optimizer(t, false, NULL, NULL, NULL), 0);

    /* a dead proxy: a port that was just closed */
    struct fake f;
    fake_start(&f, 200);
    int port = f.port;
    shutdown(f.lfd, SHUT_RDWR);
    fake_stop(&f);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
    struct sl_trace_report_result res;
    _cleanup_error_ sl_error_t err = NULL;
    assert_true(sl_trace_report(t, url, NULL, &res, &err) < 0);
    assert_int_equal(n_traces(t), 1);

    /* the proxy refuses */
    fake_start(&f, 500);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", f.port);
    sl_error_free(&err);
    assert_int_equal(sl_trace_report(t, url, NULL, &res, &err), -EBADMSG);
    fake_stop(&f);
    assert_string_equal(f.target, "/starlight/report");
    assert_int_equal(n_traces(t), 1);
    sl_trace_close(t);

    /* after a restart, the proxy takes them: deleted */
    t = open_trace();
    fake_start(&f, 200);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", f.port);
    int r = sl_trace_report(t, url, NULL, &res, &err);
    fake_stop(&f);
    assert_int_equal(r, 0);
    assert_int_equal(res.status, 200);
    assert_int_equal(res.groups, 1);
    assert_int_equal(res.accesses, 2);
    json_decref(res.reply);
    assert_string_equal(f.body, "{\"version\":1,\"groups\":[{\"name\":\"g\",\"images\":[\"" IA
                                "\"],\"accesses\":[{\"image\":0,\"layer\":0,\"path\":\"a\","
                                "\"timeNs\":0},{\"image\":0,\"layer\":1,\"path\":\"b\","
                                "\"timeNs\":10}]}]}");
    assert_int_equal(n_traces(t), 0);
    /* nothing left: no request */
    assert_int_equal(sl_trace_report(t, "http://127.0.0.1:1", NULL, &res, &err), 0);
    sl_trace_close(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cgroup_parse),
        cmocka_unit_test_setup_teardown(test_dedup_and_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_document, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persistence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_report_keeps_on_failure, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
