#!/usr/bin/env bash
# Makes the services the demo and the tests need available on this machine, and writes their
# coordinates to "$XJ_DEV_DIR/dev.env" (default /var/lib/xueji-dev/dev.env):
#
#   - a development exchange CA, a broker server certificate and the hub's client certificate
#     (certs/dev-pki.sh, with the hub CLI);
#   - a private RabbitMQ node "xueji@localhost" with a TLS listener on 127.0.0.1:5681 that
#     offers EXTERNAL authentication only (the client certificate's CN is the user), admits only
#     client certificates the development CA signed (verified by signature, no intermediates)
#     and not on the CA's revocation list in $XJ_DEV_DIR/rabbitmq/crl (read at every
#     handshake), and the management API on 127.0.0.1:15681 for provisioning users and vhosts.
#     It runs beside any RabbitMQ already on the machine and never touches it;
#   - PostgreSQL: the running cluster is reused; when there is none it is installed and
#     started. A login role "xueji" that may create databases is made for the tests.
#
# Works as root on a fresh Debian 12 machine (installs what is missing with apt-get) and on one
# where the services already run. Idempotent: run it again and it reuses what is there.
#
# Fault tests need services of their own that they may stop and restart without disturbing
# other tests; the same script makes them:
#   node start|stop|restart|kill|delete NAME [AMQPS MGMT DIST]           a RabbitMQ node like the main one (ports: first start)
#   node join NAME FIRST                                                 node NAME joins the cluster of node FIRST
#   pg start|stop|restart|delete NAME PORT                               a PostgreSQL instance (trust auth)
#   purge                                                                remove what tests left behind
# Usage: bash tests/services.sh [up|stop|purge|node …|pg …]
set -euo pipefail

XJ_DEV_DIR=${XJ_DEV_DIR:-/var/lib/xueji-dev}
NODE=${XJ_RABBIT_NODE:-xueji@localhost}
AMQPS_PORT=${XJ_AMQPS_PORT:-5681}
MGMT_PORT=${XJ_MGMT_PORT:-15681}
DIST_PORT=${XJ_DIST_PORT:-25681}
PKI="$XJ_DEV_DIR/pki"
NODE_DIR="$XJ_DEV_DIR/rabbitmq"

say() { printf 'services: %s\n' "$*"; }
die() { printf 'services: FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and runs services as their own users)"

apt_updated=
ensure_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing ${missing[*]}"
  if [ -z "$apt_updated" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null || die "apt-get update failed"
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

# ---------------------------------------------------------------- development PKI
# The hub CLI, built by certs/dev-pki.sh (or given as HUB=…).
HUB=${HUB:-"$(cd "$(dirname "$0")/.." && pwd)/target/debug/hub"}

ensure_pki() {
  bash "$(dirname "$0")/../certs/dev-pki.sh" "$PKI" | sed 's/^/services: /'
  [ "${PIPESTATUS[0]}" = 0 ] || die "the development PKI"
}

# ---------------------------------------------------------------- RabbitMQ (private node)
ctl() { rabbitmqctl -q -n "$NODE" "$@"; }

node_env() {
  export RABBITMQ_NODENAME="$NODE" RABBITMQ_NODE_PORT="$AMQPS_PORT" RABBITMQ_DIST_PORT="$DIST_PORT"
  export RABBITMQ_CONFIG_FILE="$NODE_DIR/rabbitmq.conf"
  export RABBITMQ_ADVANCED_CONFIG_FILE="$NODE_DIR/advanced.config"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$NODE_DIR/enabled_plugins"
  export RABBITMQ_MNESIA_BASE="$NODE_DIR/mnesia" RABBITMQ_LOG_BASE="$NODE_DIR/log"
  export RABBITMQ_PID_FILE="$NODE_DIR/node.pid"
}

write_node_config() { # prints rabbitmq.conf; the node is restarted when it changes
  cat <<EOF
# Written by tests/services.sh. TLS only, EXTERNAL only: a client is who its certificate says.
# The TLS options (the exchange CA, chain verification, the CRL) are in advanced.config:
# rabbitmq.conf of RabbitMQ 3.10 cannot express a CRL cache.
listeners.tcp = none
listeners.ssl.default = 127.0.0.1:$AMQPS_PORT
auth_mechanisms.1 = EXTERNAL
ssl_cert_login_from = common_name
management.tcp.ip = 127.0.0.1
management.tcp.port = $MGMT_PORT
# Connection listings refresh every second, so revocation finds fresh connections quickly.
collect_statistics_interval = 1000
EOF
}

write_node_advanced_config() { # prints advanced.config
  cat <<EOF
%% Written by tests/services.sh (the same options as hub/deploy/advanced.config).
%% A client certificate is accepted only if the exchange CA signed it directly (depth 0: no
%% intermediate, no partial chain), and only if it is not on the CRL the exchange publishes in
%% the crl directory, read at every handshake (ssl_crl_hash_dir). No list of admitted
%% certificates widens this: identity is proven by signature, never by issuer name and serial.
[
  {rabbit, [
    {ssl_options, [
      {cacertfile, "$NODE_DIR/tls/ca.pem"},
      {certfile, "$NODE_DIR/tls/server.pem"},
      {keyfile, "$NODE_DIR/tls/server.key"},
      {verify, verify_peer},
      {fail_if_no_peer_cert, true},
      {depth, 0},
      {versions, ['tlsv1.3', 'tlsv1.2']},
      {crl_check, peer},
      {crl_cache, {ssl_crl_hash_dir, {internal, [{dir, "$NODE_DIR/crl"}]}}}
    ]}
  ]}
].
EOF
}

wait_for_node() {
  # A deadline, not a count: under load each rabbitmqctl call itself takes a second or more.
  local deadline=$((SECONDS + ${XJ_NODE_START_SECS:-240})) pid
  while [ $SECONDS -lt $deadline ]; do
    if ctl await_startup --timeout 30 >/dev/null 2>&1; then
      check_listeners
      return 0
    fi
    # A node whose VM has exited will not come up by waiting: say why now.
    pid=$(cat "$NODE_DIR/node.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      node_failed "its VM (pid $pid) exited during start-up"
    fi
    sleep 0.5
  done
  ctl await_startup --timeout 5 >/dev/null 2>&1 || node_failed "not up after ${XJ_NODE_START_SECS:-240} s"
  check_listeners
}

# A node whose listener could not bind its port still reports itself started (the error is
# only in its log): its clients would reach whatever holds the port.
check_listeners() {
  local p
  for p in "$AMQPS_PORT" "$MGMT_PORT"; do
    rabbitmq-diagnostics -q -n "$NODE" check_port_listener "$p" >/dev/null 2>&1 \
      || node_failed "it is up but does not listen on port $p"
  done
}

# Ends the script with the node's own account of a failed start. Exit status 3 when a port was
# taken (the caller may choose other ports), 1 otherwise.
node_failed() {
  local logs
  # Its errors' first lines (an Erlang term runs over many), then how its log ends.
  logs=$({
    grep -h -E 'BOOT FAILED|Failed to start|reason|eaddrinuse|\[critical\]' "$NODE_DIR"/log/*.log | head -n 10
    echo '…'
    tail -q -n 8 "$NODE_DIR"/log/*.log
  } 2>/dev/null | cut -c1-300 || true)
  printf 'services: FAILED: RabbitMQ node %s did not start: %s; the end of its logs in %s:\n%s\n' \
    "$NODE" "$1" "$NODE_DIR/log" "$logs" >&2
  printf 'services: a foreground start shows configuration errors: RABBITMQ_CONFIG_FILE=%s rabbitmq-server\n' \
    "$NODE_DIR/rabbitmq.conf" >&2
  if grep -qs 'eaddrinuse' "$NODE_DIR"/log/*.log; then exit 3; fi
  exit 1
}

ensure_rabbitmq() {
  ensure_packages rabbitmq-server
  mkdir -p "$NODE_DIR/tls" "$NODE_DIR/log" "$NODE_DIR/mnesia" "$NODE_DIR/crl"
  # Left from the trust-store set-up this replaces: certificates are no longer admitted one by one.
  rm -rf "$NODE_DIR/trust"
  local changed=
  local want
  want=$(write_node_config)
  if [ ! -f "$NODE_DIR/rabbitmq.conf" ] || [ "$(cat "$NODE_DIR/rabbitmq.conf")" != "$want" ]; then
    printf '%s\n' "$want" > "$NODE_DIR/rabbitmq.conf"
    changed=1
  fi
  want=$(write_node_advanced_config)
  if [ ! -f "$NODE_DIR/advanced.config" ] || [ "$(cat "$NODE_DIR/advanced.config")" != "$want" ]; then
    printf '%s\n' "$want" > "$NODE_DIR/advanced.config"
    changed=1
  fi
  local plugins='[rabbitmq_auth_mechanism_ssl,rabbitmq_management].'
  if [ "$(cat "$NODE_DIR/enabled_plugins" 2>/dev/null)" != "$plugins" ]; then
    echo "$plugins" > "$NODE_DIR/enabled_plugins"
    changed=1
  fi
  for f in ca.pem server.pem server.key; do
    if ! cmp -s "$PKI/$f" "$NODE_DIR/tls/$f"; then
      cp "$PKI/$f" "$NODE_DIR/tls/$f"
      changed=1
    fi
  done
  # The broker refuses every client until the CA's CRL is published (crl_check peer: no list,
  # no admission). Publishing keeps what is listed already.
  "$HUB" certs crl --ca "$PKI" --dir "$NODE_DIR/crl" >/dev/null || die "publishing the CRL in $NODE_DIR/crl"
  chown -R rabbitmq:rabbitmq "$NODE_DIR"
  chmod 750 "$NODE_DIR/tls"
  chmod 755 "$NODE_DIR" "$NODE_DIR/crl"
  chmod 640 "$NODE_DIR"/tls/*
  # The hub (root here) publishes revocations into crl/; the node (user rabbitmq) reads them.
  find "$NODE_DIR/crl" -type f -exec chmod 644 {} +
  # The node runs as user rabbitmq and must reach its files through every parent directory.
  chmod o+x "$XJ_DEV_DIR"

  node_env
  if ctl status >/dev/null 2>&1; then
    if [ -n "$changed" ]; then
      say "RabbitMQ node $NODE: configuration or certificates changed, restarting"
      ctl shutdown >/dev/null 2>&1 || true
    else
      say "RabbitMQ node $NODE: running, reused (amqps://localhost:$AMQPS_PORT)"
      return 0
    fi
  fi
  say "RabbitMQ node $NODE: starting (amqps 127.0.0.1:$AMQPS_PORT, management 127.0.0.1:$MGMT_PORT)"
  rm -f "$NODE_DIR/node.pid"  # wait_for_node reads the new VM's pid from it
  rabbitmq-server -detached >/dev/null 2>&1 || die "rabbitmq-server -detached failed"
  wait_for_node
  say "RabbitMQ node $NODE: ready"
}

ensure_broker_users() {
  local pwfile="$XJ_DEV_DIR/mgmt.password"
  if [ ! -s "$pwfile" ]; then
    (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' > "$pwfile")
  fi
  local pw
  pw=$(cat "$pwfile")
  # The management API authenticates with a password; AMQP never does (EXTERNAL only), so
  # this user cannot open an AMQP connection.
  if ! curl -fsS -u "xueji-admin:$pw" "http://127.0.0.1:$MGMT_PORT/api/whoami" >/dev/null 2>&1; then
    say "creating the management user xueji-admin"
    ctl add_user xueji-admin "$pw" >/dev/null 2>&1 || ctl change_password xueji-admin "$pw" >/dev/null
    ctl set_user_tags xueji-admin administrator >/dev/null
    ctl set_permissions -p / xueji-admin '.*' '.*' '.*' >/dev/null
    ctl delete_user guest >/dev/null 2>&1 || true
  fi
  local api="http://127.0.0.1:$MGMT_PORT/api"
  # The hub logs in with its certificate (CN=hub): a user without a password.
  curl -fsS -u "xueji-admin:$pw" -X PUT -H 'content-type: application/json' \
    -d '{"password_hash":"","tags":""}' "$api/users/hub" >/dev/null || die "cannot create broker user hub"
  curl -fsS -u "xueji-admin:$pw" -X PUT "$api/vhosts/xueji" >/dev/null || die "cannot create vhost xueji"
  curl -fsS -u "xueji-admin:$pw" -X PUT -H 'content-type: application/json' \
    -d '{"configure":".*","write":".*","read":".*"}' "$api/permissions/xueji/hub" >/dev/null \
    || die "cannot grant the hub its permissions"
}

# ---------------------------------------------------------------- PostgreSQL
ensure_postgres() {
  if ! command -v pg_lsclusters >/dev/null 2>&1 || [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
    ensure_packages postgresql
  fi
  local line
  line=$(pg_lsclusters -h | head -n 1)
  [ -n "$line" ] || die "no PostgreSQL cluster exists after installing postgresql"
  read -r PG_VERSION PG_CLUSTER PG_PORT PG_STATUS _ <<<"$line"
  if [ "$PG_STATUS" != online ]; then
    say "PostgreSQL $PG_VERSION/$PG_CLUSTER: starting"
    pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" "$PG_CLUSTER" start \
      || die "pg_ctlcluster $PG_VERSION $PG_CLUSTER start failed"
  else
    say "PostgreSQL $PG_VERSION/$PG_CLUSTER on port $PG_PORT: running, reused"
  fi
  local pwfile="$XJ_DEV_DIR/pg.password"
  if [ ! -s "$pwfile" ]; then
    (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' > "$pwfile")
  fi
  PG_PASSWORD=$(cat "$pwfile")
  # Over the local socket as the postgres superuser (peer or trust auth, Debian's defaults).
  runuser -u postgres -- psql -q -p "$PG_PORT" -v ON_ERROR_STOP=1 -d postgres >/dev/null <<SQL || die "cannot create the PostgreSQL role xueji"
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'xueji') THEN
    CREATE ROLE xueji LOGIN CREATEDB;
  END IF;
END \$\$;
ALTER ROLE xueji WITH LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
SQL
  PGPASSWORD="$PG_PASSWORD" psql -q -h 127.0.0.1 -p "$PG_PORT" -U xueji -d postgres -c 'select 1' >/dev/null 2>&1 \
    || die "role xueji cannot log in over TCP on 127.0.0.1:$PG_PORT (check pg_hba.conf allows password or trust for 127.0.0.1)"
}

# Python tools the suite runs against the real processes, pinned, in a venv of their own:
# schemathesis (the adapter's API against its OpenAPI document) and openapi-spec-validator.
PY_TOOLS=(schemathesis==4.32.5 openapi-spec-validator==0.9.0)
ensure_python_tools() {
  local venv="$XJ_DEV_DIR/venv" stamp="$XJ_DEV_DIR/venv/.tools"
  if [ -x "$venv/bin/schemathesis" ] && [ "$(cat "$stamp" 2>/dev/null)" = "${PY_TOOLS[*]}" ]; then
    return
  fi
  say "installing ${PY_TOOLS[*]} into $venv"
  python3 -m venv "$venv" || die "python3 -m venv failed"
  "$venv/bin/pip" install -q --disable-pip-version-check "${PY_TOOLS[@]}" || die "pip install ${PY_TOOLS[*]} failed"
  echo "${PY_TOOLS[*]}" > "$stamp"
}

# ---------------------------------------------------------------- browser tests
# Chromium asks which client certificate to present; this policy makes it present the one
# certificate of the test's NSS database on the local console without asking (Chromium reads
# policies from this directory only).
ensure_browser_policy() {
  local dir=/etc/chromium/policies/managed file=/etc/chromium/policies/managed/xueji-console-tests.json
  local want='{"AutoSelectCertificateForUrls": ["{\"pattern\":\"https://127.0.0.1:*\",\"filter\":{}}"]}'
  mkdir -p "$dir"
  if [ "$(cat "$file" 2>/dev/null)" != "$want" ]; then
    printf '%s' "$want" > "$file"
    say "browser policy written to $file"
  fi
}

write_env() {
  local pw
  pw=$(cat "$XJ_DEV_DIR/mgmt.password")
  cat > "$XJ_DEV_DIR/dev.env" <<EOF
# Written by tests/services.sh; source it to reach the development services.
XJ_DEV_DIR=$XJ_DEV_DIR
XJ_CA_CERT=$PKI/ca.pem
XJ_CA_KEY=$PKI/ca.key
XJ_HUB_CERT=$PKI/hub.pem
XJ_HUB_KEY=$PKI/hub.key
XJ_PKI_DIR=$PKI
XJ_CRL_DIR=$NODE_DIR/crl
XJ_AMQPS_URL=amqps://localhost:$AMQPS_PORT
XJ_RABBIT_NODE=$NODE
XJ_MGMT_URL=http://127.0.0.1:$MGMT_PORT
XJ_MGMT_USER=xueji-admin
XJ_MGMT_PASSWORD=$pw
XJ_PG_URL=postgres://xueji:$PG_PASSWORD@127.0.0.1:$PG_PORT/postgres
XJ_PY_BIN=$XJ_DEV_DIR/venv/bin
EOF
  chmod 600 "$XJ_DEV_DIR/dev.env"
  say "coordinates written to $XJ_DEV_DIR/dev.env"
}

# ---------------------------------------------------------------- instances for fault tests
node_command() { # start|stop|restart|kill|join|delete NAME [AMQPS MGMT DIST | FIRST]  (ports on the first start)
  local action=$1 name=$2
  NODE="$name@localhost"
  NODE_DIR="$XJ_DEV_DIR/nodes/$name"
  if [ "$action" = start ] && [ $# -ge 3 ]; then
    AMQPS_PORT=$3 MGMT_PORT=${4:?management port} DIST_PORT=${5:?distribution port}
    mkdir -p "$NODE_DIR"
    echo "$AMQPS_PORT $MGMT_PORT $DIST_PORT" > "$NODE_DIR/ports"
  elif [ -f "$NODE_DIR/ports" ]; then
    # A node started before (perhaps stopped since) keeps its ports.
    read -r AMQPS_PORT MGMT_PORT DIST_PORT < "$NODE_DIR/ports"
  elif [ "$action" = start ]; then
    die "node start $name: give its AMQPS, management and distribution ports on the first start"
  fi
  node_env
  case "$action" in
    start)
      [ -s "$XJ_DEV_DIR/mgmt.password" ] || die "run 'services.sh up' first"
      ensure_rabbitmq
      ensure_broker_users ;;
    stop) ctl shutdown >/dev/null 2>&1 || true; say "RabbitMQ node $NODE: stopped" ;;
    restart)
      ctl shutdown >/dev/null 2>&1 || true
      rm -f "$NODE_DIR/node.pid"  # wait_for_node reads the new VM's pid from it
      rabbitmq-server -detached >/dev/null 2>&1 || die "rabbitmq-server -detached failed"
      wait_for_node
      say "RabbitMQ node $NODE: restarted" ;;
    kill)
      # A crash: SIGKILL, no shutdown, then started again (quorum queues recover from their logs).
      local pid
      pid=$(cat "$NODE_DIR/node.pid" 2>/dev/null) || die "node kill $name: no pid file (not running?)"
      kill -9 "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      rm -f "$NODE_DIR/node.pid"  # wait_for_node reads the new VM's pid from it
      rabbitmq-server -detached >/dev/null 2>&1 || die "rabbitmq-server -detached failed"
      wait_for_node
      say "RabbitMQ node $NODE: killed and started again" ;;
    join)
      # Makes this (running) node a member of the cluster of node $3: it gives up its own
      # users and vhosts for the cluster's, and reads the CRLs the first node reads, so that
      # one publication revokes on every node.
      local first=${3:?node join NAME FIRST: the name of a node of the cluster}
      local out
      out=$({ ctl stop_app && ctl reset && ctl join_cluster "$first@localhost"; } 2>&1) \
        || die "node $name could not join the cluster of $first: $out"
      rm -rf "$NODE_DIR/crl"
      ln -s "$XJ_DEV_DIR/nodes/$first/crl" "$NODE_DIR/crl"
      ctl start_app >/dev/null
      wait_for_node
      say "RabbitMQ node $NODE: joined the cluster of $first@localhost" ;;
    delete) ctl shutdown >/dev/null 2>&1 || true; rm -rf "$NODE_DIR"; say "RabbitMQ node $NODE: deleted" ;;
    *) die "node: unknown action '$action'" ;;
  esac
}

pg_command() { # start|stop|restart|delete NAME PORT
  local action=$1 name=$2 port=${3:-0}
  local dir="$XJ_DEV_DIR/pg/$name"
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  [ -x "$bin/pg_ctl" ] || die "PostgreSQL server binaries not found (package postgresql)"
  local as_pg=(runuser -u postgres --)
  case "$action" in
    start)
      if [ ! -f "$dir/PG_VERSION" ]; then
        mkdir -p "$dir"
        chown postgres:postgres "$dir"
        chmod 700 "$dir"
        "${as_pg[@]}" "$bin/initdb" -D "$dir" -A trust -U postgres >/dev/null || die "initdb $dir"
      fi
      "${as_pg[@]}" "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=on" start >/dev/null || die "pg_ctl start $dir (see $dir/server.log)"
      say "PostgreSQL $name on 127.0.0.1:$port: started" ;;
    stop) "${as_pg[@]}" "$bin/pg_ctl" -D "$dir" -m fast -w stop >/dev/null 2>&1 || true; say "PostgreSQL $name: stopped" ;;
    restart)
      # Immediate: like a crash; the server recovers from its WAL on start, with the options
      # it was started with (postmaster.opts).
      "${as_pg[@]}" "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -m immediate -w restart >/dev/null \
        || die "pg_ctl restart $dir (see $dir/server.log)"
      say "PostgreSQL $name: restarted" ;;
    delete)
      "${as_pg[@]}" "$bin/pg_ctl" -D "$dir" -m immediate -w stop >/dev/null 2>&1 || true
      rm -rf "$dir"; say "PostgreSQL $name: deleted" ;;
    *) die "pg: unknown action '$action'" ;;
  esac
}

# Removes what tests left behind (databases, vhosts and instances named t + 12 hex digits).
purge_test_leftovers() {
  local n=0
  for d in "$XJ_DEV_DIR"/nodes/t* "$XJ_DEV_DIR"/pg/t*; do
    [ -d "$d" ] || continue
    case "$d" in */nodes/*) node_command delete "$(basename "$d")" >/dev/null ;; *) pg_command delete "$(basename "$d")" >/dev/null ;; esac
    n=$((n + 1))
  done
  if [ -s "$XJ_DEV_DIR/dev.env" ]; then
    # shellcheck disable=SC1091
    . "$XJ_DEV_DIR/dev.env"
    for v in $(curl -fsS -u "$XJ_MGMT_USER:$XJ_MGMT_PASSWORD" "$XJ_MGMT_URL/api/vhosts?columns=name" | grep -o '"name":"t[0-9a-f]\{12\}"' | cut -d'"' -f4); do
      curl -fsS -u "$XJ_MGMT_USER:$XJ_MGMT_PASSWORD" -X DELETE "$XJ_MGMT_URL/api/vhosts/$v" >/dev/null && n=$((n + 1))
    done
    for db in $(psql "$XJ_PG_URL" -tAc "SELECT datname FROM pg_database WHERE datname ~ '^t[0-9a-f]{12}$'"); do
      psql "$XJ_PG_URL" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" && n=$((n + 1))
    done
  fi
  say "removed $n test leftovers"
}

stop_all() {
  node_env
  if ctl status >/dev/null 2>&1; then
    ctl shutdown >/dev/null && say "RabbitMQ node $NODE: stopped"
  else
    say "RabbitMQ node $NODE: not running"
  fi
}

case "${1:-up}" in
  up)
    # prometheus: for promtool, which checks the metrics and the shipped alerting rules.
    # chromium, chromium-driver, libnss3-tools: the console's browser tests (client
    # certificates from an NSS database of the test's own); fonts-wqy-zenhei: Chinese glyphs
    # for their screenshots.
    ensure_packages openssl curl ca-certificates libxml2-utils prometheus python3-venv python3-pip \
      chromium chromium-driver libnss3-tools fonts-wqy-zenhei
    mkdir -p "$XJ_DEV_DIR"
    ensure_browser_policy
    ensure_python_tools
    ensure_pki
    ensure_rabbitmq
    ensure_broker_users
    ensure_postgres
    write_env
    ;;
  stop) stop_all ;;
  purge) purge_test_leftovers ;;
  node) shift; node_command "$@" ;;
  pg) shift; pg_command "$@" ;;
  *) die "unknown command '$1' (use: up | stop | purge | node … | pg …)" ;;
esac
