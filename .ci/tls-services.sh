#!/usr/bin/env bash
# Sourced by .ci/run: the test servers over TLS, with one CI certificate
# authority whose certificate the tests trust as gengate's tls.ca_file.
#
# - a CA and a server certificate for 127.0.0.1 and localhost (made once);
# - PostgreSQL: ssl on with that certificate (reloaded, not restarted);
# - MariaDB: TLS with that certificate (restarted with it when it has none);
# - Redis: a second server on 127.0.0.1:6390 speaking only TLS;
# - moto (S3): a second server on 127.0.0.1:5056 speaking HTTPS.
#
# Exports TEST_TLS_CA, TEST_POSTGRES_TLS_URL, TEST_MYSQL_TLS_URL,
# TEST_REDISS_URL and TEST_S3_TLS_URL. A step that fails stops CI: with
# CI=true the tests would fail anyway, and this says why.

TLS_DIR="${GENGATE_CI_TLS_DIR:-/var/lib/gengate-ci-tls}"

tls_certs() {
  command -v openssl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl; }
  mkdir -p "$TLS_DIR"
  chmod 755 "$TLS_DIR"
  if [ ! -s "$TLS_DIR/server.pem" ]; then
    (
      cd "$TLS_DIR"
      openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=gengate CI CA" \
        -keyout ca.key -out ca.pem \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
      openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server.key -out server.csr 2>/dev/null
      printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' > server.ext
      openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
        -extfile server.ext -out server.pem 2>/dev/null
      chmod 644 ca.pem server.pem
      chmod 600 ca.key server.key
      # Each server reads its own copy of the key, owned by its user.
      if id postgres >/dev/null 2>&1; then
        install -m 600 -o postgres -g postgres server.key pg-server.key
      fi
      if id mysql >/dev/null 2>&1; then
        install -m 600 -o mysql -g mysql server.key mysql-server.key
      fi
    )
  fi
  export TEST_TLS_CA="$TLS_DIR/ca.pem"
}

tls_postgres() {
  local verify="postgres://postgres@127.0.0.1:5432/test?sslmode=verify-full&sslrootcert=$TLS_DIR/ca.pem"
  if ! psql "$verify" -Atqc 'SELECT 1' >/dev/null 2>&1; then
    psql postgres://postgres@127.0.0.1:5432/postgres -q \
      -c "ALTER SYSTEM SET ssl_cert_file = '$TLS_DIR/server.pem'" \
      -c "ALTER SYSTEM SET ssl_key_file = '$TLS_DIR/pg-server.key'" \
      -c "ALTER SYSTEM SET ssl = on" \
      -c "SELECT pg_reload_conf()" >/dev/null
    wait_for "postgresql over TLS" psql "$verify" -Atqc 'SELECT 1'
  fi
  export TEST_POSTGRES_TLS_URL="${TEST_POSTGRES_TLS_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=verify-full}"
}

tls_mariadb() {
  local have
  have=$(mysql -h 127.0.0.1 -uroot -Nse 'SELECT @@have_ssl' 2>/dev/null || echo none)
  if [ "$have" != "YES" ]; then
    # Restarted with the TLS options on its command line: the machine's
    # my.cnf is left as it is, and the next CI run does this again if a
    # plain restart dropped them.
    mysqladmin -h 127.0.0.1 -uroot shutdown
    # The server exits after it stops answering: wait for the process.
    for _ in $(seq 1 120); do pgrep -x mariadbd >/dev/null || break; sleep 0.5; done
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- \
      --ssl-cert="$TLS_DIR/server.pem" --ssl-key="$TLS_DIR/mysql-server.key" --ssl-ca="$TLS_DIR/ca.pem"
    wait_for mariadb mysqladmin -h 127.0.0.1 -uroot ping
    have=$(mysql -h 127.0.0.1 -uroot -Nse 'SELECT @@have_ssl')
    [ "$have" = "YES" ] || { echo "MariaDB did not enable TLS (have_ssl=$have)"; return 1; }
  fi
  export TEST_MYSQL_TLS_URL="${TEST_MYSQL_TLS_URL:-mysql://root@127.0.0.1:3306/test?ssl-mode=VERIFY_IDENTITY}"
}

tls_redis() {
  if ! redis-cli --tls --cacert "$TLS_DIR/ca.pem" -h 127.0.0.1 -p 6390 ping >/dev/null 2>&1; then
    redis-server --port 0 --tls-port 6390 --bind 127.0.0.1 \
      --tls-cert-file "$TLS_DIR/server.pem" --tls-key-file "$TLS_DIR/server.key" \
      --tls-ca-cert-file "$TLS_DIR/ca.pem" --tls-auth-clients no \
      --daemonize yes --save "" --appendonly no --dir /tmp --logfile /tmp/gengate-ci-redis-tls.log
    wait_for "redis over TLS" redis-cli --tls --cacert "$TLS_DIR/ca.pem" -h 127.0.0.1 -p 6390 ping
  fi
  export TEST_REDISS_URL="${TEST_REDISS_URL:-rediss://127.0.0.1:6390}"
}

tls_s3() {
  if ! curl -fsS --cacert "$TLS_DIR/ca.pem" -o /dev/null https://127.0.0.1:5056/ 2>/dev/null; then
    nohup moto_server -H 127.0.0.1 -p 5056 -c "$TLS_DIR/server.pem" -k "$TLS_DIR/server.key" \
      >/tmp/gengate-ci-moto-tls.log 2>&1 &
    wait_for "moto over TLS" curl -fsS --cacert "$TLS_DIR/ca.pem" -o /dev/null https://127.0.0.1:5056/
  fi
  export TEST_S3_TLS_URL="${TEST_S3_TLS_URL:-https://127.0.0.1:5056}"
}
