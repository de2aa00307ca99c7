#!/bin/sh
# The development PKI of the docker-compose stack, made once by its `pki` service (idempotent).
# Each key is made by a certificate request in the volume of the one container that uses it,
# and never leaves that volume; the CA key lives only in the `ca` volume, mounted by this
# service alone. Public material (CA certificates, issued certificates, the CRL) goes to the
# `public` volume, mounted read-only elsewhere. Never for production: there each key is made
# on its own machine (`hub certs request`, `adapter request`) and signed by the operator.
#
# It also makes the stack's secrets (the database's and the broker management's passwords),
# each into the volume of the containers that use it, and the broker's configuration (the
# templates in /etc/xueji/rabbitmq plus its administrator's credentials).
#
# XJ_ROOT prefixes every path (the suite runs this script outside a container to check the
# stack: tests/tests/compose.rs).
set -eu

R=${XJ_ROOT:-}
CA=$R/pki/ca                 # the exchange CA (key: here only)
LOCAL=$R/pki/ca/local        # a CA for the provincial systems' clients of the adapters' local APIs
PUB=$R/exchange              # public: ca.pem, local-ca.pem, certs/, crl/
CLIENT=$R/client             # bind mount on the host: the user's own client credentials
APP_UID=10001                # the hub and adapter containers' user
RABBIT_UID=999               # the rabbitmq image's user
PG_UID=999                   # the postgres image's user

# secret FILE OWNER: a random password in FILE (owner-only) unless it is there.
secret() {
  [ -s "$1" ] || { umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$1"; }
  chown "$2:$2" "$1"
  chmod 600 "$1"
}
mkdir -p "$R/secrets/hub" "$R/secrets/postgres" "$R/rabbitmq-conf/conf.d"
secret "$R/secrets/postgres/pg_password" "$PG_UID"
secret "$R/secrets/hub/mgmt_password" "$APP_UID"
cp "$R/secrets/postgres/pg_password" "$R/secrets/hub/pg_password"
chown "$APP_UID:$APP_UID" "$R/secrets/hub/pg_password"

# The broker's configuration: TLS-only settings, and the one password user of the management
# API (AMQP refuses it: EXTERNAL only).
cp "$R/etc/xueji/rabbitmq/rabbitmq.conf" "$R/rabbitmq-conf/conf.d/10-exchange.conf"
cp "$R/etc/xueji/rabbitmq/advanced.config" "$R/etc/xueji/rabbitmq/enabled_plugins" "$R/rabbitmq-conf/"
{ echo "default_user = xueji-admin"; echo "default_pass = $(cat "$R/secrets/hub/mgmt_password")"; } \
  > "$R/rabbitmq-conf/conf.d/20-admin.conf"
chown -R "$RABBIT_UID:$RABBIT_UID" "$R/rabbitmq-conf"
chmod 600 "$R/rabbitmq-conf/conf.d/20-admin.conf"

mkdir -p "$PUB/certs" "$PUB/crl" "$CLIENT"
[ -f "$CA/ca.key" ] || hub certs init-ca --out "$CA" --cn "Xueji Exchange Development CA" >/dev/null
[ -f "$LOCAL/ca.key" ] || hub certs init-ca --out "$LOCAL" --cn "Xueji Provincial Systems Development CA" >/dev/null
cp "$CA/ca.pem" "$PUB/ca.pem"
cp "$LOCAL/ca.pem" "$PUB/local-ca.pem"

# sign CA DIR STEM ROLE-ARGS…: signs DIR/STEM.csr into DIR/STEM.pem unless it is there.
sign() {
  ca=$1 dir=$2 stem=$3; shift 3
  [ -f "$dir/$stem.pem" ] || hub certs sign --ca "$ca" --csr "$dir/$stem.csr" --out "$dir/$stem.pem" "$@" >/dev/null
}

# The broker's server certificate.
d=$R/pki/rabbitmq
[ -f "$d/server.key" ] || hub certs request --role server --name rabbitmq --alt rabbitmq --alt localhost --out "$d" --stem server >/dev/null
sign "$CA" "$d" server --role server --name rabbitmq
chown "$RABBIT_UID:$RABBIT_UID" "$d"/server.*

# The hub: its client certificate (CN=hub) and the operator API's server certificate.
d=$R/pki/hub
[ -f "$d/hub.key" ] || hub certs request --role hub --out "$d" --stem hub >/dev/null
sign "$CA" "$d" hub --role hub
[ -f "$d/ops-server.key" ] || hub certs request --role server --name hub --alt hub --alt localhost --out "$d" --stem ops-server >/dev/null
sign "$CA" "$d" ops-server --role server --name hub
chown "$APP_UID:$APP_UID" "$d"/*

# The provinces' adapters: the exchange certificate and the local API's server certificate.
for p in 37 44; do
  d=$R/pki/adapter-$p
  [ -f "$d/prov-$p.key" ] || adapter request --province "$p" --out "$d" >/dev/null
  sign "$CA" "$d" "prov-$p" --role province --province "$p"
  cp "$d/prov-$p.pem" "$PUB/certs/prov-$p.pem"
  [ -f "$d/api.key" ] || hub certs request --role server --name "adapter-$p" --alt "adapter-$p" --alt localhost --out "$d" --stem api >/dev/null
  sign "$LOCAL" "$d" api --role server --name "adapter-$p"
  chown "$APP_UID:$APP_UID" "$d"/*
  # The provincial system's client of that API (the user's, on the host).
  [ -f "$CLIENT/system-$p.key" ] || hub certs request --role province --province "$p" --out "$CLIENT" --stem "system-$p" >/dev/null
  sign "$LOCAL" "$CLIENT" "system-$p" --role province --province "$p"
done

# The user's operator certificate for the operator API (admitted by the provision service).
[ -f "$CLIENT/op-dev.key" ] || hub certs request --role operator --name dev --out "$CLIENT" --stem op-dev >/dev/null
sign "$CA" "$CLIENT" op-dev --role operator --name dev
cp "$CLIENT/op-dev.pem" "$PUB/certs/op-dev.pem"
cp "$PUB/ca.pem" "$PUB/local-ca.pem" "$CLIENT/"

# The revocation list: the broker admits nobody until one is published.
hub certs crl --ca "$CA" --dir "$PUB/crl" >/dev/null
chmod -R a+rX "$PUB"
echo "pki: ready"
