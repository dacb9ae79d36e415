#!/bin/sh
# Writes the service users' passwords into the broker's password file (hashed by
# mosquitto_passwd), keeping every other user (the terminals) already in it.
# Run by the one-shot `mosquitto-users` service of docker-compose.yml before the broker starts;
# the passwords come from .env (MQTT_INGEST_PASSWORD, MQTT_RULES_PASSWORD, MQTT_NOTIFY_PASSWORD,
# MQTT_WEB_PASSWORD, MQTT_JT808_PASSWORD, MQTT_HEALTHCHECK_PASSWORD).
#   PASSWD_FILE  the file to write (default /mosquitto/passwd/passwd)
set -eu
file="${PASSWD_FILE:-/mosquitto/passwd/passwd}"
mkdir -p "$(dirname "$file")"
[ -f "$file" ] || : > "$file"
chmod 0600 "$file"
for user in ingest rules notify web jt808 healthcheck; do
  var="MQTT_$(echo "$user" | tr 'a-z' 'A-Z')_PASSWORD"
  eval "password=\${$var:-}"
  if [ -z "$password" ]; then
    echo "make-passwd: $var is not set: expected the MQTT password of service user '$user'" >&2
    exit 1
  fi
  mosquitto_passwd -b "$file" "$user" "$password"
done
if id mosquitto >/dev/null 2>&1; then
  chown mosquitto:mosquitto "$file"
fi
echo "make-passwd: $(wc -l < "$file") users in $file"
