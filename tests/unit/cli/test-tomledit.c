/* Unit tests of cli/tomledit.c: the containerd config edits of `ctr-starlight install` on
 * realistic files, idempotence, and the uninstall round trip (byte-identical). */
#include "test.h"

#include "cleanup.h"
#include "tomledit.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define SOCK "/run/starlight/starlight-snapshotter.sock"
#define CRI2 "plugins.\"io.containerd.grpc.v1.cri\".containerd"

static char *slurp(const char *name, size_t *len)
{
    _cleanup_free_ char *p = sl_xasprintf("%s/unit/cli/fixtures/%s", sl_test_data_dir(), name);
    FILE *f = fopen(p, "re");
    assert_non_null(f);
    char *s = sl_xmalloc(1 << 20);
    *len = fread(s, 1, (1 << 20) - 1, f);
    s[*len] = 0;
    fclose(f);
    return s;
}

static char *get(const char *text, size_t len, unsigned flags, const char *table, const char *key)
{
    _cleanup_toml_ struct sl_toml_doc *doc = NULL;
    assert_int_equal(sl_toml_parse(text, len, flags, &doc, NULL), 0);
    char *v = NULL;
    return sl_toml_get(doc, table, key, &v) > 0 ? v : NULL;
}

static void check_value(const char *text, size_t len, const char *table, const char *key,
                        const char *want)
{
    _cleanup_free_ char *v = get(text, len, SL_TOML_TEMPLATE, table, key);
    if (!want) {
        assert_null(v);
        return;
    }
    assert_non_null(v);
    assert_string_equal(v, want);
}

/* install → check → install again (unchanged) → uninstall (byte-identical). Returns the
 * installed text for extra checks. */
static char *round_trip(const char *orig, size_t len, const char *cri, bool k3s)
{
    struct sl_install_opts o = {.socket = SOCK, .k3s = k3s};
    char *out = NULL, *note = NULL;
    size_t outlen = 0;
    bool changed = false;
    sl_error_t err = NULL;
    int r = sl_install_edit(orig, len, &o, &out, &outlen, &changed, &note, &err);
    if (r < 0)
        fail_msg("install: %s", sl_error_msg(err, r));
    assert_true(changed);
    free(note);
    check_value(out, outlen, "proxy_plugins.starlight", "type", "snapshot");
    check_value(out, outlen, "proxy_plugins.starlight", "address", SOCK);
    if (cri) {
        check_value(out, outlen, cri, "snapshotter", "starlight");
        check_value(out, outlen, cri, "disable_snapshot_annotations", "false");
    }

    _cleanup_free_ char *again = NULL;
    size_t againlen = 0;
    bool changed2 = true;
    assert_int_equal(sl_install_edit(out, outlen, &o, &again, &againlen, &changed2, &note, NULL),
                     0);
    assert_false(changed2);
    assert_int_equal(againlen, outlen);
    assert_memory_equal(again, out, outlen);
    free(note);

    _cleanup_free_ char *back = NULL;
    size_t backlen = 0;
    assert_int_equal(sl_uninstall_edit(out, outlen, k3s, &back, &backlen, &changed, NULL), 0);
    assert_true(changed);
    if (orig) {
        assert_int_equal(backlen, len);
        assert_memory_equal(back, orig, len);
    } else {
        assert_int_equal(backlen, 0);
    }
    /* Uninstalling twice changes nothing more. */
    _cleanup_free_ char *back2 = NULL;
    size_t back2len = 0;
    if (orig) {
        assert_int_equal(sl_uninstall_edit(back, backlen, k3s, &back2, &back2len, &changed, NULL),
                         0);
        assert_false(changed);
    }
    return out;
}

static void test_containerd_default_fixture(void **state)
{
    (void)state;
    size_t len;
    _cleanup_free_ char *orig = slurp("containerd-1.6-default.toml", &len);
    _cleanup_free_ char *out = round_trip(orig, len, CRI2, false);
    /* One entry only, in place: the CRI lines keep their indentation. */
    assert_non_null(strstr(out, "\n      snapshotter = \"starlight\" " SL_TOML_MARK_WAS
                                "      snapshotter = \"overlayfs\"\n"));
    assert_null(strstr(strstr(out, "[proxy_plugins.starlight]") + 1, "[proxy_plugins.starlight]"));
}

/* The same on the output of the containerd binary on this machine, when there is one. */
static void test_containerd_default_live(void **state)
{
    (void)state;
    FILE *p = popen("containerd config default 2>/dev/null", "re");
    if (!p)
        skip();
    char *s = sl_xmalloc(1 << 20);
    size_t len = fread(s, 1, (1 << 20) - 1, p);
    int st = pclose(p);
    if (st != 0 || len == 0) {
        free(s);
        skip();
    }
    _cleanup_free_ char *orig = s;
    _cleanup_free_ char *out = round_trip(orig, len, CRI2, false);
}

static void test_k3s_generated(void **state)
{
    (void)state;
    size_t len;
    _cleanup_free_ char *orig = slurp("k3s-generated.toml", &len);
    _cleanup_free_ char *out = round_trip(orig, len, CRI2, true);
    /* The literal-quoted table name is the same table: no duplicate header. */
    assert_null(strstr(out, "[plugins.\"io.containerd.grpc.v1.cri\".containerd] "));
}

static void test_commented(void **state)
{
    (void)state;
    size_t len;
    _cleanup_free_ char *orig = slurp("commented.toml", &len);
    _cleanup_free_ char *out = round_trip(orig, len, CRI2, false);
    /* A conflicting snapshotter is replaced, its comment kept, the old line recorded. */
    assert_non_null(strstr(out, "snapshotter = \"starlight\"   # was set by hand " SL_TOML_MARK_WAS
                                "      snapshotter = \"stargz\"   # was set by hand\n"));
    /* The missing key goes after the last key of the table, with its indentation. */
    assert_non_null(strstr(out, "      default_runtime_name = \"runc\"\n"
                                "      disable_snapshot_annotations = false " SL_TOML_MARK "\n"));
    /* The new table follows its sibling proxy plugin. */
    assert_non_null(strstr(out, "containerd-stargz-grpc.sock\"\n  [proxy_plugins.starlight]"));
    /* The array-of-tables entry is not touched. */
    check_value(out, strlen(out), "debug", "level", "\"\"\"info\"\"\"");
    assert_non_null(strstr(out, "  snapshotter = \"overlayfs\"\n\n[debug]"));
}

static void test_v3(void **state)
{
    (void)state;
    size_t len;
    _cleanup_free_ char *orig = slurp("v3.toml", &len);
    _cleanup_free_ char *out =
        round_trip(orig, len, "plugins.\"io.containerd.cri.v1.images\"", false);
}

static void test_missing_file(void **state)
{
    (void)state;
    _cleanup_free_ char *out = round_trip(NULL, 0, CRI2, false);
    check_value(out, strlen(out), "", "version", "2");
}

static void test_no_final_newline_and_crlf(void **state)
{
    (void)state;
    const char *a = "version = 2\r\n[grpc]\r\n  address = \"/x.sock\"";
    _cleanup_free_ char *out = round_trip(a, strlen(a), CRI2, false);
}

static void test_already_installed_by_hand(void **state)
{
    (void)state;
    size_t len;
    _cleanup_free_ char *orig = slurp("installed-by-hand.toml", &len);
    struct sl_install_opts o = {.socket = SOCK};
    _cleanup_free_ char *out = NULL;
    _cleanup_free_ char *note = NULL;
    size_t outlen;
    bool changed = true;
    assert_int_equal(sl_install_edit(orig, len, &o, &out, &outlen, &changed, &note, NULL), 0);
    assert_false(changed);
    assert_memory_equal(out, orig, len);
    /* Uninstall leaves settings it did not add. */
    _cleanup_free_ char *back = NULL;
    assert_int_equal(sl_uninstall_edit(orig, len, false, &back, &outlen, &changed, NULL), 0);
    assert_false(changed);
}

static void test_other_socket_replaced(void **state)
{
    (void)state;
    size_t len;
    _cleanup_free_ char *orig = slurp("installed-by-hand.toml", &len);
    struct sl_install_opts o = {.socket = "/tmp/a \"b\".sock"};
    _cleanup_free_ char *out = NULL;
    _cleanup_free_ char *note = NULL;
    size_t outlen;
    bool changed = false;
    assert_int_equal(sl_install_edit(orig, len, &o, &out, &outlen, &changed, &note, NULL), 0);
    assert_true(changed);
    check_value(out, outlen, "proxy_plugins.starlight", "address", "/tmp/a \"b\".sock");
}

static void test_k3s_base_template(void **state)
{
    (void)state;
    const char *t = "{{ template \"base\" . }}\n";
    struct sl_install_opts o = {.socket = SOCK, .k3s = true};
    _cleanup_free_ char *out = NULL;
    _cleanup_free_ char *note = NULL;
    size_t outlen;
    bool changed = false;
    assert_int_equal(sl_install_edit(t, strlen(t), &o, &out, &outlen, &changed, &note, NULL), 0);
    assert_true(changed);
    assert_non_null(note);
    assert_string_equal(out, "{{ template \"base\" . }}\n"
                             "[proxy_plugins.starlight] " SL_TOML_MARK "\n"
                             "  type = \"snapshot\" " SL_TOML_MARK "\n"
                             "  address = \"" SOCK "\" " SL_TOML_MARK "\n");
    _cleanup_free_ char *back = NULL;
    assert_int_equal(sl_uninstall_edit(out, outlen, true, &back, &outlen, &changed, NULL), 0);
    assert_string_equal(back, t);
    /* A missing template is created from the base template and removed by uninstall. */
    _cleanup_free_ char *made = round_trip(NULL, 0, NULL, true);
    assert_true(strncmp(made, "{{ template \"base\" . }} " SL_TOML_MARK "\n", 30) == 0);
}

static void expect_refused(const char *text, int code, const char *msg)
{
    struct sl_install_opts o = {.socket = SOCK};
    char *out = NULL, *note = NULL;
    size_t outlen;
    bool changed = false;
    sl_error_t err = NULL;
    int r = sl_install_edit(text, strlen(text), &o, &out, &outlen, &changed, &note, &err);
    assert_int_equal(r, -code);
    assert_null(out);
    assert_non_null(strstr(sl_error_msg(err, r), msg));
    sl_error_free(&err);
}

static void test_refusals(void **state)
{
    (void)state;
    expect_refused("[plugins.cri]\n  snapshotter = \"overlayfs\"\n", ENOTSUP, "version 1");
    expect_refused("version = 1\n", ENOTSUP, "version = 1");
    expect_refused("version = 2\n[grpc\n", EINVAL, "line 2");
    expect_refused("version = 2\nname = \"unterminated\n", EINVAL, "line 2");
    expect_refused("version = 2\nx = [1,\n2\n", EINVAL, "line 2");
    expect_refused("version = 2\nthis is not toml\n", EINVAL, "line 2");
    expect_refused("version = 2\n{{ if .X }}\n", EINVAL, "template");
    /* The CRI table defined with dotted keys or inline: a line editor would get it wrong. */
    expect_refused("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n"
                   "  containerd.snapshotter = \"overlayfs\"\n  containerd.x = 1\n",
                   EINVAL, "dotted key");
    expect_refused("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n"
                   "  containerd = { snapshotter = \"overlayfs\" }\n",
                   EINVAL, "inline table");
    expect_refused("version = 2\n[proxy_plugins]\n  starlight = \"x\"\n", EINVAL, "starlight");
}

static void test_diff(void **state)
{
    (void)state;
    const char *a = "a\nb\nc\n", *b = "a\nB\nc\nd\n";
    char *out = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&out, &n);
    sl_toml_diff(f, a, strlen(a), b, strlen(b));
    fclose(f);
    assert_string_equal(out, "@@ line 2 @@\n-b\n+B\n@@ line 4 @@\n+d\n");
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_containerd_default_fixture),
        cmocka_unit_test(test_containerd_default_live),
        cmocka_unit_test(test_k3s_generated),
        cmocka_unit_test(test_commented),
        cmocka_unit_test(test_v3),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_no_final_newline_and_crlf),
        cmocka_unit_test(test_already_installed_by_hand),
        cmocka_unit_test(test_other_socket_replaced),
        cmocka_unit_test(test_k3s_base_template),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_diff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
