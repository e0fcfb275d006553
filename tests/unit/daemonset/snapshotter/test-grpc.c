/* gRPC glue: the C-core server answers the unary client over a unix socket; calls run
 * concurrently on the workers; negative errno maps to status codes and back with the message;
 * unknown methods are UNIMPLEMENTED; stop waits for a call in flight. */
#include "test.h"

#include "cleanup.h"
#include "grpc-client.h"
#include "grpc-server.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static char dir[] = "/tmp/sl-test-grpc.XXXXXX";
static char *sock, *target;

static int h_echo(void *ud, struct sl_grpc_call *call, const uint8_t *req, size_t len,
                  sl_error_t *err)
{
    (void)ud;
    (void)err;
    return sl_grpc_call_send(call, req, len);
}

static int h_sleep(void *ud, struct sl_grpc_call *call, const uint8_t *req, size_t len,
                   sl_error_t *err)
{
    (void)ud;
    (void)req;
    (void)len;
    (void)err;
    struct timespec ts = {0, 300 * 1000000};
    nanosleep(&ts, NULL);
    return sl_grpc_call_send(call, (const uint8_t *)"z", 1);
}

static int h_fail(void *ud, struct sl_grpc_call *call, const uint8_t *req, size_t len,
                  sl_error_t *err)
{
    (void)ud;
    (void)call;
    int code = len > 0 ? req[0] : ENOENT;
    return sl_error_make(err, code, "snapshot %s: failed on purpose", "k");
}

static const struct sl_grpc_method methods[] = {
    {"/t.T/Echo", h_echo},
    {"/t.T/Sleep", h_sleep},
    {"/t.T/Fail", h_fail},
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct caller {
    struct sl_grpc_client *c;
    int r;
};

static void *call_sleep(void *arg)
{
    struct caller *k = arg;
    uint8_t *resp = NULL;
    size_t n = 0;
    k->r = sl_grpc_client_unary(k->c, "/t.T/Sleep", "default", (const uint8_t *)"", 0, 10000, &resp,
                                &n, NULL);
    free(resp);
    return NULL;
}

static void test_server(void **state)
{
    (void)state;
    struct sl_grpc_server *srv = NULL;
    sl_error_t err = NULL;
    int r = sl_grpc_server_start(sock, methods, SL_ELEMENTSOF(methods), NULL, 8, &srv, &err);
    if (r < 0)
        fprintf(stderr, "%s\n", sl_error_msg(err, r));
    assert_int_equal(r, 0);
    struct sl_grpc_client *c = NULL;
    assert_int_equal(sl_grpc_client_new(target, &c, NULL), 0);

    uint8_t *resp = NULL;
    size_t n = 0;
    const char msg[] = "hello\0binary";
    assert_int_equal(sl_grpc_client_unary(c, "/t.T/Echo", NULL, (const uint8_t *)msg, sizeof(msg),
                                          5000, &resp, &n, NULL),
                     0);
    assert_int_equal(n, sizeof(msg));
    assert_memory_equal(resp, msg, n);
    free(resp);
    /* an empty message is a valid (all-default) protobuf */
    assert_int_equal(
        sl_grpc_client_unary(c, "/t.T/Echo", NULL, (const uint8_t *)"", 0, 5000, &resp, &n, NULL),
        0);
    assert_int_equal(n, 0);
    free(resp);

    /* errno -> status -> errno, with the message */
    const int codes[] = {ENOENT, EEXIST, EINVAL, ENOTEMPTY, EIO};
    const int back[] = {-ENOENT, -EEXIST, -EINVAL, -EBUSY, -EIO};
    for (size_t i = 0; i < SL_ELEMENTSOF(codes); i++) {
        uint8_t b = (uint8_t)codes[i];
        r = sl_grpc_client_unary(c, "/t.T/Fail", NULL, &b, 1, 5000, &resp, &n, &err);
        assert_int_equal(r, back[i]);
        assert_non_null(strstr(sl_error_msg(err, r), "failed on purpose"));
        sl_error_free(&err);
    }
    r = sl_grpc_client_unary(c, "/t.T/Nope", NULL, (const uint8_t *)"", 0, 5000, &resp, &n, NULL);
    assert_int_equal(r, -EOPNOTSUPP);

    /* 8 calls of 300 ms each at once take about 300 ms, not 2.4 s */
    struct caller k[8];
    pthread_t th[8];
    double t0 = now_s();
    for (int i = 0; i < 8; i++) {
        k[i] = (struct caller){c, -1};
        pthread_create(&th[i], NULL, call_sleep, &k[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(k[i].r, 0);
    }
    double dt = now_s() - t0;
    fprintf(stderr, "8 concurrent 300 ms calls: %.0f ms\n", dt * 1000);
    assert_true(dt < 1.2);
    assert_true(sl_grpc_server_calls(srv) >= 16);

    /* stop while a call is in flight: the call completes */
    struct caller late = {c, -1};
    pthread_t lt;
    pthread_create(&lt, NULL, call_sleep, &late);
    struct timespec ts = {0, 100 * 1000000};
    nanosleep(&ts, NULL);
    sl_grpc_server_stop(srv, 5000);
    pthread_join(lt, NULL);
    assert_int_equal(late.r, 0);
    assert_int_equal(access(sock, F_OK), -1);
    sl_grpc_client_free(c);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    sock = sl_xasprintf("%s/s.sock", dir);
    target = sl_xasprintf("unix:%s", sock);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    unlink(sock);
    rmdir(dir);
    free(sock);
    free(target);
    return r;
}
