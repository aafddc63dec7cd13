package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/webhooker/caddy-webhooker/admin"
)

// `caddy webhooker-ui` serves the UI of Caddy's admin endpoint on a local
// address a browser can open. Caddy refuses a browser request to its admin
// endpoint that carries Sec-Fetch-Mode but neither Origin nor Referer, which
// is what typing the UI's URL sends. The proxy checks the browser's request
// as Caddy would (Host, Origin, Sec-Fetch-*), then forwards it as a local
// client such as `caddy reload` does: with the admin endpoint's own Host and
// Origin.

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "webhooker-ui",
		Usage: "[--listen <addr>] [--admin <addr> | --config <path> [--adapter <name>]]",
		Short: "Serves the webhooker UI of a running Caddy at a URL a browser can open",
		Long: `
Caddy's admin endpoint refuses a browser's request that names no origin,
such as typing http://localhost:2019/webhooker/ui/ into the address bar.
This command serves the UI and the webhooker API at --listen (a loopback
address, default localhost:2020) and forwards them to the admin endpoint,
refusing cross-site requests as the admin endpoint does. Open the URL it
prints; it runs until interrupted.

The admin endpoint is --admin, else the admin address of --config, else
localhost:2019, as for caddy stop.
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().String("listen", "localhost:2020", "Loopback address to serve the UI on")
			cmd.Flags().String("admin", "", "Address of Caddy's admin endpoint")
			cmd.Flags().StringP("config", "c", "", "Configuration file to read the admin address from, if --admin is not used")
			cmd.Flags().StringP("adapter", "a", "", "Name of config adapter to apply (when --config is used)")
			// The command's context and output, so that a test can run it.
			cmd.RunE = func(cmd *cobra.Command, args []string) error {
				return caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
					return cmdWebhookerUI(cmd.Context(), cmd.OutOrStdout(), fl)
				})(cmd, args)
			}
		},
	})
}

func cmdWebhookerUI(ctx context.Context, out io.Writer, fl caddycmd.Flags) (int, error) {
	adminAddr, err := adminAddress(fl)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	listen := fl.String("listen")
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("--listen %s: %v", listen, err)
	}
	if ip, err := netip.ParseAddr(host); !strings.EqualFold(host, "localhost") && (err != nil || !ip.IsLoopback()) {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("--listen %s: not a loopback address: the UI can change every webhook, so it listens on localhost, 127.0.0.1 or [::1] only", listen)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String()) // the port chosen for :0
	listen = net.JoinHostPort(host, port)

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := &http.Server{Handler: newUIProxy(listen, adminAddr), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(out, "webhooker UI: http://%s%s/ui/\n", listen, admin.Prefix)
	select {
	case err := <-served:
		return caddy.ExitCodeFailedStartup, err
	case <-ctx.Done():
	}
	stop() // a second signal ends the process at once
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return caddy.ExitCodeFailedQuit, err
	}
	return caddy.ExitCodeSuccess, nil
}

// adminAddress is the admin endpoint a command talks to: --admin, else the
// admin address of --config (adapted with --adapter), else localhost:2019,
// as for caddy stop.
func adminAddress(fl caddycmd.Flags) (string, error) {
	adminAddr, err := caddycmd.DetermineAdminAPIAddress(fl.String("admin"), nil, fl.String("config"), fl.String("adapter"))
	if err != nil {
		return "", fmt.Errorf("couldn't determine admin API address: %v", err)
	}
	if _, err := caddy.ParseNetworkAddress(adminAddr); err != nil {
		return "", fmt.Errorf("invalid admin address %s: %v", adminAddr, err)
	}
	return adminAddr, nil
}

// newUIProxy serves the UI and the API under /webhooker/ at listenAddr by
// forwarding them to Caddy's admin endpoint at adminAddr; / redirects to the
// UI and anything else is 404. It refuses with 403 what Caddy's admin
// endpoint would refuse from another site: a Host other than the proxy's
// (DNS rebinding), an Origin (or, without one, a Referer) of another origin,
// Sec-Fetch-Site cross-site, and no-cors mode. A navigation without Origin or
// Referer passes: that is what a typed URL or a bookmark sends.
func newUIProxy(listenAddr, adminAddr string) http.Handler {
	// Caddy's CLI reaches its admin endpoint this way (caddycmd.AdminAPIRequest):
	// a socket has neither Host nor Origin checks, and its "|mode" suffix is
	// not part of the path.
	addr, addrErr := caddy.ParseNetworkAddress(adminAddr)
	dialAddr, adminHost, adminOrigin := addr.JoinHostPort(0), addr.JoinHostPort(0), "http://"+addr.JoinHostPort(0)
	if addr.IsUnixNetwork() || addr.IsFdNetwork() {
		dialAddr, _, _ = strings.Cut(dialAddr, "|")
		adminHost, adminOrigin = "127.0.0.1", ""
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host, pr.Out.Host = "http", adminHost, adminHost
			pr.Out.Header.Del("Origin")
			pr.Out.Header.Del("Referer")
			for name := range pr.Out.Header {
				if strings.HasPrefix(name, "Sec-Fetch-") {
					pr.Out.Header.Del(name)
				}
			}
			if adminOrigin != "" {
				pr.Out.Header.Set("Origin", adminOrigin)
			}
		},
		// A new connection each time: a config load may replace Caddy's
		// admin server and close the kept-alive ones.
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				if addrErr != nil {
					return nil, addrErr
				}
				var d net.Dialer
				return d.DialContext(ctx, addr.Network, dialAddr)
			},
		},
		// Caddy allows its own origin; that is no business of the proxy's.
		ModifyResponse: func(resp *http.Response) error {
			for name := range resp.Header {
				if strings.HasPrefix(name, "Access-Control-") {
					resp.Header.Del(name)
				}
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			writeUIProxyError(w, http.StatusBadGateway, fmt.Sprintf("Caddy's admin endpoint at %s: %v", adminAddr, err))
		},
	}

	mux := http.NewServeMux() // it cleans the path: /webhooker/../load is not forwarded
	mux.Handle(admin.Prefix+"/", proxy)
	mux.Handle("GET /{$}", http.RedirectHandler(admin.Prefix+"/ui/", http.StatusFound))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeUIProxyError(w, http.StatusNotFound, "not found: this address serves "+admin.Prefix+"/ only")
	})

	_, listenPort, _ := net.SplitHostPort(listenAddr)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := checkUIRequest(r, listenAddr, listenPort); err != nil {
			writeUIProxyError(w, http.StatusForbidden, err.Error())
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// checkUIRequest is the proxy's version of the checks of Caddy's admin
// endpoint. Like Caddy for a loopback address, it takes localhost, 127.0.0.1
// and [::1] with the port for one another.
func checkUIRequest(r *http.Request, listenAddr, listenPort string) error {
	hostOK := strings.EqualFold(r.Host, listenAddr)
	for _, h := range []string{"localhost", "127.0.0.1", "::1"} {
		hostOK = hostOK || strings.EqualFold(r.Host, net.JoinHostPort(h, listenPort))
	}
	if !hostOK {
		return fmt.Errorf("host not allowed: %q (open http://%s%s/ui/)", r.Host, listenAddr, admin.Prefix)
	}
	if strings.Contains(r.Header.Get("Sec-Fetch-Mode"), "no-cors") {
		return errors.New("no-cors requests are not allowed")
	}
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return errors.New("cross-site requests are not allowed")
	}
	own := "http://" + r.Host
	if origin, ok := r.Header["Origin"]; ok {
		if len(origin) != 1 || !strings.EqualFold(origin[0], own) {
			return fmt.Errorf("client is not allowed to access from origin %q", strings.Join(origin, ", "))
		}
	} else if referer := r.Header.Get("Referer"); referer != "" {
		u, err := url.Parse(referer)
		if err != nil || !strings.EqualFold(u.Scheme+"://"+u.Host, own) {
			return fmt.Errorf("client is not allowed to access from referer %q", referer)
		}
	}
	return nil
}

func writeUIProxyError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
