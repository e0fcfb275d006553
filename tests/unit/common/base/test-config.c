#include "test.h"

#include "cleanup.h"
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

struct cfg {
    char *config;
    char *listen;
    bool insecure;
    int64_t workers;
    uint64_t chunk;
    struct sl_strlist platforms;
};

static const struct sl_opt opts[] = {
    {"config", SL_OPT_STR, offsetof(struct cfg, config), NULL, "T_CONFIG", 'c', "FILE", "file"},
    {"listen", SL_OPT_STR, offsetof(struct cfg, listen), "127.0.0.1:8090", "T_LISTEN", 0, "ADDR",
     "listen"},
    {"insecure", SL_OPT_BOOL, offsetof(struct cfg, insecure), "false", NULL, 0, NULL, "http"},
    {"workers", SL_OPT_INT, offsetof(struct cfg, workers), "4", "T_WORKERS", 'w', NULL, "n", 1, 64},
    {"chunk-size", SL_OPT_SIZE, offsetof(struct cfg, chunk), "4MiB", NULL, 0, NULL, "chunk"},
    {"platform", SL_OPT_STRLIST, offsetof(struct cfg, platforms), NULL, NULL, 'p', NULL, "p"},
};

static const struct sl_cmd cmd = {
    .name = "test",
    .args = "ARG",
    .opts = opts,
    .nopts = SL_ELEMENTSOF(opts),
    .config_key = "config",
    .min_args = 0,
    .max_args = 1,
};

static void test_defaults(void **state)
{
    struct cfg c = {0};
    char *argv[] = {"test", NULL};
    int argi = -1;
    unsetenv("T_LISTEN");
    unsetenv("T_WORKERS");
    unsetenv("T_CONFIG");
    assert_int_equal(sl_config_parse(&cmd, &c, 1, argv, &argi, NULL), 0);
    assert_int_equal(argi, 1);
    assert_string_equal(c.listen, "127.0.0.1:8090");
    assert_int_equal(c.workers, 4);
    assert_int_equal(c.chunk, 4 << 20);
    assert_false(c.insecure);
    sl_config_free(&cmd, &c);
}

static void test_precedence(void **state)
{
    char path[] = "/tmp/sl-test-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *yaml = "listen: 0.0.0.0:1\nworkers: 8\ninsecure: true\nplatform: [linux/amd64, "
                       "linux/arm64]\nchunk-size: 1MiB\n";
    assert_int_equal(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);

    struct cfg c = {0};
    setenv("T_WORKERS", "16", 1);
    char *argv[] = {"test", "--config", path, "-w", "32", "pos", "-p", "a", "-p", "b,c", NULL};
    int argi = -1;
    sl_error_t err = NULL;
    int r = sl_config_parse(&cmd, &c, 10, argv, &argi, &err);
    assert_int_equal(r, 0);
    assert_string_equal(c.listen, "0.0.0.0:1"); /* file beats default */
    assert_int_equal(c.workers, 32);            /* flag beats env beats file */
    assert_true(c.insecure);
    assert_int_equal(c.chunk, 1 << 20);
    assert_int_equal(c.platforms.n, 3); /* flags replace the file's list, then append */
    assert_string_equal(c.platforms.v[0], "a");
    assert_string_equal(c.platforms.v[2], "c");
    assert_string_equal(argv[argi], "pos");
    sl_config_free(&cmd, &c);

    /* env beats file */
    char *argv2[] = {"test", "--config", path, NULL};
    memset(&c, 0, sizeof(c));
    assert_int_equal(sl_config_parse(&cmd, &c, 3, argv2, &argi, NULL), 0);
    assert_int_equal(c.workers, 16);
    sl_config_free(&cmd, &c);
    unsetenv("T_WORKERS");
    unlink(path);
}

static void test_errors(void **state)
{
    struct cfg c = {0};
    sl_error_t err = NULL;
    int argi;
    const char *bad = "listen: x\nbogus: 1\n";
    assert_int_equal(sl_config_apply_yaml(&cmd, &c, bad, strlen(bad), "config file `f`", &err),
                     -EINVAL);
    assert_non_null(strstr(err->msg, "unknown key `bogus` in config file `f` (line 2)"));
    sl_error_free(&err);

    char *argv[] = {"test", "--workers", "100", NULL};
    assert_int_equal(sl_config_parse(&cmd, &c, 3, argv, &argi, &err), -ERANGE);
    assert_non_null(strstr(err->msg, "flag --workers"));
    sl_error_free(&err);
    sl_config_free(&cmd, &c);

    char *argv2[] = {"test", "--nope", NULL};
    assert_int_equal(sl_config_parse(&cmd, &c, 2, argv2, &argi, &err), -EINVAL);
    assert_non_null(strstr(err->msg, "unknown option `--nope`"));
    sl_error_free(&err);
    sl_config_free(&cmd, &c);

    char *argv3[] = {"test", "a", "b", NULL};
    assert_int_equal(sl_config_parse(&cmd, &c, 3, argv3, &argi, &err), -EINVAL);
    sl_error_free(&err);
    sl_config_free(&cmd, &c);

    setenv("T_WORKERS", "many", 1);
    char *argv4[] = {"test", NULL};
    assert_int_equal(sl_config_parse(&cmd, &c, 1, argv4, &argi, &err), -EINVAL);
    assert_non_null(strstr(err->msg, "environment variable T_WORKERS"));
    sl_error_free(&err);
    sl_config_free(&cmd, &c);
    unsetenv("T_WORKERS");

    char *argv5[] = {"test", "--config", "/nonexistent/sl.yaml", NULL};
    assert_int_equal(sl_config_parse(&cmd, &c, 3, argv5, &argi, &err), -ENOENT);
    sl_error_free(&err);
    sl_config_free(&cmd, &c);
}

static void test_help(void **state)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    sl_config_help(&cmd, f);
    fclose(f);
    assert_non_null(strstr(buf, "--listen ADDR"));
    assert_non_null(strstr(buf, "[default: 127.0.0.1:8090]"));
    assert_non_null(strstr(buf, "[env: T_LISTEN]"));
    assert_non_null(strstr(buf, "-w, --workers N"));
    free(buf);
}

static void test_parse_size(void **state)
{
    uint64_t v;
    assert_int_equal(sl_parse_size("4MiB", &v), 0);
    assert_int_equal(v, 4 << 20);
    assert_int_equal(sl_parse_size("10k", &v), 0);
    assert_int_equal(v, 10000);
    assert_int_equal(sl_parse_size("-1", &v), -EINVAL);
    assert_int_equal(sl_parse_size("1Q", &v), -EINVAL);
    assert_int_equal(sl_parse_size("99999999999999999999", &v), -ERANGE);
    assert_int_equal(sl_parse_size("99999999999GiB", &v), -ERANGE);
}

static void test_parse_duration(void **state)
{
    int64_t v;
    assert_int_equal(sl_parse_duration_ms("30s", &v), 0);
    assert_int_equal(v, 30000);
    assert_int_equal(sl_parse_duration_ms("5m", &v), 0);
    assert_int_equal(v, 300000);
    assert_int_equal(sl_parse_duration_ms("1h30m", &v), 0);
    assert_int_equal(v, 5400000);
    assert_int_equal(sl_parse_duration_ms("1.5s", &v), 0);
    assert_int_equal(v, 1500);
    assert_int_equal(sl_parse_duration_ms("250ms", &v), 0);
    assert_int_equal(v, 250);
    assert_int_equal(sl_parse_duration_ms("7", &v), 0);
    assert_int_equal(v, 7000);
    assert_int_equal(sl_parse_duration_ms("", &v), -EINVAL);
    assert_int_equal(sl_parse_duration_ms("-1s", &v), -EINVAL);
    assert_int_equal(sl_parse_duration_ms("5x", &v), -EINVAL);
    assert_int_equal(sl_parse_duration_ms("s", &v), -EINVAL);
    assert_int_equal(sl_parse_duration_ms("1s2", &v), -EINVAL);
    assert_int_equal(sl_parse_duration_ms("1e300h", &v), -ERANGE);
}

static void test_parse_listen(void **state)
{
    static const struct {
        const char *in, *addr;
        int port;
    } ok[] = {
        {"127.0.0.1:8090", "127.0.0.1", 8090},
        {"0.0.0.0:1", NULL, 1},
        {":65535", NULL, 65535},
        {"[::1]:443", "::1", 443},
        {"[::]:8080", NULL, 8080},
        {"h:080", "h", 80},
    };
    for (size_t i = 0; i < SL_ELEMENTSOF(ok); i++) {
        char *addr = NULL;
        int port = -1;
        sl_error_t err = NULL;
        if (sl_parse_listen("--listen", ok[i].in, &addr, &port, &err) != 0)
            fail_msg("`%s`: %s", ok[i].in, sl_error_msg(err, -EINVAL));
        assert_int_equal(port, ok[i].port);
        if (ok[i].addr)
            assert_string_equal(addr, ok[i].addr);
        else
            assert_null(addr);
        free(addr);
    }
    static const char *const bad[] = {
        "127.0.0.1:0",     "127.0.0.1: 80",         "127.0.0.1:+80", "127.0.0.1:-1",
        "127.0.0.1:65536", "127.0.0.1:80x",         "127.0.0.1:",    "127.0.0.1",
        "::1:80",          "127.0.0.1:99999999999", ":00",           "a:\t80",
    };
    for (size_t i = 0; i < SL_ELEMENTSOF(bad); i++) {
        char *addr = NULL;
        int port = -1;
        sl_error_t err = NULL;
        if (sl_parse_listen("--listen", bad[i], &addr, &port, &err) != -EINVAL)
            fail_msg("`%s` accepted (port %d)", bad[i], port);
        assert_non_null(strstr(sl_error_msg(err, -EINVAL), "--listen"));
        assert_null(addr);
        sl_error_free(&err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),     cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_errors),       cmocka_unit_test(test_help),
        cmocka_unit_test(test_parse_size),   cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_listen),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
