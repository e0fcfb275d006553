/* test-controllers.c — the pure parts of the controllers: which nodes a workload's image change
 * pre-warms (sl_prewarm_desired: selector match, node, old pods only, terminating and finished
 * pods skipped), how an entry merges into a node's annotation (sl_prewarm_merge: idempotent,
 * newer generation supersedes, capped, garbage dropped), when a trace Job is finished and what
 * the node's Events say (sl_tracejobs_finished, sl_tracejobs_outcome). */
#include "test.h"

#include "cleanup.h"
#include "k8s.h"
#include "prewarm.h"
#include "tracejobs.h"

#include <jansson.h>
#include <string.h>

static json_t *pod(const char *name, const char *node, const char *image, const char *app,
                   const char *phase)
{
    json_t *p = json_pack("{s:{s:s,s:s,s:{s:s}},s:{s:[{s:s,s:s}]},s:{s:s}}", "metadata", "name",
                          name, "namespace", "default", "labels", "app", app, "spec", "containers",
                          "name", "app", "image", image, "status", "phase", phase);
    if (node)
        json_object_set_new(json_object_get(p, "spec"), "nodeName", json_string(node));
    return p;
}

static void test_desired(void **state)
{
    (void)state;
    json_t *deploy =
        json_pack("{s:{s:s,s:s,s:i},s:{s:{s:{s:s}},s:{s:{s:[{s:s,s:s},{s:s,s:s}]}}}}", "metadata",
                  "name", "web", "namespace", "default", "generation", 3, "spec", "selector",
                  "matchLabels", "app", "web", "template", "spec", "containers", "name", "app",
                  "image", "r/app:2", "name", "side", "image", "r/side:1");
    json_t *pods = json_pack("[o,o,o,o,o,o]", pod("a", "n1", "r/app:1", "web", "Running"),
                             pod("b", "n2", "r/app:2", "web", "Running"),   /* already new */
                             pod("c", "n3", "r/app:1", "other", "Running"), /* not selected */
                             pod("d", NULL, "r/app:1", "web", "Pending"),   /* not bound */
                             pod("e", "n4", "r/app:1", "web", "Succeeded"), /* finished */
                             pod("f", "n1", "r/app:1", "web", "Running"));  /* same node again */
    json_t *terminating = pod("g", "n5", "r/app:1", "web", "Running");
    json_object_set_new(json_object_get(terminating, "metadata"), "deletionTimestamp",
                        json_string("2026-01-01T00:00:00Z"));
    json_array_append_new(pods, terminating);
    json_t *d = sl_prewarm_desired("Deployment", deploy, pods);
    assert_int_equal(json_array_size(d), 1);
    json_t *e = json_array_get(d, 0);
    assert_string_equal(json_string_value(json_object_get(e, "node")), "n1");
    assert_string_equal(json_string_value(json_object_get(e, "from")), "r/app:1");
    assert_string_equal(json_string_value(json_object_get(e, "to")), "r/app:2");
    assert_string_equal(json_string_value(json_object_get(e, "owner")), "default/Deployment/web");
    assert_int_equal(json_integer_value(json_object_get(e, "generation")), 3);
    json_decref(d);
    /* an empty selector selects nothing */
    json_object_set_new(json_object_get(json_object_get(deploy, "spec"), "selector"), "matchLabels",
                        json_object());
    d = sl_prewarm_desired("Deployment", deploy, pods);
    assert_int_equal(json_array_size(d), 0);
    json_decref(d);
    json_decref(deploy);
    json_decref(pods);
}

static void test_merge(void **state)
{
    (void)state;
    json_t *e1 = json_pack("{s:s,s:s,s:s,s:i}", "from", "r/a:1", "to", "r/a:2", "owner",
                           "ns/Deployment/a", "generation", 2);
    char *t = NULL;
    assert_int_equal(sl_prewarm_merge(NULL, e1, &t), 1);
    assert_non_null(t);
    char *again = NULL;
    assert_int_equal(sl_prewarm_merge(t, e1, &again), 0); /* already there: nothing to write */
    assert_null(again);
    json_t *e2 = json_pack("{s:s,s:s,s:s,s:i}", "from", "r/a:1", "to", "r/a:3", "owner",
                           "ns/Deployment/a", "generation", 3);
    char *t2 = NULL;
    assert_int_equal(sl_prewarm_merge(t, e2, &t2), 1);
    json_t *l = json_loads(t2, 0, NULL);
    assert_int_equal(json_array_size(l), 1); /* generation 3 superseded generation 2 */
    assert_string_equal(json_string_value(json_object_get(json_array_get(l, 0), "to")), "r/a:3");
    json_decref(l);
    /* garbage from elsewhere is dropped; the list stays capped */
    char *t3 = NULL;
    assert_int_equal(sl_prewarm_merge("[1,{\"x\":2},\"s\"]", e1, &t3), 1);
    l = json_loads(t3, 0, NULL);
    assert_int_equal(json_array_size(l), 1);
    json_decref(l);
    char *cur = strdup("not json");
    for (int i = 0; i < SL_PREWARM_MAX_ENTRIES + 5; i++) {
        char owner[64];
        snprintf(owner, sizeof owner, "ns/Deployment/w%d", i);
        json_t *e =
            json_pack("{s:s,s:s,s:s,s:i}", "from", "f", "to", "t", "owner", owner, "generation", 1);
        char *next = NULL;
        assert_int_equal(sl_prewarm_merge(cur, e, &next), 1);
        free(cur);
        cur = next;
        json_decref(e);
    }
    l = json_loads(cur, 0, NULL);
    assert_int_equal(json_array_size(l), SL_PREWARM_MAX_ENTRIES);
    json_decref(l);
    free(cur);
    free(t);
    free(t2);
    free(t3);
    json_decref(e1);
    json_decref(e2);
}

static void test_trace_jobs(void **state)
{
    (void)state;
    json_t *job = json_pack("{s:{s:s,s:s},s:{s:{s:{s:{s:s}}}},s:{s:[{s:s,s:s}]}}", "metadata",
                            "name", "t", "namespace", "default", "spec", "template", "metadata",
                            "annotations", SL_TRACE_ANNOTATION, "true", "status", "conditions",
                            "type", "Complete", "status", "True");
    const char *msg = NULL;
    assert_int_equal(sl_tracejobs_finished(job, &msg), 1);
    json_object_set_new(json_object_get(job, "metadata"), "annotations",
                        json_pack("{s:s}", SL_TRACE_RESULT_ANNOTATION, "{}"));
    assert_int_equal(sl_tracejobs_finished(job, &msg), 0); /* already concluded */
    json_decref(job);
    job = json_pack("{s:{s:s},s:{s:{s:{s:{s:s}}}},s:{s:[{s:s,s:s,s:s}]}}", "metadata", "name", "t",
                    "spec", "template", "metadata", "annotations", SL_TRACE_ANNOTATION, "true",
                    "status", "conditions", "type", "Failed", "status", "True", "message", "boom");
    assert_int_equal(sl_tracejobs_finished(job, &msg), 2);
    assert_string_equal(msg, "boom");
    json_decref(job);
    job = json_pack("{s:{s:s},s:{s:{s:{s:{s:s}}}}}", "metadata", "name", "t", "spec", "template",
                    "metadata", "annotations", SL_TRACE_ANNOTATION, "true");
    assert_int_equal(sl_tracejobs_finished(job, &msg), 0); /* running */
    json_decref(job);

    json_t *uids = json_pack("[s]", "u1");
    /* the numbers come from the trace-report annotation; the message is text for people */
    json_t *events = json_pack(
        "[{s:{s:s},s:s,s:s},{s:{s:s},s:s,s:s},{s:{s:s},s:s,s:s,s:{s:{s:s}}}]", "involvedObject",
        "uid", "u2", "reason", "StarlightTraceReported", "message",
        "reported 1 traces, 99 accesses", "involvedObject", "uid", "u1", "reason",
        "StarlightTraceFailed", "message", "proxy down", "involvedObject", "uid", "u1", "reason",
        "StarlightTraceReported", "message",
        "reported 2 traces (1 of this pod's containers), 99 accesses, 1 groups to http://p",
        "metadata", "annotations", SL_K8S_TRACE_REPORT_ANNOTATION,
        "{\"traces\":2,\"podTraces\":1,\"accesses\":17,\"groups\":1}");
    long acc = -1;
    assert_int_equal(sl_tracejobs_outcome(events, uids, &acc, &msg), 1);
    assert_int_equal(acc, 17);
    /* a hostile or missing annotation: 0 accesses, still Reported */
    json_t *ann =
        json_object_get(json_object_get(json_array_get(events, 2), "metadata"), "annotations");
    static const char *const bad[] = {"{\"accesses\":-5}", "{\"accesses\":\"7\"}", "not json",
                                      "[17]"};
    for (size_t i = 0; i < SL_ELEMENTSOF(bad); i++) {
        json_object_set_new(ann, SL_K8S_TRACE_REPORT_ANNOTATION, json_string(bad[i]));
        acc = -1;
        assert_int_equal(sl_tracejobs_outcome(events, uids, &acc, &msg), 1);
        assert_int_equal(acc, 0);
    }
    json_object_clear(ann);
    assert_int_equal(sl_tracejobs_outcome(events, uids, &acc, &msg), 1);
    assert_int_equal(acc, 0); /* never parsed from the message's "99 accesses" */
    json_array_remove(events, 2);
    assert_int_equal(sl_tracejobs_outcome(events, uids, &acc, &msg), 2);
    assert_string_equal(msg, "proxy down");
    json_array_clear(events);
    assert_int_equal(sl_tracejobs_outcome(events, uids, &acc, &msg), 0);
    json_decref(events);
    json_decref(uids);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_desired),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_trace_jobs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
