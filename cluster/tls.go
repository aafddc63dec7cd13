package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"
)

// routeTLSTimeout bounds a route's TLS handshake.
const routeTLSTimeout = 3 * time.Second

// routeTLS says whether the routes are to run over TLS (tls_cert, tls_key
// and tls_ca all given).
func (o *Options) routeTLS() bool { return o.TLSCert != "" && o.TLSKey != "" && o.TLSCA != "" }

// routeTLSConfig is the TLS of this node's routes, accepted and dialled
// alike: its own certificate, and every other node's checked against the
// CA (a route dialled checks the server's name or address in it; a route
// accepted requires a certificate).
func (o *Options) routeTLSConfig() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("cluster: tls_cert %s, tls_key %s: %w", o.TLSCert, o.TLSKey, err)
	}
	pem, err := os.ReadFile(o.TLSCA)
	if err != nil {
		return nil, fmt.Errorf("cluster: tls_ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("cluster: tls_ca %s: no PEM certificate in it", o.TLSCA)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}, nil
}
