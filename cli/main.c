/* ctr-starlight — wiring only: picks the verb and hands it argv. */
#include "cleanup.h"
#include "log.h"
#include "verbs.h"

#include <stdio.h>
#include <string.h>

static const struct sl_verb verbs[] = {
    {"convert", "Convert an image to the Starlight format and push it", sl_cmd_convert},
    {"inspect", "Show the layers and TOCs of a Starlight image in a registry", sl_cmd_inspect},
    {"notify", "Tell a starlight-proxy about a converted image", sl_cmd_notify},
    {"pull", "Pull an image lazily through starlight-daemon", sl_cmd_pull},
    {"status", "Show the daemon's layers and pulls in flight", sl_cmd_status},
    {"ping", "Measure the round trip from the daemon to a proxy", sl_cmd_ping},
    {"add-proxy", "Add a proxy profile to the daemon", sl_cmd_add_proxy},
    {"list-proxy", "List the daemon's proxy profiles", sl_cmd_list_proxy},
    {"install", "Add the Starlight snapshotter to containerd's config.toml", sl_cmd_install},
    {"uninstall", "Remove what install added to containerd's config.toml", sl_cmd_uninstall},
    {"optimizer", "Turn startup-trace recording on or off (--group G)", sl_cmd_optimizer},
    {"report", "Upload the recorded startup traces to the proxy", sl_cmd_report},
    {"traces", "List the startup traces not yet reported", sl_cmd_traces},
    {"gc", "Remove layers and contents nothing references any more", sl_cmd_gc},
    {"version", "Show the versions of ctr-starlight and the daemon", sl_cmd_version},
    {NULL, NULL, NULL},
};

static void usage(FILE *out)
{
    fprintf(out, "Usage: ctr-starlight COMMAND [OPTIONS] [ARGS]\n\n"
                 "Starlight-C image tool: converts images to the lazy Starlight format.\n\n"
                 "Commands:\n");
    for (const struct sl_verb *v = verbs; v->name; v++)
        fprintf(out, "  %-11s %s\n", v->name, v->summary);
    fprintf(out, "\nRun `ctr-starlight COMMAND --help` for the options of a command.\n");
}

int main(int argc, char **argv)
{
    sl_log_setup("ctr-starlight", SL_LOG_TEXT, SL_LOG_INFO);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("ctr-starlight %s\n", SL_VERSION);
        return 0;
    }
    for (const struct sl_verb *v = verbs; v->name; v++)
        if (strcmp(argv[1], v->name) == 0)
            return v->run(argc - 1, argv + 1);
    fprintf(stderr, "ctr-starlight: unknown command `%s`\n\n", argv[1]);
    usage(stderr);
    return 2;
}
