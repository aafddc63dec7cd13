// Command bench is the benchmark and reliability harness of caddy-webhooker.
//
//	go run ./bench [-short] [-checks delivery,idle,...] [-json summary.json]
//
// It builds Caddy with the plugin once (go build ./cmd/caddy), runs each
// check against that binary on loopback (a fresh data_dir in a temp dir per
// check, free ports, admin endpoint on its own port, http targets served by
// this process), prints one table and, with -json, writes the same figures
// as JSON. Load comes from vegeta, used as a library. Correctness checks
// make the command exit non-zero when they fail; performance figures are
// reported, not asserted. See bench/README.md.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// config holds the flags.
type config struct {
	short    bool
	checks   string
	jsonOut  string
	bin      string
	rev      string
	keep     bool
	loadConn int

	deliveryRate     int
	deliveryDuration time.Duration
	drainTimeout     time.Duration

	idleWebhooks int
	idleDuration time.Duration

	memoryEvents  int
	memoryBody    int
	memoryConns   int
	memoryBreaker string

	ingestDuration time.Duration

	crashRounds int
	crashRate   int

	reloads      int
	reloadRate   int
	reloadPeriod time.Duration

	retryFailures   int
	retryBackoff    time.Duration
	retryBackoffMax time.Duration
	retryEvents     int

	manyWebhooks int
	manyDuration time.Duration

	rateLimitRate   int
	rateLimitEvents int
}

// shortValues are the -short defaults of the flags not given explicitly.
var shortValues = map[string]string{
	"delivery-duration": "10s",
	"idle-duration":     "20s",
	"memory-events":     "2000",
	"ingest-duration":   "5s",
	"crash-rounds":      "2",
	"reloads":           "10",
	"retry-events":      "2",
	"many-webhooks":     "2000",
	"many-duration":     "3s",
	"ratelimit-events":  "300",
}

// check is one row group of the table.
type check struct {
	name string
	kind string // "correctness" (asserted) or "performance" (reported)
	what string
	run  func(*env, *result) error
}

var checks = []check{
	{"delivery", "correctness", "ack-to-target latency and delivery rate at a fixed ingest rate", checkDelivery},
	{"idle", "performance", "CPU of an idle Caddy with many declared webhooks", checkIdle},
	{"memory", "correctness", "RSS with a down target and a large backlog; then everything is delivered", checkMemory},
	{"ingest", "performance", "ingest vs respond 200 at full speed, 1 KiB and 64 KiB bodies", checkIngest},
	{"ingest-filter", "performance", "ingest at full speed without and with a target filter, 1 KiB and 64 KiB bodies", checkIngestFilter},
	{"crash", "correctness", "SIGKILL under load, restart: no acknowledged event lost", checkCrash},
	{"reload", "correctness", "config reloads through the admin API under load", checkReload},
	{"retry", "correctness", "retry attempts against the configured backoff", checkRetry},
	{"many", "performance", "startup, fds, RSS and spread ingest with many webhooks", checkMany},
	{"ratelimit", "correctness", "a rate-limited target's arrival rate while events come in far faster", checkRateLimit},
}

func main() {
	var cfg config
	names := make([]string, len(checks))
	for i, c := range checks {
		names[i] = c.name
	}
	flag.BoolVar(&cfg.short, "short", false, "small sizes and durations: everything within a few minutes")
	flag.StringVar(&cfg.checks, "checks", strings.Join(names, ","), "comma-separated checks to run, in this order")
	flag.StringVar(&cfg.jsonOut, "json", "", "write a machine-readable summary to this file")
	flag.StringVar(&cfg.bin, "bin", "", "use this caddy binary instead of building ./cmd/caddy")
	flag.StringVar(&cfg.rev, "rev", "", "build this git revision (e.g. HEAD) instead of the working tree")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the temp dirs (data dirs, Caddyfiles, caddy logs)")
	flag.StringVar(&synchronous, "synchronous", "", "webhooker synchronous option for every check: full (the default) or normal")
	flag.IntVar(&cfg.loadConn, "conns", 64, "connections (vegeta workers) for full-speed load")

	flag.IntVar(&cfg.deliveryRate, "delivery-rate", 500, "delivery: ingest rate, events/s")
	flag.DurationVar(&cfg.deliveryDuration, "delivery-duration", 20*time.Second, "delivery: ingest duration")
	flag.DurationVar(&cfg.drainTimeout, "drain-timeout", 2*time.Minute, "delivery, crash, reload: how long acknowledged events may take to reach the target")

	flag.IntVar(&cfg.idleWebhooks, "idle-webhooks", 1000, "idle: declared webhooks")
	flag.DurationVar(&cfg.idleDuration, "idle-duration", 60*time.Second, "idle: measured idle time")

	flag.IntVar(&cfg.memoryEvents, "memory-events", 10000, "memory: events ingested while the target is down")
	flag.IntVar(&cfg.memoryBody, "memory-body", 1<<20, "memory: body size in bytes")
	flag.IntVar(&cfg.memoryConns, "memory-conns", 8, "memory: ingest connections")
	flag.StringVar(&cfg.memoryBreaker, "memory-breaker", "5 5s", "memory: the target's breaker option (threshold cooldown)")

	flag.DurationVar(&cfg.ingestDuration, "ingest-duration", 20*time.Second, "ingest: duration of each run")

	flag.IntVar(&cfg.crashRounds, "crash-rounds", 5, "crash: SIGKILL rounds")
	flag.IntVar(&cfg.crashRate, "crash-rate", 500, "crash: ingest rate, events/s")

	flag.IntVar(&cfg.reloads, "reloads", 20, "reload: config reloads")
	flag.IntVar(&cfg.reloadRate, "reload-rate", 500, "reload: ingest rate, events/s")
	flag.DurationVar(&cfg.reloadPeriod, "reload-period", 500*time.Millisecond, "reload: time between reloads")

	flag.IntVar(&cfg.retryFailures, "retry-failures", 4, "retry: attempts the target fails before it accepts")
	flag.DurationVar(&cfg.retryBackoff, "retry-backoff", 200*time.Millisecond, "retry: the target's initial backoff")
	flag.DurationVar(&cfg.retryBackoffMax, "retry-backoff-max", 2*time.Second, "retry: the target's backoff cap")
	flag.IntVar(&cfg.retryEvents, "retry-events", 5, "retry: events sent")

	flag.IntVar(&cfg.manyWebhooks, "many-webhooks", 10000, "many: declared webhooks")
	flag.DurationVar(&cfg.manyDuration, "many-duration", 5*time.Second, "many: duration of the spread ingest")
	flag.IntVar(&cfg.rateLimitRate, "ratelimit-rate", 50, "ratelimit: the target's rate_limit, events per second (and burst)")
	flag.IntVar(&cfg.rateLimitEvents, "ratelimit-events", 1000, "ratelimit: events sent")
	flag.Parse()

	if cfg.short {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, v := range shortValues {
			if !set[name] {
				if err := flag.Set(name, v); err != nil {
					panic(err)
				}
			}
		}
	}
	os.Exit(run(&cfg))
}

func run(cfg *config) int {
	var selected []check
	for _, name := range strings.Split(cfg.checks, ",") {
		name = strings.TrimSpace(name)
		i := slices.IndexFunc(checks, func(c check) bool { return c.name == name })
		if i < 0 {
			fmt.Fprintf(os.Stderr, "bench: unknown check %q\n", name)
			return 2
		}
		selected = append(selected, checks[i])
	}

	sum := newSummary(cfg)
	logf("bench: uptime: %s", sum.Machine.Uptime)

	tmp, err := os.MkdirTemp("", "webhooker-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	if !cfg.keep {
		defer os.RemoveAll(tmp)
	} else {
		logf("bench: temp dir %s kept", tmp)
	}
	// An interrupted run takes its Caddy processes down with it.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		killAll()
		if !cfg.keep {
			os.RemoveAll(tmp)
		}
		os.Exit(130)
	}()

	e := &env{cfg: cfg, tmp: tmp, bin: cfg.bin}
	if e.bin == "" {
		started := time.Now()
		e.bin, err = buildCaddy(tmp, cfg.rev)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 2
		}
		logf("bench: built %s in %.1fs", e.bin, time.Since(started).Seconds())
	}
	sum.Binary = e.bin
	switch {
	case cfg.bin != "":
		sum.Machine.Commit = "binary " + cfg.bin
	case cfg.rev != "":
		sum.Machine.Commit = commandOutput("git", "rev-parse", "--short", cfg.rev) + " (-rev " + cfg.rev + ")"
	}

	for _, c := range selected {
		r := &result{Name: c.name, Kind: c.kind, What: c.what, Figures: map[string]any{}}
		logf("== %s: %s", c.name, c.what)
		started := time.Now()
		err := runCheck(e, c, r)
		r.Seconds = time.Since(started).Seconds()
		if err != nil {
			r.Error = err.Error()
		}
		r.finish()
		logf("== %s: %s in %.1fs%s", c.name, r.Status, r.Seconds, errSuffix(r))
		sum.Checks = append(sum.Checks, r)
	}
	killAll()
	sum.finish()

	fmt.Println()
	sum.printTable(os.Stdout)
	if cfg.jsonOut != "" {
		if err := sum.writeJSON(cfg.jsonOut); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 2
		}
		abs, _ := filepath.Abs(cfg.jsonOut)
		fmt.Printf("\nJSON summary: %s\n", abs)
	}
	if !sum.Passed {
		return 1
	}
	return 0
}

// runCheck runs one check, turning a panic into an error.
func runCheck(e *env, c check, r *result) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
		killAll()
	}()
	return c.run(e, r)
}

func errSuffix(r *result) string {
	var parts []string
	if r.Error != "" {
		parts = append(parts, "error: "+r.Error)
	}
	parts = append(parts, r.Failures...)
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, "; ") + ")"
}

// logf writes progress to stderr, with the time.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// env is what checks share: the flags, the binary, the temp dir.
type env struct {
	cfg *config
	tmp string
	bin string
}

// dir makes a fresh directory for a check (its Caddyfile, data dir, logs).
func (e *env) dir(name string) string {
	d, err := os.MkdirTemp(e.tmp, name+"-")
	if err != nil {
		panic(err)
	}
	return d
}

// start runs Caddy on s in dir and waits until a POST to the entrypoint
// probeKey answers 200 (for a plain site: any /hooks/ path). It returns
// the time from exec to that answer.
func (e *env) start(dir string, s site, probeKey string, timeout time.Duration) (*caddyProc, time.Duration, error) {
	p, err := startCaddy(e.bin, dir, s.caddyfile())
	if err != nil {
		return nil, 0, err
	}
	probe := jsonBody(64)
	ready, err := p.waitReady(timeout, func() bool { return postOK(s.url(probeKey), probe) })
	if err != nil {
		p.kill()
		return nil, 0, err
	}
	return p, ready, nil
}
