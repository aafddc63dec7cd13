// Package cluster runs a data directory's intake on NATS JetStream, so that
// several gateways share one replicated intake: an ingest on any node is
// acknowledged once a quorum of the stream's replicas holds it, and each
// webhook's events are applied to an event DB and delivered by the one node
// that owns its partition. When that node is lost, another takes its
// partitions and goes on from the stream: what the lost node had not
// finished is handed out again (at least once).
//
// It knows nothing of Caddy: caddymodule parses the `cluster` and `nats`
// global options into Options, and datadir uses a Cluster in place of its
// intake.db.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Options are a node's cluster settings: Caddyfile
//
//	webhooker {
//		cluster {
//			node           <name>
//			listen         <host:port>
//			cluster_listen <host:port>
//			cluster_advertise <host:port>
//			routes         <host:port>...
//			replicas       <n>
//			secret         <shared secret>
//		}
//	}
//
// or `nats <url>` (URL) to use a NATS cluster run elsewhere instead of
// the embedded server.
type Options struct {
	// Node is this node's name, unique in the cluster.
	Node string `json:"node,omitempty"`
	// Listen is the embedded server's client address, where this node's
	// own connection goes: a loopback address, as it has no
	// authentication (default: 127.0.0.1 on a port of the system's choice).
	Listen string `json:"listen,omitempty"`
	// ClusterListen is the embedded server's route address, where the
	// other nodes connect.
	ClusterListen string `json:"cluster_listen,omitempty"`
	// ClusterAdvertise is the route address the other nodes are told to
	// reach this node at, when it is not ClusterListen (a port mapped by
	// a container or a proxy, a listener on 0.0.0.0). Give the same in the
	// other nodes' Routes: a node told of one it has no route to connects
	// there.
	ClusterAdvertise string `json:"cluster_advertise,omitempty"`
	// Routes are the other nodes' route addresses.
	Routes []string `json:"routes,omitempty"`
	// Replicas is the intake stream's replica count (DefaultReplicas when
	// zero).
	Replicas int `json:"replicas,omitempty"`
	// Secret authenticates the routes between the nodes: every node must
	// have the same. Required when ClusterListen is not a loopback
	// address, so that no one who reaches the route port joins the
	// cluster (and reads or writes its events).
	Secret string `json:"secret,omitempty"`
	// TLSCert and TLSKey are this node's certificate and key (PEM files)
	// for its routes, and TLSCA the CA (PEM) that every node's
	// certificate is checked against, both ways: with the three, the
	// routes are encrypted and only nodes holding a certificate of that CA
	// join (tls.go).
	TLSCert string `json:"tls_cert,omitempty"`
	TLSKey  string `json:"tls_key,omitempty"`
	TLSCA   string `json:"tls_ca,omitempty"`
	// URL, when set, is an existing NATS cluster's: no server is embedded.
	URL string `json:"url,omitempty"`
}

// DefaultReplicas: an acknowledged event survives the loss of any one node.
const DefaultReplicas = 3

// Validate checks o as the Caddyfile gave it.
func (o *Options) Validate() error {
	if o.URL != "" {
		u, err := url.Parse(o.URL)
		if err != nil || u.Host == "" {
			return fmt.Errorf("nats %q: not a URL such as nats://host:4222", o.URL)
		}
		if o.Listen != "" || o.ClusterListen != "" || o.ClusterAdvertise != "" || len(o.Routes) > 0 || o.TLSCert != "" || o.TLSKey != "" || o.TLSCA != "" {
			return errors.New("nats <url> uses a NATS cluster run elsewhere: listen, cluster_listen, cluster_advertise, routes and tls_* are for the embedded server")
		}
	} else {
		if o.Node == "" {
			return errors.New("cluster: node <name> is required")
		}
		if !validNodeName(o.Node) {
			return fmt.Errorf("cluster: node %q: letters, digits, '-', '_' and '.' only, at most 64", o.Node)
		}
		if o.ClusterListen == "" {
			return errors.New("cluster: cluster_listen <host:port> is required: the other nodes' routes connect there")
		}
		if len(o.Routes) == 0 {
			return errors.New("cluster: routes <host:port>... is required: the other nodes' cluster_listen addresses (a cluster of one is a single node: leave cluster out)")
		}
		for _, a := range append([]string{o.ClusterListen}, o.Routes...) {
			if _, _, err := splitHostPort(a); err != nil {
				return fmt.Errorf("cluster: %w", err)
			}
		}
		if o.ClusterAdvertise != "" {
			if host, port, err := splitHostPort(o.ClusterAdvertise); err != nil || host == "" || port == 0 {
				return fmt.Errorf("cluster: cluster_advertise %q: the host:port the other nodes reach this node's routes at, with its port", o.ClusterAdvertise)
			}
		}
		if o.Listen != "" {
			host, _, err := splitHostPort(o.Listen)
			if err != nil {
				return fmt.Errorf("cluster: listen %w", err)
			}
			if !isLoopback(host) {
				return fmt.Errorf("cluster: listen %s: the client port takes this node's own connection only and has no authentication: give a loopback address such as 127.0.0.1:4222", o.Listen)
			}
		}
		if (o.TLSCert != "" || o.TLSKey != "" || o.TLSCA != "") && !o.routeTLS() {
			return errors.New("cluster: tls_cert, tls_key and tls_ca go together: this node's certificate and key, and the CA of every node's")
		}
		if host, _, _ := splitHostPort(o.ClusterListen); !isLoopback(host) && o.Secret == "" && !o.routeTLS() {
			return fmt.Errorf("cluster: cluster_listen %s is reachable from other machines: set secret (the same on every node, e.g. {env.WEBHOOKER_CLUSTER_SECRET}), or tls_cert, tls_key and tls_ca, so that only nodes holding it join", o.ClusterListen)
		}
		if o.Secret != "" && len(o.Secret) < minSecretBytes {
			return fmt.Errorf("cluster: secret of %d bytes: at least %d", len(o.Secret), minSecretBytes)
		}
	}
	if o.Replicas < 0 || o.Replicas > 5 {
		return fmt.Errorf("cluster: replicas %d: between 1 and 5 (JetStream's limit)", o.Replicas)
	}
	return nil
}

func (o *Options) replicas() int {
	if o.Replicas == 0 {
		return DefaultReplicas
	}
	return o.Replicas
}

// minSecretBytes: a shared secret shorter than this is guessable.
const minSecretBytes = 16

// isLoopback: an IP literal of the loopback network, or "localhost". Any
// other spelling (a name, "0.0.0.0", "") may reach further.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func validNodeName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

func splitHostPort(a string) (string, int, error) {
	host, p, err := net.SplitHostPort(a)
	if err != nil {
		return "", 0, fmt.Errorf("%q: not host:port", a)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%q: port out of range", a)
	}
	return host, port, nil
}

// Settings are what the data directory decides: where the embedded
// server keeps its files, how large a message may be, the intake's bound.
type Settings struct {
	// StoreDir holds the embedded server's JetStream files.
	StoreDir string
	// MaxMessage bounds one message (the largest body plus its meta).
	MaxMessage int
	// MaxBytes bounds what the intake stream holds: past it, an ingest is
	// refused (503), never dropped.
	MaxBytes int64
	// SyncAlways fsyncs the stream at each write (synchronous full);
	// otherwise replication is the durability, and files sync every two
	// minutes (NATS's default).
	SyncAlways bool
	Logger     *zap.Logger
}

// Cluster is a node's part in the cluster: its embedded server (if any),
// its connection, and the partitions it owns.
type Cluster struct {
	opts Options
	set  Settings
	log  *zap.Logger

	srv *server.Server // nil with `nats <url>`
	nc  *nats.Conn
	js  jetstream.JetStream

	// ready is closed once the stream and its consumers exist.
	ready  chan struct{}
	stream atomic.Pointer[jetstream.Stream]
	// dedup are the dedup buckets (dedup.go), made on first use.
	dedup   [len(dedupBuckets)]atomic.Pointer[jetstream.KeyValue]
	dedupMu sync.Mutex
	// now is the clock of dedup windows.
	now func() time.Time
	// config is the configuration log (config.go).
	config atomic.Pointer[jetstream.Stream]
	// consume is closed by Consume: this node may take partitions.
	consume     chan struct{}
	consumeOnce sync.Once

	owner *owner
	// readSub answers the other nodes' reads (ServeReads).
	readSub *nats.Subscription
	// changes are the webhooks changed here, for the other nodes' pages;
	// changedSub hears theirs (changes.go).
	changes    changeRelay
	changedSub *nats.Subscription

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	published, duplicates atomic.Uint64
	// configChanges counts the changes this node appended to the
	// configuration log.
	configChanges atomic.Uint64
}

const (
	streamName    = "WEBHOOKER_INTAKE"
	subjectPrefix = "webhooker.intake"
	clusterName   = "webhooker"
	routeUser     = "webhooker"
)

// Start starts the embedded server (unless URL is set), connects to it,
// and sets up the intake stream and its consumers in the background: a
// replicated stream needs its quorum of nodes up, and until then an
// ingest is refused with ErrNotReady. apply is what the owner of a
// partition does with each of its messages, from Consume on.
func Start(opts Options, set Settings, apply Applier) (*Cluster, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if set.Logger == nil {
		set.Logger = zap.NewNop()
	}
	c := &Cluster{opts: opts, set: set, log: set.Logger, ready: make(chan struct{}), consume: make(chan struct{}), now: time.Now,
		changes: changeRelay{pending: make(map[string]struct{}), wake: make(chan struct{}, 1)}}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	url := opts.URL
	if url == "" {
		srv, err := c.startServer()
		if err != nil {
			return nil, err
		}
		c.srv = srv
		url = srv.ClientURL()
	}
	name := opts.Node
	if name == "" {
		name = "webhooker"
	}
	connOpts := []nats.Option{nats.Name("webhooker " + name), nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true), nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				c.log.Warn("disconnected from NATS", zap.Error(err))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { c.log.Info("reconnected to NATS", zap.String("url", nc.ConnectedUrl())) })}
	if c.srv != nil {
		// Its own server, never another node's client port (loopback
		// there too: another machine's addresses mean nothing here).
		connOpts = append(connOpts, nats.IgnoreDiscoveredServers())
	}
	nc, err := nats.Connect(url, connOpts...)
	if err != nil {
		c.shutdownServer()
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	c.nc = nc
	if c.js, err = jetstream.New(nc); err != nil {
		c.Close()
		return nil, err
	}
	c.owner = newOwner(c, apply)
	c.wg.Add(1)
	go c.setUp()
	return c, nil
}

// startServer starts this node's embedded nats-server with JetStream,
// routed to the other nodes.
func (c *Cluster) startServer() (*server.Server, error) {
	o := c.opts
	host, port := "127.0.0.1", server.RANDOM_PORT
	if o.Listen != "" {
		var err error
		if host, port, err = splitHostPort(o.Listen); err != nil {
			return nil, err
		}
	}
	chost, cport, err := splitHostPort(o.ClusterListen)
	if err != nil {
		return nil, err
	}
	routes := make([]*url.URL, len(o.Routes))
	for i, r := range o.Routes {
		routes[i] = &url.URL{Scheme: "nats-route", Host: r}
		if o.Secret != "" {
			routes[i].User = url.UserPassword(routeUser, o.Secret)
		}
	}
	maxPayload := c.set.MaxMessage
	if maxPayload > 64<<20 {
		return nil, fmt.Errorf("cluster: a message of %d bytes is over NATS's limit of 64 MiB: lower max_body_size", maxPayload)
	}
	sopts := &server.Options{
		ServerName: o.Node,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   c.set.StoreDir,
		SyncAlways: c.set.SyncAlways,
		MaxPayload: int32(max(maxPayload, 1<<20)),
		Routes:     routes,
		NoSigs:     true,
		Cluster: server.ClusterOpts{
			Name:      clusterName,
			Host:      chost,
			Port:      cport,
			Advertise: o.ClusterAdvertise,
		},
	}
	if o.Secret != "" {
		sopts.Cluster.Username, sopts.Cluster.Password = routeUser, o.Secret
	}
	if o.routeTLS() {
		cfg, err := o.routeTLSConfig()
		if err != nil {
			return nil, err
		}
		sopts.Cluster.TLSConfig, sopts.Cluster.TLSTimeout = cfg, routeTLSTimeout.Seconds()
	}
	if abs, err := filepath.Abs(c.set.StoreDir); err == nil {
		sopts.StoreDir = abs
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("cluster: NATS server: %w", err)
	}
	fatal := &atomic.Pointer[string]{}
	srv.SetLoggerV2(natsLogger{l: c.log.Named("nats"), fatal: fatal}, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		if f := fatal.Load(); f != nil {
			return nil, fmt.Errorf("cluster: NATS server: %s", *f)
		}
		return nil, fmt.Errorf("cluster: NATS server did not listen within 30s")
	}
	return srv, nil
}

// setUp creates (or updates) the intake stream and the partitions'
// consumers, trying again until the cluster has the quorum it needs, then
// starts consuming.
func (c *Cluster) setUp() {
	defer c.wg.Done()
	wait := 250 * time.Millisecond
	var last string
	for {
		err := c.ensureStream()
		if err == nil {
			break
		}
		if msg := err.Error(); msg != last {
			c.log.Info("intake stream not ready yet: waiting for the cluster's quorum", zap.Error(err))
			last = msg
		}
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
	c.log.Info("intake stream ready", zap.Int("replicas", c.opts.replicas()), zap.Int("partitions", Partitions))
	close(c.ready)
	select {
	case <-c.ctx.Done():
	case <-c.consume:
		c.owner.start()
	}
}

// Consume lets this node take partitions and apply their messages, once
// its configuration is in force: call it after the first one.
func (c *Cluster) Consume() { c.consumeOnce.Do(func() { close(c.consume) }) }

func (c *Cluster) ensureStream() error {
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	maxBytes := c.set.MaxBytes
	if maxBytes <= 0 {
		maxBytes = -1
	}
	st, err := c.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        streamName,
		Description: "caddy-webhooker: acknowledged events not yet finished by their partition's owner",
		Subjects:    []string{subjectPrefix + ".*"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    c.opts.replicas(),
		MaxBytes:    maxBytes,
		Discard:     jetstream.DiscardNew,
		Duplicates:  streamDedup,
		MaxMsgSize:  int32(c.set.MaxMessage),
	})
	if err != nil {
		return err
	}
	for p := range Partitions {
		if _, err := st.CreateOrUpdateConsumer(ctx, consumerConfig(p)); err != nil {
			return fmt.Errorf("consumer of partition %d: %w", p, err)
		}
	}
	if _, err := c.bucket(ctx, 0); err != nil {
		return err
	}
	cfg, err := c.ensureConfigStream(ctx)
	if err != nil {
		return err
	}
	c.config.Store(&cfg)
	c.stream.Store(&st)
	return nil
}

// Close stops consuming, leaving what this node had not finished to be
// handed out again, closes the connection and shuts the embedded server
// down.
func (c *Cluster) Close() error {
	c.cancel()
	if c.readSub != nil {
		_ = c.readSub.Unsubscribe()
	}
	if c.changedSub != nil {
		_ = c.changedSub.Unsubscribe()
	}
	if c.owner != nil {
		c.owner.stop()
	}
	c.wg.Wait()
	if c.nc != nil {
		// Flush the acks of what finished.
		_ = c.nc.FlushTimeout(2 * time.Second)
		c.nc.Close()
	}
	c.shutdownServer()
	return nil
}

func (c *Cluster) shutdownServer() {
	if c.srv != nil {
		c.srv.Shutdown()
		c.srv.WaitForShutdown()
	}
}

// Node is this node's name.
func (c *Cluster) Node() string { return c.opts.Node }

// Ready is closed once the intake stream is set up.
func (c *Cluster) Ready() <-chan struct{} { return c.ready }

// natsLogger hands the embedded server's log to zap, and keeps the fatal
// error that stopped it from starting, for Start's error.
type natsLogger struct {
	l     *zap.Logger
	fatal *atomic.Pointer[string]
}

func (n natsLogger) Noticef(f string, v ...any) { n.l.Info(fmt.Sprintf(f, v...)) }
func (n natsLogger) Warnf(f string, v ...any)   { n.l.Warn(fmt.Sprintf(f, v...)) }
func (n natsLogger) Fatalf(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	n.fatal.Store(&msg)
	n.l.Error(msg)
}
func (n natsLogger) Errorf(f string, v ...any) { n.l.Error(fmt.Sprintf(f, v...)) }
func (n natsLogger) Debugf(f string, v ...any) { n.l.Debug(fmt.Sprintf(f, v...)) }
func (n natsLogger) Tracef(f string, v ...any) { n.l.Debug(fmt.Sprintf(f, v...)) }
