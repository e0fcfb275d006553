#!/usr/bin/env bash
# redis7next: a minor update of redis7, as a publisher's CI rebuild makes it: the same suite
# (bookworm) and package (redis-server 7.0), debootstrapped and installed again from scratch,
# so every layer is new (new digests) while almost every file's content is the same, plus the
# publisher's change of its own file: /etc/redis/redis.conf set up for a container (foreground,
# log to stdout, no pidfile, protected mode off) and an eviction policy (maxmemory 256mb,
# allkeys-lru), which the image now runs with. Two layers (debian-app.sh), then share.py checks
# against redis7 that no layer digest is shared and most file bytes are.
# Usage: redis7next.sh OUTDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bash "$here/debian-app.sh" bookworm "$1" redis-server \
    '{"Cmd":["redis-server","/etc/redis/redis.conf"],
      "Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
      "ExposedPorts":{"6379/tcp":{}},"WorkingDir":"/var/lib/redis"}' '
c=/etc/redis/redis.conf
sed -i -e "s/^daemonize yes/daemonize no/" -e "s/^protected-mode yes/protected-mode no/" \
    -e "s|^logfile .*|logfile \"\"|" -e "s|^pidfile |# pidfile |" \
    -e "s/^# maxmemory <bytes>/maxmemory 256mb/" \
    -e "s/^# maxmemory-policy noeviction/maxmemory-policy allkeys-lru/" "$c"
for s in "daemonize no" "protected-mode no" "logfile \"\"" "maxmemory 256mb" \
    "maxmemory-policy allkeys-lru"; do grep -qx "$s" "$c"; done
'
python3 "$here/share.py" --check --names redis7 redis7next "$(bash "$here/build.sh" redis7)" "$1" >&2
