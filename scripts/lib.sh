# shellcheck shell=bash
# Helpers shared by scripts/test, scripts/demo and scripts/run-pgtap.

ALX_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_CONFIG=${PG_CONFIG:-pg_config}
export PG_CONFIG

alx_bindir() { "$PG_CONFIG" --bindir; }

alx_log() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }
alx_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# A TCP port on loopback that nobody listens on.  The port and port + 10000
# (a RabbitMQ node's Erlang distribution port, scripts/rabbitmq) are both
# free and below the kernel's ephemeral range (32768 and up), where an
# outgoing connection could take either before the server binds it
# (dist_port_already_used).
alx_free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$(( (RANDOM % 12000) + 10200 ))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null &&
           ! (exec 3<>"/dev/tcp/127.0.0.1/$((p + 10000))") 2>/dev/null; then
            echo "$p"; return 0
        fi
    done
    return 1
}

# Run a command as the postgres user when we are root (PostgreSQL refuses
# to run as root); as ourselves otherwise.
alx_as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- env PATH="$PATH" PG_CONFIG="$PG_CONFIG" "$@"
    else
        "$@"
    fi
}

# Build with the warnings CI wants, then install into the PostgreSQL that
# PG_CONFIG names.
alx_build_install() {
    local cflags="-Wall -Wextra -Wno-unused-parameter -Wno-sign-compare -Wno-missing-field-initializers"
    [ -n "${CI:-}" ] && cflags="$cflags -Werror"
    alx_log "build ($PG_CONFIG)"
    make -C "$ALX_TOP" -s PG_CONFIG="$PG_CONFIG" PG_CFLAGS="$cflags" -j2 >/dev/null || return 1
    alx_log "install"
    make -C "$ALX_TOP" -s PG_CONFIG="$PG_CONFIG" install >/dev/null || return 1
}

# Start a throwaway cluster with test/regress.conf in DIR on PORT, owned by
# the postgres user when run as root.  Sets ALX_PGHOST, ALX_PGPORT.
alx_cluster_start() {
    local dir=$1 port=$2 dbname=${3:-contrib_regression}
    local bindir; bindir=$(alx_bindir)
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    alx_as_pg "$bindir/initdb" -D "$dir/data" -A trust -U postgres --no-sync >/dev/null
    alx_worker_role "$dir/data"
    sed "s/contrib_regression/$dbname/" "$ALX_TOP/test/regress.conf" >> "$dir/data/postgresql.conf"
    cat >> "$dir/data/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
CONF
    alx_as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
    ALX_PGHOST=$dir ALX_PGPORT=$port
    alx_as_pg "$bindir/createdb" -h "$dir" -p "$port" -U postgres "$dbname"
}

# Creates the role the background workers connect as (alexandrite.worker_role
# in test/regress.conf) in a cluster that is not running yet.
alx_worker_role() {
    echo 'CREATE ROLE alexandrite_worker LOGIN;' |
        alx_as_pg "$(alx_bindir)/postgres" --single -D "$1" -c shared_preload_libraries= postgres >/dev/null
}

alx_cluster_stop() {
    local dir=$1
    [ -f "$dir/data/postmaster.pid" ] || return 0
    alx_as_pg "$(alx_bindir)/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}
