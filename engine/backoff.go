package engine

import (
	"errors"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// Backoff spaces the retries of a failed delivery: Initial before the first
// retry, multiplied by Multiplier for each further one, never more than Max,
// each spread by ±Jitter (a fraction) so that deliveries failed together do
// not retry together.
type Backoff struct {
	Initial    time.Duration
	Max        time.Duration
	Multiplier float64
	Jitter     float64
}

// Default retry settings of an http target.
const (
	DefaultMaxRetries     = 10
	DefaultBackoffInitial = 5 * time.Second
	DefaultBackoffMax     = time.Hour
	DefaultMultiplier     = 2
	DefaultJitter         = 0.2
)

// defaultBackoff is used where a target sets no backoff of its own (a
// value, so that no caller can change it for every other).
var defaultBackoff = Backoff{
	Initial: DefaultBackoffInitial, Max: DefaultBackoffMax,
	Multiplier: DefaultMultiplier, Jitter: DefaultJitter,
}

// Delay is the wait after failed attempt number attempt (1 for the first).
func (b Backoff) Delay(attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	d := float64(b.Initial) * math.Pow(b.Multiplier, float64(attempt-1))
	if d > float64(b.Max) || math.IsInf(d, 0) || math.IsNaN(d) {
		d = float64(b.Max)
	}
	if b.Jitter > 0 {
		d *= 1 + b.Jitter*(2*rand.Float64()-1)
	}
	// Max is a cap: jitter may spread a capped delay down, never above it.
	return time.Duration(min(d, float64(b.Max)))
}

// retryAfter reads a Retry-After header (seconds or an HTTP date) and bounds
// it: a target may ask for more time than our backoff gives, up to max, but
// not make us retry sooner than lo.
func retryAfter(h http.Header, now time.Time, lo, hi time.Duration) (time.Duration, bool) {
	v := h.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		// Compare before multiplying: a huge number of seconds must not
		// overflow into a short (or negative) wait.
		switch {
		case secs > int64(hi/time.Second):
			d = hi
		case secs < 0:
			d = lo
		default:
			d = time.Duration(secs) * time.Second
		}
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	} else {
		return 0, false
	}
	return max(lo, min(d, hi)), true
}
