# shellcheck shell=bash
# Sourced by benches/load.sh: Apache httpd 2.4 (Debian's apache2) with mod_auth_openidc
# as an OpenID Connect relying party in front of the bench upstream, from a standalone
# httpd.conf (nothing under /etc/apache2 is read or changed).
#
# apache_oidc_conf DIR HTTP_PORT HTTPS_PORT UPSTREAM_PORT ISSUER CA CERT KEY THREADS
#   writes DIR/httpd.conf: one event-MPM child (ServerLimit 1, StartServers 1) with
#   THREADS threads; mod_auth_openidc with server-side sessions in its shared-memory
#   cache, trusting the test CA for the provider; mod_proxy_http to the upstream with
#   pooled keep-alive connections; HTTP on HTTP_PORT and TLS (mod_ssl) on HTTPS_PORT.
#   No access log (mod_log_config is not loaded). The client is "apache-bench",
#   secret in $APACHE_OIDC_SECRET; redirect URI /redirect_uri on either port.
# apache_oidc_client HTTP_PORT HTTPS_PORT: the provider's client entry for it (JSON,
#   with a leading comma, for OIDC_EXTRA_CLIENTS).

APACHE_MODULES=/usr/lib/apache2/modules
APACHE_OIDC_SECRET=secret-of-apache-0123456789

apache_oidc_client() {
  printf ',{"client_id":"apache-bench","client_secret":"%s","token_endpoint_auth_method":"client_secret_basic","redirect_uris":["http://127.0.0.1:%s/redirect_uri","https://127.0.0.1:%s/redirect_uri"],"grant_types":["authorization_code"]}' \
    "$APACHE_OIDC_SECRET" "$1" "$2"
}

apache_oidc_conf() {
  local dir=$1 port=$2 tls_port=$3 up=$4 issuer=$5 ca=$6 cert=$7 key=$8 threads=$9 m
  mkdir -p "$dir"
  {
    for m in mpm_event authn_core authz_core authz_user auth_openidc proxy proxy_http \
             ssl socache_shmcb; do
      echo "LoadModule ${m}_module $APACHE_MODULES/mod_$m.so"
    done
    cat <<APACHE
ServerRoot "$dir"
DefaultRuntimeDir "$dir"
PidFile "$dir/httpd.pid"
ErrorLog "$dir/error.log"
LogLevel warn
ServerName 127.0.0.1
User www-data
Group www-data
Listen 127.0.0.1:$port
Listen 127.0.0.1:$tls_port

# One child process, its threads serving the connections.
ServerLimit 1
StartServers 1
ThreadLimit $threads
ThreadsPerChild $threads
MaxRequestWorkers $threads
MinSpareThreads 1
MaxSpareThreads $threads
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 75

SSLSessionCache "shmcb:$dir/ssl_scache(512000)"
<VirtualHost 127.0.0.1:$tls_port>
  ServerName 127.0.0.1
  SSLEngine on
  SSLCertificateFile "$cert"
  SSLCertificateKeyFile "$key"
  SSLProtocol -all +TLSv1.2 +TLSv1.3
</VirtualHost>

OIDCProviderMetadataURL $issuer/.well-known/openid-configuration
OIDCCABundlePath "$ca"
OIDCSSLValidateServer On
OIDCClientID apache-bench
OIDCClientSecret $APACHE_OIDC_SECRET
OIDCProviderTokenEndpointAuth client_secret_basic
OIDCPKCEMethod S256
OIDCScope "openid email profile"
OIDCRedirectURI /redirect_uri
OIDCCryptoPassphrase $(head -c 24 /dev/urandom | base64)
OIDCSessionType server-cache
OIDCCacheType shm
OIDCSessionInactivityTimeout 3600

<Location />
  AuthType openid-connect
  Require valid-user
  ProxyPass http://127.0.0.1:$up/
</Location>
APACHE
  } > "$dir/httpd.conf"
  # The child runs as www-data: it reads the CA file (libcurl, at request time) and the
  # runtime directory.
  chown -R www-data:www-data "$dir"
  chmod 755 "$(dirname "$dir")"
  chmod 644 "$ca"
}
