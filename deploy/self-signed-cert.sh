#!/bin/sh
# A self-signed TLS certificate for a first run of nginx (deploy/nginx.conf), until a real one
# (e.g. from Let's Encrypt) takes its place. Browsers warn about it, and HSTS does not stick over
# a certificate they warn about; clients that should trust it can be given cert.pem as their CA.
#
# Usage: deploy/self-signed-cert.sh [DIR [NAME...]]
#   DIR   where cert.pem and key.pem go (default var/tls, which docker-compose.yml's
#         TLS_CERT_FILE/TLS_KEY_FILE of .env.example point at); created 0700, the key 0600
#   NAME  host names and IP addresses the certificate is valid for (default localhost 127.0.0.1
#         ::1); the first is also its common name
# Existing files are kept (delete them to make new ones). Needs openssl (1.1.1 or later).
# The key is ECDSA P-256; the certificate is valid for 90 days.
set -eu
dir=${1:-var/tls}
[ $# -gt 0 ] && shift
[ $# -gt 0 ] || set -- localhost 127.0.0.1 ::1
cert="$dir/cert.pem"
key="$dir/key.pem"
if [ -s "$cert" ] && [ -s "$key" ]; then
  echo "$cert and $key exist; kept"
  exit 0
fi
command -v openssl > /dev/null || { echo "self-signed-cert.sh: openssl is not installed" >&2; exit 1; }

san=""
for name in "$@"; do
  case $name in
    *:* | *[0-9].*[0-9].*[0-9].*[0-9]) entry="IP:$name" ;;
    *) entry="DNS:$name" ;;
  esac
  san="${san:+$san,}$entry"
done

umask 077
mkdir -p "$dir"
# A config of its own, so that the system's openssl.cnf adds no extension (such as CA:TRUE, which
# Firefox refuses on a server certificate).
cat > "$dir/openssl.cnf" << CONFIG
[req]
distinguished_name = name
x509_extensions = server
prompt = no
[name]
CN = $1
[server]
subjectAltName = $san
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
CONFIG
if ! openssl req -x509 -config "$dir/openssl.cnf" -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
     -nodes -days 90 -keyout "$key.tmp" -out "$cert.tmp" 2> "$dir/openssl.log"; then
  cat "$dir/openssl.log" >&2
  rm -f "$key.tmp" "$cert.tmp" "$dir/openssl.cnf" "$dir/openssl.log"
  exit 1
fi
rm -f "$dir/openssl.cnf" "$dir/openssl.log"
mv "$key.tmp" "$key"
chmod 644 "$cert.tmp"
mv "$cert.tmp" "$cert"
echo "self-signed certificate for $* written: $cert (key $key)"
