package caddymodule

import (
	"fmt"
	"os"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/webhooker/caddy-webhooker/cluster"
)

// unmarshalCluster parses
//
//	cluster {
//		node           <name>
//		listen         <host:port>
//		cluster_listen <host:port>
//		cluster_advertise <host:port>
//		routes         <host:port>...
//		replicas       <n>
//		secret         <shared secret>
//		tls_cert       <file>
//		tls_key        <file>
//		tls_ca         <file>
//	}
func unmarshalCluster(d *caddyfile.Dispenser) (*cluster.Options, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	o := &cluster.Options{}
	given := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if given[sub] {
			return nil, d.Errf("cluster: %s is set twice: give it once", sub)
		}
		given[sub] = true
		switch sub {
		case "node", "listen", "cluster_listen", "cluster_advertise", "secret", "tls_cert", "tls_key", "tls_ca":
			field := map[string]*string{"node": &o.Node, "listen": &o.Listen, "cluster_listen": &o.ClusterListen,
				"cluster_advertise": &o.ClusterAdvertise, "secret": &o.Secret,
				"tls_cert": &o.TLSCert, "tls_key": &o.TLSKey, "tls_ca": &o.TLSCA}[sub]
			if !d.AllArgs(field) {
				return nil, d.Errf("cluster: %s takes one value", sub)
			}
		case "routes":
			o.Routes = d.RemainingArgs()
			if len(o.Routes) == 0 {
				return nil, d.Errf("cluster: routes takes the other nodes' cluster_listen addresses (host:port ...)")
			}
		case "replicas":
			n, err := intArg(d, 1)
			if err != nil {
				return nil, err
			}
			o.Replicas = n
		default:
			return nil, d.Errf("cluster: unrecognized option %q (node, listen, cluster_listen, cluster_advertise, routes, replicas, secret, tls_cert, tls_key, tls_ca)", sub)
		}
	}
	return o, nil
}

// resolveClusterSecrets replaces the {env.X} placeholders of o's secret,
// NATS URL (which may hold a password) and TLS files ({$X} the Caddyfile
// adapter replaced already): given so, the secret stays out of the JSON
// config Caddy serves at /config/. One that comes out empty is named, with
// the placeholder, never a value.
func resolveClusterSecrets(o *cluster.Options) error {
	repl := caddy.NewReplacer()
	for _, f := range []struct {
		name  string
		value *string
	}{{"secret", &o.Secret}, {"nats", &o.URL}, {"tls_cert", &o.TLSCert}, {"tls_key", &o.TLSKey}, {"tls_ca", &o.TLSCA}} {
		if *f.value == "" {
			continue
		}
		v := repl.ReplaceKnown(*f.value, "")
		if v == "" {
			return fmt.Errorf("cluster: %s %s is empty: set it in the environment Caddy runs in", f.name, *f.value)
		}
		*f.value = v
	}
	return nil
}

// clusterOptions is the cluster mode the config asks for, nil for none:
// `cluster { … }` runs an embedded NATS server per node, `nats <url>` uses
// one run elsewhere (with the cluster block's node and replicas, if any).
func (a *App) clusterOptions() (*cluster.Options, error) {
	if a.Cluster == nil && a.NATS == "" {
		return nil, nil
	}
	o := cluster.Options{}
	if a.Cluster != nil {
		o = *a.Cluster
	}
	if a.NATS != "" {
		o.URL = a.NATS
	}
	if err := resolveClusterSecrets(&o); err != nil {
		return nil, err
	}
	if o.URL != "" && o.Node == "" {
		// Only a name in logs and metrics here.
		if host, err := os.Hostname(); err == nil {
			o.Node = host
		}
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return &o, nil
}

// clusterCollector reports the node's cluster state and counts.
type clusterCollector struct{ data *pooledDir }

var (
	clusterUpDesc = prometheus.NewDesc("caddy_webhooker_cluster_node_up",
		"1 when this node's intake stream is set up and it is connected to NATS: its entrypoints acknowledge events.", []string{"node"}, nil)
	clusterRoutesDesc = prometheus.NewDesc("caddy_webhooker_cluster_routes",
		"Other nodes the embedded NATS server is routed to now (-1 with `nats <url>`).", []string{"node"}, nil)
	clusterOwnedDesc = prometheus.NewDesc("caddy_webhooker_cluster_partitions_owned",
		fmt.Sprintf("Partitions of the webhooks (of %d) pinned to this node: it applies and delivers their events.", cluster.Partitions), []string{"node"}, nil)
	clusterHeldDesc = prometheus.NewDesc("caddy_webhooker_cluster_held_messages",
		"Messages of the intake stream this node applied and awaits the final outcome of every delivery of, before acknowledging them to the stream.", []string{"node"}, nil)
	clusterReleasedDesc = prometheus.NewDesc("caddy_webhooker_cluster_partitions_released_total",
		"Partitions this node let go to a node with fewer (it held more than its share: the partitions over the nodes, rounded up).", []string{"node"}, nil)
	clusterStallsDesc = prometheus.NewDesc("caddy_webhooker_cluster_stalls_total",
		"Times this node's process stood still for more than 5 s (SIGSTOP, a paused VM, swapping): its partitions may have gone to other nodes meanwhile, and what it had received under them is left to those (kind=stale of caddy_webhooker_cluster_messages_total).", []string{"node"}, nil)
	clusterMessagesDesc = prometheus.NewDesc("caddy_webhooker_cluster_messages_total",
		"Intake stream messages by what this node did: published (an ingest), repeat (a dedup id seen within the window), applied (stored here), taken_over (applied here after another node had it: its deliveries may be made twice), repeated (handed out again, already stored here), acked (finished), retried (handed back to try later), malformed (dropped), stale (received under a pin lost while this node stood still: left to the partition's new owner, not delivered twice).",
		[]string{"node", "kind"}, nil)
	clusterConfigAppliedDesc = prometheus.NewDesc("caddy_webhooker_cluster_config_applied",
		"The place in the cluster's configuration log of the last change this node applied: the same on every node once a change made through the API has reached them all.", []string{"node"}, nil)
	clusterConfigChangesDesc = prometheus.NewDesc("caddy_webhooker_cluster_config_changes_total",
		"Configuration changes made through this node's API, by kind: appended (to the cluster's configuration log), conflict (tried again on the newer state because another node's change came first).",
		[]string{"node", "kind"}, nil)
)

func (c clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{clusterUpDesc, clusterRoutesDesc, clusterOwnedDesc, clusterHeldDesc, clusterReleasedDesc, clusterMessagesDesc,
		clusterStallsDesc, clusterConfigAppliedDesc, clusterConfigChangesDesc} {
		ch <- d
	}
}

func (c clusterCollector) Collect(ch chan<- prometheus.Metric) {
	d := c.data.dir.Load()
	if d == nil || d.Cluster() == nil {
		return
	}
	f := d.Cluster().Figures()
	up := 0.0
	if f.Ready && f.Connected {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(clusterUpDesc, prometheus.GaugeValue, up, f.Node)
	ch <- prometheus.MustNewConstMetric(clusterRoutesDesc, prometheus.GaugeValue, float64(f.Routes), f.Node)
	ch <- prometheus.MustNewConstMetric(clusterOwnedDesc, prometheus.GaugeValue, float64(f.PartitionsOwned), f.Node)
	ch <- prometheus.MustNewConstMetric(clusterHeldDesc, prometheus.GaugeValue, float64(f.Held), f.Node)
	ch <- prometheus.MustNewConstMetric(clusterReleasedDesc, prometheus.CounterValue, float64(f.Released), f.Node)
	ch <- prometheus.MustNewConstMetric(clusterStallsDesc, prometheus.CounterValue, float64(f.Stalls), f.Node)
	for kind, n := range map[string]uint64{
		"published": f.Published, "repeat": f.Repeats, "applied": f.Applied, "taken_over": f.TakenOver,
		"repeated": f.Repeated, "acked": f.Acked, "retried": f.Retried, "malformed": f.Malformed, "stale": f.Stale,
	} {
		ch <- prometheus.MustNewConstMetric(clusterMessagesDesc, prometheus.CounterValue, float64(n), f.Node, kind)
	}
	applied, conflicts := d.ConfigLogFigures()
	ch <- prometheus.MustNewConstMetric(clusterConfigAppliedDesc, prometheus.GaugeValue, float64(applied), f.Node)
	ch <- prometheus.MustNewConstMetric(clusterConfigChangesDesc, prometheus.CounterValue, float64(f.ConfigChanges), f.Node, "appended")
	ch <- prometheus.MustNewConstMetric(clusterConfigChangesDesc, prometheus.CounterValue, float64(conflicts), f.Node, "conflict")
}
