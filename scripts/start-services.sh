#!/usr/bin/env bash
# Starts the local PostgreSQL and Mosquitto the tests talk to, when they are not running.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 5432; then
  echo "starting PostgreSQL"
  if command -v pg_ctlcluster >/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start
  else
    echo "PostgreSQL is not running on 127.0.0.1:5432 and pg_ctlcluster is missing" >&2; exit 1
  fi
fi
if ! port_open 1883; then
  echo "starting Mosquitto"
  mosquitto -d -c /etc/mosquitto/mosquitto.conf
fi
for _ in $(seq 1 50); do
  port_open 5432 && port_open 1883 && exit 0
  sleep 0.2
done
echo "PostgreSQL (5432) or Mosquitto (1883) did not come up" >&2
exit 1
