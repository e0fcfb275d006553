/* verbs.h — the verbs of ctr-starlight. Each verb lives in cmd-<verb>.c and receives argv with
 * argv[0] = "<verb>". Returns the process exit code. */
#ifndef SL_CLI_VERBS_H
#define SL_CLI_VERBS_H

struct sl_verb {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
};

int sl_cmd_convert(int argc, char **argv);
int sl_cmd_inspect(int argc, char **argv);
int sl_cmd_notify(int argc, char **argv);
int sl_cmd_pull(int argc, char **argv);
int sl_cmd_status(int argc, char **argv);
int sl_cmd_ping(int argc, char **argv);
int sl_cmd_add_proxy(int argc, char **argv);
int sl_cmd_list_proxy(int argc, char **argv);
int sl_cmd_version(int argc, char **argv);
int sl_cmd_optimizer(int argc, char **argv);
int sl_cmd_report(int argc, char **argv);
int sl_cmd_traces(int argc, char **argv);
int sl_cmd_gc(int argc, char **argv);
int sl_cmd_install(int argc, char **argv);
int sl_cmd_uninstall(int argc, char **argv);

#endif
