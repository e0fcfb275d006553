# shellcheck shell=bash
# The applications of the WAN benchmark: an old/new image pair (tests/images/build.sh names) and
# a readiness probe each. Every container runs with --net-host inside the edge namespace, so
# the probe runs there too (wan_edge), from outside the container, every 50 ms.
#
#   app       old         new         probe (passes when)
#   redis     redis6      redis7      PING on 127.0.0.1:6379 answers +PONG
#   nginx     nginx118    nginx122    GET http://127.0.0.1/ answers 200 (Debian's default site)
#   python    python39    python311   GET http://127.0.0.1:8000/ answers 200 (a WSGI app + sqlite3)
#   postgres  postgres13  postgres15  `select 1` succeeds over TCP on 127.0.0.1:5432
#   redis-minor   redis7     redis7next     as redis
#   python-minor  python311  python311next  as python
#
# The first four cross Debian releases (bullseye -> bookworm): the new image shares almost no
# file with the old one. The *-minor pairs are minor updates: the new image is the old one
# rebuilt from scratch (same suite and packages, every layer digest new, so containerd fetches
# it all again) with the application's own file changed (redis: its config file; python: the
# app's code, v2), so almost every file's content is shared (tests/images/README.md).
#
# Source after tests/e2e/wan.sh.

BENCH_APPS_ALL=(redis nginx python postgres redis-minor python-minor)

# app_images APP: "OLD NEW"
app_images() {
    case "$1" in
    redis) echo "redis6 redis7" ;;
    nginx) echo "nginx118 nginx122" ;;
    python) echo "python39 python311" ;;
    postgres) echo "postgres13 postgres15" ;;
    redis-minor) echo "redis7 redis7next" ;;
    python-minor) echo "python311 python311next" ;;
    *) e2e_fail "unknown app '$1' (known: ${BENCH_APPS_ALL[*]})" ;;
    esac
}

# app_probe APP: succeeds once APP answers in the edge namespace (one attempt, ≤ 1 s)
app_probe() {
    case "$1" in
    redis | redis-minor) # shellcheck disable=SC2016 # expanded by the inner bash
        wan_edge timeout 1 bash -c 'exec 3<>/dev/tcp/127.0.0.1/6379 && printf "PING\r\n" >&3 &&
            read -r l <&3 && [[ "$l" == +PONG* ]]' 2>/dev/null
        ;;
    nginx) wan_edge curl -fsS -o /dev/null -m 1 http://127.0.0.1:80/ 2>/dev/null ;;
    python | python-minor) wan_edge curl -fsS -o /dev/null -m 1 http://127.0.0.1:8000/ 2>/dev/null ;;
    postgres)
        [ "$(PGCONNECT_TIMEOUT=1 wan_edge psql -w -h 127.0.0.1 -p 5432 -U postgres -d postgres \
            -tAc 'select 1' 2>/dev/null)" = 1 ]
        ;;
    esac
}
