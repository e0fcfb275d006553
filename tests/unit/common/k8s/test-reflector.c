/* Unit tests: the watch-stream splitter (events split across / packed into chunks) and the
 * reflector state machine (list diff with synthesised DELETED, events, bookmarks, ERROR 410
 * → relist, other errors). No network: the steps are fed directly. */
#include "test.h"

#include "reflector.h"

#include <stdio.h>
#include <string.h>

struct rec {
    char log[8192];
    int synced;
};

static void add(struct rec *r, const char *what, const json_t *o)
{
    char line[256];
    snprintf(line, sizeof(line), "%s %s@%s;", what,
             json_string_value(json_object_get(json_object_get(o, "metadata"), "name")),
             json_string_value(json_object_get(json_object_get(o, "metadata"), "resourceVersion")));
    strncat(r->log, line, sizeof(r->log) - strlen(r->log) - 1);
}

static void on_add(void *ud, const json_t *o)
{
    add(ud, "add", o);
}
static void on_update(void *ud, const json_t *old, const json_t *o)
{
    (void)old;
    add(ud, "upd", o);
}
static void on_delete(void *ud, const json_t *o)
{
    add(ud, "del", o);
}
static void on_synced(void *ud)
{
    ((struct rec *)ud)->synced++;
}

static struct sl_k8s_reflector *make(struct rec *rec)
{
    struct sl_k8s_reflector *r = NULL;
    struct sl_k8s_reflector_options o = {.path = "/api/v1/pods"};
    struct sl_k8s_reflector_callbacks cb = {.on_add = on_add,
                                            .on_update = on_update,
                                            .on_delete = on_delete,
                                            .on_synced = on_synced,
                                            .userdata = rec};
    /* no client is needed for the state-machine steps */
    assert_int_equal(sl_k8s_reflector_new(NULL, &o, &cb, &r, NULL), 0);
    return r;
}

static int collect(void *ud, const char *line, size_t len)
{
    char *out = ud;
    strncat(out, line, len);
    strcat(out, "|");
    return 0;
}

static void test_lines_any_split(void **state)
{
    (void)state;
    const char stream[] = "{\"a\":1}\n{\"b\":2}\r\n\n{\"c\":\n3}\n{\"d\":4}";
    size_t n = strlen(stream);
    /* every chunk size, including 1-byte chunks */
    for (size_t chunk = 1; chunk <= n; chunk++) {
        struct sl_k8s_lines l = {0};
        char out[256] = "";
        for (size_t off = 0; off < n; off += chunk) {
            size_t k = off + chunk > n ? n - off : chunk;
            assert_int_equal(sl_k8s_lines_feed(&l, stream + off, k, collect, out), 0);
        }
        assert_string_equal(out, "{\"a\":1}|{\"b\":2}|{\"c\":|3}|");
        assert_int_equal(l.len, strlen("{\"d\":4}")); /* incomplete tail kept */
        sl_k8s_lines_free(&l);
    }
    struct sl_k8s_lines l = {.max = 8};
    char out[64] = "";
    assert_int_equal(sl_k8s_lines_feed(&l, "12345", 5, collect, out), 0);
    assert_int_equal(sl_k8s_lines_feed(&l, "67890\n", 6, collect, out), -EFBIG);
    sl_k8s_lines_free(&l);
}

static void test_event_parse(void **state)
{
    (void)state;
    json_t *ev = NULL, *obj = NULL;
    const char *type = NULL;
    sl_error_t err = NULL;
    const char ok[] = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}";
    assert_int_equal(sl_k8s_watch_event_parse(ok, strlen(ok), &ev, &type, &obj, &err), 0);
    assert_string_equal(type, "ADDED");
    json_decref(ev);
    const char *bad[] = {"{",
                         "[]",
                         "{\"type\":\"ADDED\"}",
                         "{\"type\":\"NOPE\",\"object\":{}}",
                         "{\"type\":1,\"object\":{}}",
                         "{\"type\":\"ADDED\",\"object\":[]}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(sl_k8s_watch_event_parse(bad[i], strlen(bad[i]), &ev, &type, &obj, &err),
                         -EINVAL);
        sl_error_free(&err);
    }
}

static json_t *pod(const char *name, const char *rv)
{
    return json_pack("{s:{s:s,s:s,s:s}}", "metadata", "name", name, "namespace", "ns",
                     "resourceVersion", rv);
}

static void feed(struct sl_k8s_reflector *r, const char *s, int expect)
{
    sl_error_t err = NULL;
    int x = sl_k8s_reflector_feed(r, s, strlen(s), &err);
    if (x != expect)
        fail_msg("feed `%s`: %d (%s), expected %d", s, x, err ? err->msg : "-", expect);
    sl_error_free(&err);
}

static void test_list_watch_relist(void **state)
{
    (void)state;
    struct rec rec = {0};
    struct sl_k8s_reflector *r = make(&rec);
    sl_error_t err = NULL;

    json_t *list = json_pack("{s:[o,o],s:{s:s}}", "items", pod("a", "1"), pod("b", "2"), "metadata",
                             "resourceVersion", "2");
    assert_int_equal(sl_k8s_reflector_apply_list(r, list, &err), 0);
    json_decref(list);
    assert_string_equal(rec.log, "add a@1;add b@2;");
    assert_int_equal(rec.synced, 1);
    assert_true(sl_k8s_reflector_wait_synced(r, 0));
    char *rv = sl_k8s_reflector_resource_version(r);
    assert_string_equal(rv, "2");
    free(rv);

    /* events split mid-object across two chunks */
    rec.log[0] = 0;
    feed(r,
         "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\","
         "\"resourceVersion\":\"3\"}}}\n{\"type\":\"ADD",
         0);
    feed(r,
         "ED\",\"object\":{\"metadata\":{\"name\":\"c\",\"namespace\":\"ns\","
         "\"resourceVersion\":\"4\"}}}\n"
         "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"7\"}}}\n",
         0);
    assert_string_equal(rec.log, "upd a@3;add c@4;");
    rv = sl_k8s_reflector_resource_version(r);
    assert_string_equal(rv, "7");
    free(rv);
    assert_int_equal(sl_k8s_reflector_size(r), 3);
    json_t *got = sl_k8s_reflector_get(r, "ns/c");
    assert_non_null(got);
    json_decref(got);

    /* a replayed ADDED of an object we hold at the same RV is not an update */
    rec.log[0] = 0;
    feed(r,
         "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"c\",\"namespace\":\"ns\","
         "\"resourceVersion\":\"4\"}}}\n",
         0);
    assert_string_equal(rec.log, "");

    /* ERROR 410 inside the stream → relist; the splitter is reset for the next stream */
    feed(r,
         "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410,"
         "\"reason\":\"Expired\",\"message\":\"too old resource version: 2 (9)\"}}\n",
         SL_K8S_WATCH_RELIST);
    sl_k8s_reflector_reset_stream(r);

    /* the relist misses b (deleted meanwhile) and changes c: DELETED is synthesised */
    rec.log[0] = 0;
    list = json_pack("{s:[o,o,o],s:{s:s}}", "items", pod("a", "3"), pod("c", "8"), pod("d", "9"),
                     "metadata", "resourceVersion", "9");
    assert_int_equal(sl_k8s_reflector_apply_list(r, list, &err), 0);
    json_decref(list);
    assert_string_equal(rec.log, "add d@9;upd c@8;del b@2;");
    struct sl_k8s_reflector_stats st;
    sl_k8s_reflector_stats(r, &st);
    assert_int_equal(st.lists, 2);
    assert_int_equal(st.synthesized_deletes, 1);
    assert_int_equal(st.bookmarks, 1);

    /* DELETED event; other ERRORs and garbage fail the stream */
    rec.log[0] = 0;
    feed(r,
         "{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"d\",\"namespace\":\"ns\","
         "\"resourceVersion\":\"10\"}}}\n",
         0);
    assert_string_equal(rec.log, "del d@10;");
    feed(r, "{\"type\":\"ERROR\",\"object\":{\"code\":500,\"message\":\"boom\"}}\n", -EIO);
    sl_k8s_reflector_reset_stream(r);
    feed(r, "not json\n", -EINVAL);
    sl_k8s_reflector_reset_stream(r);
    feed(r, "{\"type\":\"ADDED\",\"object\":{\"metadata\":{}}}\n", -EINVAL);
    sl_k8s_reflector_reset_stream(r);
    assert_int_equal(sl_k8s_reflector_size(r), 2);

    /* malformed list */
    json_t *badl = json_pack("{s:i}", "items", 3);
    assert_int_equal(sl_k8s_reflector_apply_list(r, badl, &err), -EINVAL);
    sl_error_free(&err);
    json_decref(badl);
    sl_k8s_reflector_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_any_split),
        cmocka_unit_test(test_event_parse),
        cmocka_unit_test(test_list_watch_relist),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
