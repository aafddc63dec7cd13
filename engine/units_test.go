package engine

import (
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

func TestBackoffDelayGrowsByMultiplierUpToMax(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2}
	for attempt, want := range map[int]time.Duration{
		0:       100 * time.Millisecond, // treated as the first
		1:       100 * time.Millisecond,
		2:       200 * time.Millisecond,
		3:       400 * time.Millisecond,
		4:       800 * time.Millisecond,
		5:       time.Second,
		6:       time.Second,
		1000:    time.Second, // 2^999 overflows to +Inf: still the cap
		1 << 30: time.Second,
	} {
		if got := b.Delay(attempt); got != want {
			t.Errorf("Delay(%d) = %s, want %s", attempt, got, want)
		}
	}
}

func TestBackoffJitterStaysWithinBoundsAndSpreads(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2, Jitter: 0.2}
	for attempt, base := range map[int]time.Duration{1: 100 * time.Millisecond, 3: 400 * time.Millisecond} {
		lo, hi := time.Duration(float64(base)*0.8), time.Duration(float64(base)*1.2)
		seen := map[time.Duration]bool{}
		for range 1000 {
			d := b.Delay(attempt)
			if d < lo || d > hi {
				t.Fatalf("Delay(%d) = %s, outside [%s, %s]", attempt, d, lo, hi)
			}
			seen[d] = true
		}
		if len(seen) < 100 {
			t.Errorf("Delay(%d): only %d distinct values in 1000: no real jitter", attempt, len(seen))
		}
	}
}

func TestBackoffMaxIsAHardCapEvenWithJitter(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2, Jitter: 0.2}
	below := false
	for range 1000 {
		d := b.Delay(20)
		if d > b.Max {
			t.Fatalf("Delay(20) = %s, over Max %s", d, b.Max)
		}
		if d < time.Duration(float64(b.Max)*0.8) {
			t.Fatalf("Delay(20) = %s, under Max less the jitter", d)
		}
		if d < b.Max {
			below = true
		}
	}
	if !below {
		t.Error("capped delays are all exactly Max: jitter does not spread them")
	}
}

func TestDefaultBackoffOfTargetWithoutSettings(t *testing.T) {
	s := settingsOf(storage.Target{Type: storage.TargetHTTP})
	if s.maxRetries != DefaultMaxRetries || s.timeout != DefaultTimeout || s.backoff != defaultBackoff ||
		s.breakerThreshold != DefaultBreakerThreshold || s.breakerCooldown != DefaultBreakerCooldown {
		t.Errorf("settings of a target without options = %+v, want the defaults", s)
	}
	zero := 0
	s = settingsOf(storage.Target{Options: storage.TargetOptions{
		MaxRetries: &zero, Timeout: storage.Duration(time.Second),
		BackoffInitial: storage.Duration(2 * time.Second), BackoffMax: storage.Duration(time.Second),
		BreakerThreshold: &zero, BreakerCooldown: storage.Duration(time.Minute),
	}})
	if s.maxRetries != 0 || s.timeout != time.Second || s.backoff.Initial != 2*time.Second ||
		s.backoff.Max != 2*time.Second || s.breakerThreshold != 0 || s.breakerCooldown != time.Minute {
		t.Errorf("settings = %+v", s)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	lo, hi := time.Second, time.Hour
	for _, tc := range []struct {
		name, value string
		want        time.Duration
		ok          bool
	}{
		{"absent", "", 0, false},
		{"seconds", "120", 2 * time.Minute, true},
		{"HTTP date", now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{"obsolete RFC 850 date", now.Add(30 * time.Second).Format(time.RFC850), 30 * time.Second, true},
		{"zero is raised to the lower bound", "0", lo, true},
		{"negative is raised to the lower bound", "-30", lo, true},
		{"date in the past is raised to the lower bound", now.Add(-time.Hour).Format(http.TimeFormat), lo, true},
		{"too long is cut to the upper bound", "86400", hi, true},
		{"date too far is cut to the upper bound", now.Add(48 * time.Hour).Format(http.TimeFormat), hi, true},
		{"huge number of seconds does not overflow", "99999999999999", hi, true},
		{"seconds that overflow a Duration", "9300000000", hi, true},
		{"number beyond int does not overflow", "999999999999999999999999", hi, true},
		{"fraction", "1.5", 0, false},
		{"garbage", "soon", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.value != "" {
				h.Set("Retry-After", tc.value)
			}
			got, ok := retryAfter(h, now, lo, hi)
			if got != tc.want || ok != tc.ok {
				t.Errorf("retryAfter(%q) = %s, %v; want %s, %v", tc.value, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestBreakerOpensAfterThresholdAndProbesAfterCooldown(t *testing.T) {
	b := &breaker{threshold: 2, cooldown: time.Second}
	t0 := time.Unix(1_700_000_000, 0)
	mustAllow := func(now time.Time) {
		t.Helper()
		if ok, _ := b.allow(now); !ok {
			t.Fatalf("allow at +%s = false (state %s), want true", now.Sub(t0), b.State())
		}
	}
	mustHold := func(now, until time.Time) {
		t.Helper()
		ok, at := b.allow(now)
		if ok {
			t.Fatalf("allow at +%s = true (state %s), want false", now.Sub(t0), b.State())
		}
		if !at.Equal(until) {
			t.Fatalf("allow at +%s holds until +%s, want +%s", now.Sub(t0), at.Sub(t0), until.Sub(t0))
		}
	}
	state := func(want string) {
		t.Helper()
		if got := b.State(); got != want {
			t.Fatalf("state = %s, want %s", got, want)
		}
	}

	state("closed")
	mustAllow(t0)
	b.record(false, t0)
	state("closed")
	mustAllow(t0)
	if c := b.record(false, t0); !c.opened || c.probeFailed || c.closed {
		t.Fatalf("the threshold's failure: %+v, want opened", c)
	}
	state("open")

	mustHold(t0.Add(10*time.Millisecond), t0.Add(time.Second))
	mustHold(t0.Add(999*time.Millisecond), t0.Add(time.Second))

	// The cooldown is over: one probe goes through, others are held.
	probe := t0.Add(time.Second)
	mustAllow(probe)
	state("half-open")
	mustHold(probe.Add(time.Millisecond), probe.Add(time.Second))

	// The probe fails: open again, for a full cooldown from now.
	// Told as a failed probe, not as a second opening: an alert says a
	// target went down once, not once per cooldown while it stays down.
	failed := probe.Add(100 * time.Millisecond)
	if c := b.record(false, failed); c.opened || !c.probeFailed {
		t.Fatalf("the failed probe: %+v, want probeFailed and not opened", c)
	}
	state("open")
	mustHold(failed.Add(500*time.Millisecond), failed.Add(time.Second))

	// The next probe succeeds: closed, and the failure count starts over.
	probe2 := failed.Add(time.Second)
	mustAllow(probe2)
	state("half-open")
	if c := b.record(true, probe2); !c.closed {
		t.Fatalf("the good probe: %+v, want closed", c)
	}
	state("closed")
	b.record(false, probe2)
	state("closed")
	mustAllow(probe2)
}

func TestBreakerSuccessResetsConsecutiveFailures(t *testing.T) {
	b := &breaker{threshold: 3, cooldown: time.Second}
	now := time.Now()
	for range 10 {
		b.record(false, now)
		b.record(false, now)
		b.record(true, now)
	}
	if b.State() != "closed" {
		t.Fatalf("state = %s after never 3 failures in a row", b.State())
	}
}

func TestBreakerWithThresholdZeroNeverOpens(t *testing.T) {
	b := &breaker{threshold: 0, cooldown: time.Second}
	now := time.Now()
	for range 100 {
		b.record(false, now)
	}
	if ok, _ := b.allow(now); !ok || b.State() != "closed" {
		t.Fatalf("threshold 0: allow = %v, state %s", ok, b.State())
	}
}

func TestBreakerProbeThatNeverReportsDoesNotBlockForever(t *testing.T) {
	b := &breaker{threshold: 1, cooldown: time.Second}
	t0 := time.Now()
	b.record(false, t0)
	if ok, _ := b.allow(t0.Add(time.Second)); !ok {
		t.Fatal("no probe after the cooldown")
	}
	// The probe was cut short and never recorded: after another cooldown
	// a new probe may go.
	if ok, _ := b.allow(t0.Add(1500 * time.Millisecond)); ok {
		t.Fatal("second probe while the first may still be in flight")
	}
	if ok, _ := b.allow(t0.Add(2 * time.Second)); !ok {
		t.Fatal("breaker stuck half-open after a probe that never reported")
	}
}

func TestForwardedHeadersDropsHopByHop(t *testing.T) {
	in := http.Header{}
	in.Set("Content-Type", "application/json")
	in.Add("X-Multi", "one")
	in.Add("X-Multi", "two")
	in.Set("Authorization", "Bearer end-to-end")
	in.Add("Connection", "keep-alive, X-Hop-Named")
	in.Add("Connection", "x-other-named")
	in.Set("X-Hop-Named", "1")
	in.Set("X-Other-Named", "1")
	for _, h := range []string{"Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Host", "Content-Length"} {
		in.Set(h, "x")
	}
	before := in.Clone()

	out := forwardedHeaders(in)
	want := http.Header{
		"Content-Type":  {"application/json"},
		"X-Multi":       {"one", "two"},
		"Authorization": {"Bearer end-to-end"},
	}
	if !reflect.DeepEqual(out, want) {
		t.Errorf("forwardedHeaders = %v, want %v", out, want)
	}
	out["X-Multi"][0] = "changed"
	out.Set("X-New", "1")
	if !reflect.DeepEqual(in, before) {
		t.Errorf("forwardedHeaders changed its input: %v", in)
	}
	if got := forwardedHeaders(nil); len(got) != 0 {
		t.Errorf("forwardedHeaders(nil) = %v", got)
	}
}

func TestRedactedHidesCredentialsOnly(t *testing.T) {
	in := http.Header{"Authorization": {"Bearer s"}, "Cookie": {"a=b"}, "X-Ok": {"1"}}
	out := redacted(in)
	if out.Get("Authorization") != "REDACTED" || out.Get("Cookie") != "REDACTED" || out.Get("X-Ok") != "1" {
		t.Errorf("redacted = %v", out)
	}
	if in.Get("Authorization") != "Bearer s" {
		t.Error("redacted changed its input")
	}
}

func TestTasksForEventInlinesOnlySmallBodies(t *testing.T) {
	targets := []storage.Target{{ID: "a"}, {ID: "b"}}
	deliveries := []storage.Delivery{{ID: "d1", TargetID: "a"}, {ID: "d2", TargetID: "b"}}
	for _, size := range []int{0, 1, InlineBodyLimit - 1} {
		ev := &storage.Event{ID: "e", Body: make([]byte, size)}
		tasks := TasksForEvent("w", ev, deliveries, targets)
		if len(tasks) != 2 || tasks[1].DeliveryID != "d2" || tasks[1].Target.ID != "b" {
			t.Fatalf("tasks = %+v", tasks)
		}
		for _, task := range tasks {
			if task.Body == nil || len(*task.Body) != size || task.Event.BodySize != size {
				t.Errorf("size %d: body not inline", size)
			}
		}
	}
	for _, size := range []int{InlineBodyLimit, 1 << 20} {
		ev := &storage.Event{ID: "e", Body: make([]byte, size)}
		for _, task := range TasksForEvent("w", ev, deliveries, targets) {
			if task.Body != nil || task.Event.BodySize != size {
				t.Errorf("size %d: body inline (%v) or size %d wrong", size, task.Body != nil, task.Event.BodySize)
			}
		}
	}
}
