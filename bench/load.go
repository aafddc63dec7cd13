package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// loadOpts describes one vegeta attack.
type loadOpts struct {
	targeter vegeta.Targeter
	rate     int // requests per second; 0: as fast as workers allow
	workers  int // workers and connections; with rate 0 exactly this many
	duration time.Duration
	count    int // if > 0, stop after this many requests
	timeout  time.Duration
	stop     <-chan struct{} // closing it ends the attack early
}

// loadStats sums up an attack. OK means a 200 answer; an HTTP error is any
// other answer; a connection error is no answer at all (refused, reset,
// timeout).
type loadStats struct {
	Sent, OK, HTTPErrors, ConnErrors int
	Codes                            map[int]int
	Errors                           map[string]int // connection errors by kind
	Begin, End                       time.Time
	latencies                        []time.Duration // of the 200 answers
}

// runLoad runs an attack, calling each (if not nil) for every result as it
// arrives, in this goroutine.
func runLoad(o loadOpts, each func(*vegeta.Result)) *loadStats {
	workers := max(o.workers, 1)
	timeout := o.timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	opts := []func(*vegeta.Attacker){
		vegeta.Workers(uint64(workers)),
		vegeta.Connections(workers),
		vegeta.KeepAlive(true),
		vegeta.Redirects(vegeta.NoFollow),
		vegeta.MaxBody(4 << 10),
		vegeta.Timeout(timeout),
	}
	if o.rate == 0 {
		// vegeta's -rate=0: as fast as a fixed pool of workers goes.
		opts = append(opts, vegeta.MaxWorkers(uint64(workers)), vegeta.MaxConnections(workers))
	}
	atk := vegeta.NewAttacker(opts...)
	if o.stop != nil {
		done := make(chan struct{})
		defer close(done)
		go func() {
			select {
			case <-o.stop:
				atk.Stop()
			case <-done:
			}
		}()
	}
	s := &loadStats{Codes: map[int]int{}, Errors: map[string]int{}}
	var pacer vegeta.Pacer = vegeta.ConstantPacer{Freq: o.rate, Per: time.Second}
	if o.count > 0 {
		pacer = limitPacer{pacer, uint64(o.count)}
	}
	for res := range atk.Attack(o.targeter, pacer, o.duration, "") {
		s.add(res)
		if each != nil {
			each(res)
		}
	}
	return s
}

func (s *loadStats) add(res *vegeta.Result) {
	s.Sent++
	if s.Begin.IsZero() || res.Timestamp.Before(s.Begin) {
		s.Begin = res.Timestamp
	}
	if end := res.End(); end.After(s.End) {
		s.End = end
	}
	switch {
	case res.Code == http.StatusOK:
		s.OK++
		s.latencies = append(s.latencies, res.Latency)
	case res.Code != 0:
		s.HTTPErrors++
	default:
		s.ConnErrors++
		s.Errors[errorKind(res.Error)]++
	}
	s.Codes[int(res.Code)]++
}

// errorKind names a connection-level error without its addresses.
func errorKind(err string) string {
	for _, k := range []string{"server closed idle connection", "connection reset by peer", "connection refused", "broken pipe",
		"Client.Timeout", "deadline exceeded", "timeout", "EOF"} {
		if strings.Contains(err, k) {
			return k
		}
	}
	if len(err) > 60 {
		err = err[:60]
	}
	return err
}

func (s *loadStats) seconds() float64 { return s.End.Sub(s.Begin).Seconds() }

// okRate is 200 answers per second over the attack.
func (s *loadStats) okRate() float64 {
	if sec := s.seconds(); sec > 0 {
		return float64(s.OK) / sec
	}
	return 0
}

// quantile of the latencies of the 200 answers.
func (s *loadStats) quantile(q float64) time.Duration {
	return quantile(s.latencies, q)
}

func (s *loadStats) errorsText() string {
	text := fmt.Sprintf("%d non-200, %d no answer", s.HTTPErrors, s.ConnErrors)
	var parts []string
	for code, n := range s.Codes {
		if code != 0 && code != http.StatusOK {
			parts = append(parts, fmt.Sprintf("%d×%d", n, code))
		}
	}
	for kind, n := range s.Errors {
		parts = append(parts, fmt.Sprintf("%d×%s", n, kind))
	}
	sort.Strings(parts)
	if len(parts) > 0 {
		text += " (" + strings.Join(parts, ", ") + ")"
	}
	return text
}

// figures are the stats for the JSON summary, under prefix.
func (s *loadStats) figures(r *result, prefix string) {
	r.fig(prefix+"sent", s.Sent)
	r.fig(prefix+"ok", s.OK)
	r.fig(prefix+"http_errors", s.HTTPErrors)
	r.fig(prefix+"conn_errors", s.ConnErrors)
	r.fig(prefix+"ok_per_s", round(s.okRate(), 1))
	r.fig(prefix+"p50_ms", msf(s.quantile(0.5)))
	r.fig(prefix+"p99_ms", msf(s.quantile(0.99)))
	r.fig(prefix+"max_ms", msf(s.quantile(1)))
}

// quantile sorts ds (in place) and returns its q-quantile (nearest rank).
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	if !slices.IsSorted(ds) {
		slices.Sort(ds)
	}
	i := int(q*float64(len(ds))+0.5) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

var jsonHeader = http.Header{"Content-Type": {"application/json"}}

// staticTarget POSTs body to url, every time.
func staticTarget(url string, body []byte) vegeta.Targeter {
	return vegeta.NewStaticTargeter(vegeta.Target{Method: http.MethodPost, URL: url, Body: body, Header: jsonHeader})
}

// roundRobin POSTs body to each url in turn.
func roundRobin(urls []string, body []byte) vegeta.Targeter {
	var next atomic.Uint64
	return func(t *vegeta.Target) error {
		i := next.Add(1) - 1
		*t = vegeta.Target{Method: http.MethodPost, URL: urls[i%uint64(len(urls))], Body: body, Header: jsonHeader}
		return nil
	}
}

// jsonBody is a JSON object of exactly size bytes.
func jsonBody(size int) []byte {
	const prefix, suffix = `{"event":"bench","padding":"`, `"}`
	pad := max(size-len(prefix)-len(suffix), 0)
	return []byte(prefix + strings.Repeat("x", pad) + suffix)
}

// eventID reads the event_id of an ingest answer.
func eventID(body []byte) string {
	var ack struct {
		EventID string `json:"event_id"`
	}
	if json.Unmarshal(body, &ack) != nil {
		return ""
	}
	return ack.EventID
}

// postOK posts body to url once and reports whether the answer was 200.
func postOK(url string, body []byte) bool {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
