#!/usr/bin/env bash
# Starts the local PostgreSQL (127.0.0.1:5432, trust auth for postgres) and Mosquitto
# (127.0.0.1:1883, anonymous) the tests talk to, when they are not running, and waits until
# both answer. Debian packages; run as root (the services' own users are switched to).
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 5432; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    version="$(ls /etc/postgresql | sort -V | tail -n1)"
    echo "start-services: starting PostgreSQL $version"
    mkdir -p /var/run/postgresql && chown postgres:postgres /var/run/postgresql 2>/dev/null || true
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
  else
    echo "start-services: PostgreSQL is not running on 127.0.0.1:5432 and no Debian cluster" \
      "(pg_ctlcluster, /etc/postgresql) is installed to start" >&2
    exit 1
  fi
fi

if ! port_open 1883; then
  if [ -x /usr/sbin/mosquitto ]; then
    echo "start-services: starting Mosquitto"
    conf=/etc/mosquitto/mosquitto.conf
    # the Debian config writes its pid and log here, as user mosquitto
    for dir in /run/mosquitto /var/log/mosquitto /var/lib/mosquitto; do
      mkdir -p "$dir"
      chown mosquitto:mosquitto "$dir" 2>/dev/null || true
    done
    if ! grep -qE '^\s*listener\s+1883' "$conf" 2>/dev/null; then
      # a stock Debian config has no such listener; the tests want anonymous 127.0.0.1:1883
      # (what the machine image configures)
      conf=/etc/mosquitto/gps-monitor-tests.conf
      printf 'listener 1883 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location /var/lib/mosquitto/\n' > "$conf"
    fi
    /usr/sbin/mosquitto -d -c "$conf"
  else
    echo "start-services: Mosquitto is not running on 127.0.0.1:1883 and /usr/sbin/mosquitto" \
      "is not installed (scripts/install-system.sh installs it)" >&2
    exit 1
  fi
fi

for _ in $(seq 1 100); do
  if port_open 5432 && port_open 1883; then
    if ! command -v pg_isready >/dev/null || pg_isready -q -h 127.0.0.1 -p 5432; then
      exit 0
    fi
  fi
  sleep 0.2
done
echo "start-services: PostgreSQL (5432) or Mosquitto (1883) did not come up within 20 s" >&2
exit 1
