package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
	"unicode/utf8"
)

// result is what one check found: rows for the table, figures for the JSON.
type result struct {
	Name     string         `json:"name"`
	Kind     string         `json:"kind"`
	What     string         `json:"what"`
	Status   string         `json:"status"` // PASS, FAIL, ERROR, or "report" for unasserted checks
	Failures []string       `json:"failures,omitempty"`
	Error    string         `json:"error,omitempty"`
	Seconds  float64        `json:"seconds"`
	Figures  map[string]any `json:"figures"`
	Notes    []string       `json:"notes,omitempty"`
	Rows     []row          `json:"rows"`
}

type row struct {
	What  string `json:"what"`
	Value string `json:"value"`
}

func (r *result) row(what, format string, args ...any) {
	r.Rows = append(r.Rows, row{what, fmt.Sprintf(format, args...)})
}

func (r *result) fig(key string, v any) { r.Figures[key] = v }

func (r *result) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.Failures = append(r.Failures, msg)
	logf("   FAIL: %s", msg)
}

func (r *result) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

func (r *result) finish() {
	switch {
	case r.Error != "":
		r.Status = "ERROR"
	case len(r.Failures) > 0:
		r.Status = "FAIL"
	case r.Kind == "correctness":
		r.Status = "PASS"
	default:
		r.Status = "report"
	}
}

// machine describes where the run happened.
type machine struct {
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go_version"`
	Commit    string `json:"commit"`
	Uptime    string `json:"uptime"`
	LoadStart string `json:"load_average_start"`
	LoadEnd   string `json:"load_average_end"`
	Kernel    string `json:"kernel"`
}

type summary struct {
	Started  time.Time      `json:"started"`
	Finished time.Time      `json:"finished"`
	Short    bool           `json:"short"`
	Args     []string       `json:"args"`
	Machine  machine        `json:"machine"`
	Binary   string         `json:"binary"`
	Settings map[string]any `json:"settings"`
	Checks   []*result      `json:"checks"`
	Passed   bool           `json:"passed"`
}

func newSummary(cfg *config) *summary {
	up := commandOutput("uptime")
	m := machine{
		CPUs: runtime.NumCPU(), GoVersion: runtime.Version(),
		Commit: commandOutput("git", "describe", "--always", "--dirty"),
		Uptime: up, LoadStart: loadAverage(up),
		Kernel: commandOutput("uname", "-r"),
	}
	return &summary{
		Started: time.Now(), Short: cfg.short, Args: os.Args[1:], Machine: m,
		Settings: map[string]any{
			"conns": cfg.loadConn, "synchronous": synchronous, "delivery_rate": cfg.deliveryRate, "delivery_duration": cfg.deliveryDuration.String(),
			"idle_webhooks": cfg.idleWebhooks, "idle_duration": cfg.idleDuration.String(),
			"memory_events": cfg.memoryEvents, "memory_body": cfg.memoryBody, "memory_conns": cfg.memoryConns,
			"memory_breaker": cfg.memoryBreaker, "ingest_duration": cfg.ingestDuration.String(),
			"crash_rounds": cfg.crashRounds, "crash_rate": cfg.crashRate,
			"reloads": cfg.reloads, "reload_rate": cfg.reloadRate, "reload_period": cfg.reloadPeriod.String(),
			"retry_failures": cfg.retryFailures, "retry_backoff": cfg.retryBackoff.String(),
			"retry_backoff_max": cfg.retryBackoffMax.String(), "retry_events": cfg.retryEvents,
			"many_webhooks": cfg.manyWebhooks, "many_duration": cfg.manyDuration.String(),
		},
	}
}

func (s *summary) finish() {
	s.Finished = time.Now()
	s.Machine.LoadEnd = loadAverage(commandOutput("uptime"))
	s.Passed = true
	for _, c := range s.Checks {
		if c.Status == "FAIL" || c.Status == "ERROR" {
			s.Passed = false
		}
	}
}

// loadAverage is the "a, b, c" part of uptime's output, else /proc/loadavg.
func loadAverage(uptime string) string {
	if i := strings.Index(uptime, "load average:"); i >= 0 {
		return strings.TrimSpace(uptime[i+len("load average:"):])
	}
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) >= 3 {
		return strings.Join(f[:3], ", ")
	}
	return "?"
}

func commandOutput(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

func (s *summary) printTable(w io.Writer) {
	mode := "full"
	if s.Short {
		mode = "short"
	}
	fmt.Fprintf(w, "caddy-webhooker bench (%s), %s, commit %s, %s, %d CPUs, kernel %s\n",
		mode, s.Started.Format("2006-01-02 15:04 MST"), s.Machine.Commit, s.Machine.GoVersion, s.Machine.CPUs, s.Machine.Kernel)
	fmt.Fprintf(w, "load average (1, 5, 15 min): %s at start, %s at end; machine shared with other work: read figures as proportions\n\n",
		s.Machine.LoadStart, s.Machine.LoadEnd)

	header := []string{"check", "status", "figure", "value"}
	var lines [][]string
	for _, c := range s.Checks {
		first := true
		add := func(what, value string) {
			name, status := "", ""
			if first {
				name, status, first = c.Name, c.Status, false
			}
			lines = append(lines, []string{name, status, what, value})
		}
		for _, r := range c.Rows {
			add(r.What, r.Value)
		}
		for _, f := range c.Failures {
			add("FAILURE", f)
		}
		if c.Error != "" {
			add("ERROR", c.Error)
		}
		if first {
			add("", "")
		}
	}
	width := make([]int, len(header))
	for _, l := range append([][]string{header}, lines...) {
		for i, cell := range l[:3] {
			width[i] = max(width[i], utf8.RuneCountInString(cell))
		}
	}
	pad := func(s string, n int) string { return s + strings.Repeat(" ", n-utf8.RuneCountInString(s)) }
	printLine := func(l []string) {
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", pad(l[0], width[0]), pad(l[1], width[1]), pad(l[2], width[2]), l[3])
	}
	printLine(header)
	fmt.Fprintf(w, "|%s|%s|%s|---|\n", strings.Repeat("-", width[0]+2), strings.Repeat("-", width[1]+2), strings.Repeat("-", width[2]+2))
	for _, l := range lines {
		printLine(l)
	}
	var notes []string
	for _, c := range s.Checks {
		for _, n := range c.Notes {
			notes = append(notes, fmt.Sprintf("- %s: %s", c.Name, n))
		}
	}
	if len(notes) > 0 {
		fmt.Fprintf(w, "\nNotes:\n%s\n", strings.Join(notes, "\n"))
	}
	verdict := "all checks passed"
	if !s.Passed {
		verdict = "SOME CHECKS FAILED"
	}
	fmt.Fprintf(w, "\n%s (%.0fs in all)\n", verdict, s.Finished.Sub(s.Started).Seconds())
}

func (s *summary) writeJSON(path string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Formatting helpers for the table.

func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v < 0 && v > -10 || v >= 0 && v < 10:
		return fmt.Sprintf("%.2f ms", v)
	case v < 1000 && v > -1000:
		return fmt.Sprintf("%.1f ms", v)
	default:
		return fmt.Sprintf("%.2f s", v/1000)
	}
}

func msf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func mib(kb uint64) string { return fmt.Sprintf("%.1f MiB", float64(kb)/1024) }

func mibf(kb uint64) float64 { return float64(kb) / 1024 }

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func round(v float64, digits int) float64 {
	p := 1.0
	for range digits {
		p *= 10
	}
	return float64(int64(v*p+0.5*sign(v))) / p
}

func sign(v float64) float64 {
	if v < 0 {
		return -1
	}
	return 1
}
