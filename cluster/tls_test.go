package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// testCA makes a CA and, for each name, a certificate for 127.0.0.1 that it
// signed, written as PEM files in dir: ca.pem, <name>.pem, <name>-key.pem.
func testCA(t *testing.T, dir string, names ...string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", caDER)
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range names {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		c := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
		der, err := x509.CreateCertificate(rand.Reader, c, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, filepath.Join(dir, name+".pem"), "CERTIFICATE", der)
		kb, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, filepath.Join(dir, name+"-key.pem"), "EC PRIVATE KEY", kb)
	}
}

func writePEM(t *testing.T, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// withTLS is o with the certificate of name in dir.
func withTLS(o Options, dir, name string) Options {
	o.TLSCert, o.TLSKey, o.TLSCA = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"), filepath.Join(dir, "ca.pem")
	return o
}

// TestRoutesOverTLSTakeOnlyTheCAsNodes: with tls_cert, tls_key and tls_ca
// the routes run over TLS, both ends checked against the CA: a node with
// a certificate of another CA, or with no TLS, is refused; one of the CA
// joins, and the cluster's stream is set up over the route.
func TestRoutesOverTLSTakeOnlyTheCAsNodes(t *testing.T) {
	good, other := t.TempDir(), t.TempDir()
	testCA(t, good, "a", "b")
	testCA(t, other, "x")
	core, logs := observer.New(zap.InfoLevel)
	aRoute, bRoute := freeAddr(t), freeAddr(t)
	set := func(l *zap.Logger) Settings { return Settings{StoreDir: t.TempDir(), MaxMessage: 1 << 20, Logger: l} }
	a, err := Start(withTLS(Options{Node: "a", ClusterListen: aRoute, Routes: []string{bRoute}, Replicas: 1}, good, "a"),
		set(zap.New(core)), newFakeApplier())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for _, intruder := range []Options{
		withTLS(Options{Node: "x", ClusterListen: freeAddr(t), Routes: []string{aRoute}, Replicas: 1}, other, "x"),
		{Node: "plain", ClusterListen: freeAddr(t), Routes: []string{aRoute}, Replicas: 1},
	} {
		c, err := Start(intruder, set(nil), newFakeApplier())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	deadline := time.Now().Add(30 * time.Second)
	for logs.FilterMessageSnippet("TLS").Len() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the routes of another CA and without TLS were not refused; a's log:\n%v", logs.All())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := a.Figures().Routes; n != 0 {
		t.Fatalf("a is routed to %d servers after refusing them", n)
	}
	b, err := Start(withTLS(Options{Node: "b", ClusterListen: bRoute, Routes: []string{aRoute}, Replicas: 1}, good, "b"),
		set(nil), newFakeApplier())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	waitReady(t, a, "a, over the TLS route")
	if n := a.Figures().Routes; n != 1 {
		t.Fatalf("a routed to %d, want b only", n)
	}
}

func TestRouteTLSOptionsGoTogether(t *testing.T) {
	o := Options{Node: "a", ClusterListen: "10.0.0.1:6222", Routes: []string{"10.0.0.2:6222"}, TLSCert: "a.pem", TLSKey: "a-key.pem"}
	if err := o.Validate(); err == nil {
		t.Fatal("tls_cert and tls_key without tls_ca: valid")
	}
	o.TLSCA = "ca.pem"
	if err := o.Validate(); err != nil {
		t.Fatalf("an off-loopback route port with TLS and no secret: %v", err)
	}
	o.URL, o.ClusterListen, o.Routes = "nats://n:4222", "", nil
	if err := o.Validate(); err == nil {
		t.Fatal("tls_* beside nats <url>: valid")
	}
}

// TestRouteTLSFilesThatDoNotServeAreNamed: a missing certificate, a key
// that is not its own, and a CA file without a certificate are refused at
// start, each naming the file.
func TestRouteTLSFilesThatDoNotServeAreNamed(t *testing.T) {
	dir := t.TempDir()
	testCA(t, dir, "a", "b")
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := withTLS(Options{Node: "a", ClusterListen: freeAddr(t), Routes: []string{freeAddr(t)}, Replicas: 1}, dir, "a")
	for name, c := range map[string]struct {
		change func(o *Options)
		want   string
	}{
		"missing certificate": {func(o *Options) { o.TLSCert = filepath.Join(dir, "missing.pem") }, "missing.pem"},
		"another's key":       {func(o *Options) { o.TLSKey = filepath.Join(dir, "b-key.pem") }, "private key does not match"},
		"CA without PEM":      {func(o *Options) { o.TLSCA = notPEM }, "not.pem: no PEM certificate in it"},
	} {
		o := base
		c.change(&o)
		cl, err := Start(o, Settings{StoreDir: t.TempDir(), MaxMessage: 1 << 20}, newFakeApplier())
		if err == nil {
			cl.Close()
			t.Errorf("%s: started", name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want it to say %q", name, err, c.want)
		}
	}
}
