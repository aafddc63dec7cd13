package caddymodule_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// TestCaddyfileClusterMistakes: every wrong cluster setting is refused at
// its line, and none that would expose the cluster passes: a client port
// off loopback, a route port off loopback without a secret.
func TestCaddyfileClusterMistakes(t *testing.T) {
	checkCaddyfileMistakes(t, []caddyfileMistake{
		{"no node", "cluster {\n\tcluster_listen 127.0.0.1:6222\n}", 3, "cluster: node <name> is required"},
		{"no cluster_listen", "cluster {\n\tnode a\n}", 3, "cluster_listen <host:port> is required"},
		{"no routes", "cluster {\n\tnode a\n\tcluster_listen 127.0.0.1:6222\n}", 3, "routes <host:port>... is required"},
		{"node name with a slash", "cluster {\n\tnode ../a\n\tcluster_listen 127.0.0.1:6222\n\troutes 127.0.0.1:6223\n}", 3, `node "../a": letters, digits`},
		{"listen off loopback", "cluster {\n\tnode a\n\tlisten 0.0.0.0:4222\n\tcluster_listen 127.0.0.1:6222\n\troutes 127.0.0.1:6223\n}", 3,
			"listen 0.0.0.0:4222: the client port takes this node's own connection only"},
		{"listen on a name", "cluster {\n\tnode a\n\tlisten nats.example.com:4222\n\tcluster_listen 127.0.0.1:6222\n\troutes 127.0.0.1:6223\n}", 3,
			"give a loopback address"},
		{"listen on an empty host", "cluster {\n\tnode a\n\tlisten :4222\n\tcluster_listen 127.0.0.1:6222\n\troutes 127.0.0.1:6223\n}", 3,
			"give a loopback address"},
		{"route port reachable without a secret", "cluster {\n\tnode a\n\tcluster_listen 0.0.0.0:6222\n\troutes 10.0.0.2:6222\n}", 3,
			"cluster_listen 0.0.0.0:6222 is reachable from other machines: set secret"},
		{"short secret", "cluster {\n\tnode a\n\tcluster_listen 10.0.0.1:6222\n\troutes 10.0.0.2:6222\n\tsecret abc\n}", 3, "secret of 3 bytes: at least 16"},
		{"tls_cert without tls_ca", "cluster {\n\tnode a\n\tcluster_listen 10.0.0.1:6222\n\troutes 10.0.0.2:6222\n\ttls_cert a.pem\n\ttls_key a-key.pem\n}", 3,
			"tls_cert, tls_key and tls_ca go together"},
		{"tls_ca with nats", "nats nats://n:4222\ncluster {\n\tnode a\n\ttls_ca ca.pem\n}", 4, "listen, cluster_listen, cluster_advertise, routes and tls_* are for the embedded server"},
		{"cluster_advertise with nats", "nats nats://n:4222\ncluster {\n\tnode a\n\tcluster_advertise n1.example.com:6222\n}", 4, "are for the embedded server"},
		{"cluster_advertise without a port", "cluster {\n\tnode a\n\tcluster_listen 127.0.0.1:6222\n\tcluster_advertise n1.example.com\n\troutes 127.0.0.1:6223\n}", 3,
			`cluster_advertise "n1.example.com": the host:port the other nodes reach this node's routes at`},
		{"cluster_advertise without a host", "cluster {\n\tnode a\n\tcluster_listen 127.0.0.1:6222\n\tcluster_advertise :6222\n\troutes 127.0.0.1:6223\n}", 3,
			`cluster_advertise ":6222"`},
		{"cluster_advertise port 0", "cluster {\n\tnode a\n\tcluster_listen 127.0.0.1:6222\n\tcluster_advertise n1:0\n\troutes 127.0.0.1:6223\n}", 3,
			`cluster_advertise "n1:0"`},
		{"route not host:port", "cluster {\n\tnode a\n\tcluster_listen 127.0.0.1:6222\n\troutes 127.0.0.1\n}", 3, `"127.0.0.1": not host:port`},
		{"port out of range", "cluster {\n\tnode a\n\tcluster_listen 127.0.0.1:70000\n\troutes 127.0.0.1:6223\n}", 3, "port out of range"},
		{"replicas over 5", "cluster {\n\tnode a\n\tcluster_listen 127.0.0.1:6222\n\troutes 127.0.0.1:6223\n\treplicas 6\n}", 3, "replicas 6: between 1 and 5"},
		{"replicas 0", "cluster {\n\treplicas 0\n}", 4, "replicas 0: want a whole number, 1 or more"},
		{"routes without a value", "cluster {\n\troutes\n}", 4, "routes takes the other nodes' cluster_listen addresses"},
		{"unknown sub-option", "cluster {\n\tport 4222\n}", 4, `cluster: unrecognized option "port"`},
		{"node twice", "cluster {\n\tnode a\n\tnode b\n}", 5, "cluster: node is set twice"},
		{"secret from an unset environment variable", "cluster {\n\tnode a\n\tcluster_listen 10.0.0.1:6222\n\troutes 10.0.0.2:6222\n\tsecret {env.WEBHOOKER_TEST_UNSET}\n}", 3,
			"cluster: secret {env.WEBHOOKER_TEST_UNSET} is empty: set it in the environment Caddy runs in"},
		{"cluster twice", "cluster {\n\tnode a\n\tcluster_listen 127.0.0.1:6222\n}\ncluster {\n}", 7, "cluster is set twice"},
		{"nats not a URL", "nats nats", 3, `nats "nats": not a URL such as nats://host:4222`},
		{"nats with an embedded server's ports", "nats nats://n:4222\ncluster {\n\tnode a\n\tcluster_listen 127.0.0.1:6222\n}", 4,
			"nats <url> uses a NATS cluster run elsewhere"},
		{"nats without a URL", "nats", 3, "nats takes one URL"},
	})
}

// TestCaddyfileClusterAdapts: the documented block adapts to the JSON
// the app reads, under the same names.
func TestCaddyfileClusterAdapts(t *testing.T) {
	raw, err := adaptWebhooker(t, `{
	webhooker {
		cluster {
			node n1
			listen 127.0.0.1:4222
			cluster_listen 10.0.0.1:6222
			cluster_advertise n1.example.com:16222
			routes 10.0.0.2:6222 10.0.0.3:6222
			replicas 3
			secret 0123456789abcdef0123
		}
	}
}
`)
	if err != nil {
		t.Fatal(err)
	}
	var app struct {
		Cluster struct {
			Node, Listen, ClusterListen, Secret string
			Routes                              []string
			Replicas                            int
		} `json:"cluster"`
	}
	if err := json.Unmarshal(raw, &app); err != nil {
		t.Fatal(err)
	}
	c := app.Cluster
	if c.Node != "n1" || c.Listen != "127.0.0.1:4222" || len(c.Routes) != 2 || c.Routes[1] != "10.0.0.3:6222" ||
		c.Replicas != 3 || c.Secret != "0123456789abcdef0123" {
		t.Fatalf("adapted: %s", raw)
	}
	var withJSONNames map[string]map[string]any
	_ = json.Unmarshal(raw, &withJSONNames)
	if withJSONNames["cluster"]["cluster_listen"] != "10.0.0.1:6222" || withJSONNames["cluster"]["cluster_advertise"] != "n1.example.com:16222" {
		t.Fatalf("cluster_listen or cluster_advertise not under its name: %s", raw)
	}

	// Routes over TLS, which authenticate the nodes: no secret needed.
	raw, err = adaptWebhooker(t, `{
	webhooker {
		cluster {
			node n1
			cluster_listen 10.0.0.1:6222
			routes 10.0.0.2:6222
			tls_cert /etc/webhooker/n1.pem
			tls_key /etc/webhooker/n1-key.pem
			tls_ca /etc/webhooker/ca.pem
		}
	}
}
`)
	if err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(raw, &withJSONNames)
	if c := withJSONNames["cluster"]; c["tls_cert"] != "/etc/webhooker/n1.pem" || c["tls_key"] != "/etc/webhooker/n1-key.pem" || c["tls_ca"] != "/etc/webhooker/ca.pem" {
		t.Fatalf("adapted: %s", raw)
	}
}

// TestDeployClusterCaddyfileAdapts: the compose cluster's Caddyfile adapts
// with a node's environment, and is refused without the secret.
func TestDeployClusterCaddyfileAdapts(t *testing.T) {
	src, err := os.ReadFile("../deploy/cluster/Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("WEBHOOKER_NODE", "webhooker-1")
	t.Setenv("WEBHOOKER_ROUTES", "webhooker-2:6222 webhooker-3:6222")
	t.Setenv("WEBHOOKER_CLUSTER_SECRET", "0123456789abcdef0123456789abcdef")
	raw, err := adaptWebhooker(t, string(src))
	if err != nil {
		t.Fatal(err)
	}
	var app struct {
		Cluster struct {
			Routes []string `json:"routes"`
		} `json:"cluster"`
	}
	if err := json.Unmarshal(raw, &app); err != nil || len(app.Cluster.Routes) != 2 {
		t.Fatalf("routes of the adapted config: %s (%v)", raw, err)
	}
	// The secret is read from the environment when the config is loaded:
	// the JSON config, which Caddy serves at /config/, holds its placeholder.
	if strings.Contains(string(raw), "0123456789abcdef0123456789abcdef") || !strings.Contains(string(raw), "{env.WEBHOOKER_CLUSTER_SECRET}") {
		t.Fatalf("the adapted config holds the secret, or not its placeholder: %s", raw)
	}
	t.Setenv("WEBHOOKER_CLUSTER_SECRET", "")
	if _, err := adaptWebhooker(t, string(src)); err == nil || !strings.Contains(err.Error(), "secret") {
		t.Fatalf("adapted without the secret: %v", err)
	}
}
