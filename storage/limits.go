package storage

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/webhooker/caddy-webhooker/filter"
)

// Limits bound the options of targets and webhooks. The operator (the
// Caddyfile and the admin endpoint) gets OperatorLimits; the holder of an
// API key gets TenantLimits, tight enough that one tenant's target cannot
// hold the delivery workers (a long timeout), storm its receiver (a tiny
// backoff, endless retries) or keep events for ever in a way that overflows.
type Limits struct {
	// Name says whose limits these are, in error messages.
	Name string
	// MaxRetries is the most max_retries may be.
	MaxRetries int
	// TimeoutMin and TimeoutMax bound timeout; 0 (the default) is allowed.
	TimeoutMin, TimeoutMax time.Duration
	// BackoffInitialMin is the least backoff_initial may be, 0 aside.
	BackoffInitialMin time.Duration
	// BackoffMax is the most backoff_max, and so backoff_initial, may be.
	BackoffMax time.Duration
	// BreakerThresholdMax is the most breaker_threshold may be.
	BreakerThresholdMax int
	// BreakerCooldownMin and BreakerCooldownMax bound breaker_cooldown; 0
	// (the default) is allowed.
	BreakerCooldownMin, BreakerCooldownMax time.Duration
	// RateEventsMax bounds rate_limit's events (at least 1); RateWindowMin
	// and RateWindowMax its window.
	RateEventsMax                int
	RateWindowMin, RateWindowMax time.Duration
	// MaxInFlight is the most max_in_flight may be (at least 1).
	MaxInFlight int
	// Headers is the most headers a target may set; HeaderNameBytes and
	// HeaderValueBytes bound each name and value, HeadersBytes all of them.
	Headers, HeaderNameBytes, HeaderValueBytes, HeadersBytes int
	// URLBytes bounds a target's URL.
	URLBytes int
	// FilterBytes bounds a target's filter, at most filter.MaxExpressionBytes.
	FilterBytes int
	// RetentionDays is the most retention_days may be: 100 years, far from
	// where days turned into a duration could overflow.
	RetentionDays int
	// DedupWindowMax is the longest dedup window (dedup.go): each key is
	// a row of intake.db for that long.
	DedupWindowMax time.Duration
}

// OperatorLimits are the bounds of the Caddyfile and the admin endpoint:
// wide, but none that a typo could turn into a retry storm or an overflow.
func OperatorLimits() Limits {
	return Limits{
		Name:                "operator",
		MaxRetries:          100,
		TimeoutMin:          10 * time.Millisecond,
		TimeoutMax:          10 * time.Minute,
		BackoffInitialMin:   10 * time.Millisecond,
		BackoffMax:          7 * 24 * time.Hour,
		BreakerThresholdMax: 1000,
		BreakerCooldownMin:  10 * time.Millisecond,
		BreakerCooldownMax:  24 * time.Hour,
		RateEventsMax:       1_000_000,
		RateWindowMin:       time.Second,
		RateWindowMax:       time.Hour,
		MaxInFlight:         4096,
		Headers:             32,
		HeaderNameBytes:     256,
		HeaderValueBytes:    8 << 10,
		HeadersBytes:        16 << 10,
		URLBytes:            4096,
		FilterBytes:         filter.MaxExpressionBytes,
		RetentionDays:       36500,
		DedupWindowMax:      30 * 24 * time.Hour,
	}
}

// TenantLimits are the bounds of requests authenticated by an API key.
func TenantLimits() Limits {
	l := OperatorLimits()
	l.Name = "tenant"
	l.MaxRetries = 20
	l.TimeoutMin, l.TimeoutMax = time.Second, time.Minute
	l.BackoffInitialMin = time.Second
	l.BackoffMax = 24 * time.Hour
	l.BreakerCooldownMin = time.Second
	// A tenant's target may not take more than a default target's share
	// of the default workers, nor a bucket big enough to be no limit.
	l.RateEventsMax = 10_000
	l.MaxInFlight = 64
	l.FilterBytes = 1024
	l.DedupWindowMax = 7 * 24 * time.Hour
	return l
}

// RedactedValue stands for a secret the API does not show, such as the
// value of a target's header. Sent back as a header's value in a change, it
// keeps the value stored.
const RedactedValue = "(redacted)"

// refusedHeaders cannot be set by a target's configuration: they describe
// one connection (RFC 9110 §7.6.1) and the HTTP client sets or drops them,
// or, for Webhooker-Via (engine.HopHeader), they would hide a delivery's
// hop marker and let a webhook feed itself; Webhooker-Verified would let a
// target's configuration claim a verification that never happened.
var refusedHeaders = map[string]string{
	"Connection":          "a hop-by-hop header",
	"Keep-Alive":          "a hop-by-hop header",
	"Proxy-Authenticate":  "a hop-by-hop header",
	"Proxy-Authorization": "a hop-by-hop header",
	"Proxy-Connection":    "a hop-by-hop header",
	"Te":                  "a hop-by-hop header",
	"Trailer":             "a hop-by-hop header",
	"Transfer-Encoding":   "a hop-by-hop header",
	"Upgrade":             "a hop-by-hop header",
	"Host":                "set from the target's URL",
	"Content-Length":      "set from the event's body",
	"Webhooker-Via":       "the gateway's hop marker, which stops delivery loops",
	"Webhooker-Verified":  "set by the gateway to the verify scheme the event passed",
}

// ValidateTargetURL checks the URL of an http target: absolute http or
// https, with a host and without credentials, which would be shown to
// anyone who can read the target (headers are write-only, URLs are not).
func ValidateTargetURL(raw string, l Limits) error {
	if len(raw) > l.URLBytes {
		return fmt.Errorf("url: %d bytes, at most %d (%s limits)", len(raw), l.URLBytes, l.Name)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("url %q must be an absolute http:// or https:// URL", raw)
	}
	if u.User != nil {
		return fmt.Errorf("url %s holds credentials (user:password@): put credentials in a header instead", u.Redacted())
	}
	return nil
}

// ValidateWithin checks a target's type, the settings its type needs, and
// its options against l.
func (t Target) ValidateWithin(l Limits) error {
	if err := ValidateName("target", t.Name); err != nil {
		return err
	}
	switch t.Type {
	case TargetHTTP:
		if err := ValidateTargetURL(t.URL, l); err != nil {
			return fmt.Errorf("target %s: %w", t.Name, err)
		}
	case TargetDatabase, TargetLog:
		if t.URL != "" {
			return fmt.Errorf("target %s: a %s target takes no url", t.Name, t.Type)
		}
	default:
		return fmt.Errorf("target %s: unknown type %q (want http, database or log)", t.Name, t.Type)
	}
	if err := t.Options.validate(l); err != nil {
		return fmt.Errorf("target %s: %w", t.Name, err)
	}
	if err := validateFilter(t.Filter, l); err != nil {
		return fmt.Errorf("target %s: %w", t.Name, err)
	}
	return nil
}

// validateFilter checks a target's filter: within l's length, and one that
// compiles (its error is CEL's, with line and column).
func validateFilter(source string, l Limits) error {
	if source == "" {
		return nil
	}
	if len(source) > l.FilterBytes {
		return fmt.Errorf("filter: %d bytes, at most %d (%s limits)", len(source), l.FilterBytes, l.Name)
	}
	_, err := filter.Compile(source)
	return err
}

func (o TargetOptions) validate(l Limits) error {
	if err := intIn("max_retries", o.MaxRetries, l.MaxRetries, l); err != nil {
		return err
	}
	if err := intIn("breaker_threshold", o.BreakerThreshold, l.BreakerThresholdMax, l); err != nil {
		return err
	}
	for _, d := range []struct {
		option   string
		value    Duration
		min, max time.Duration
	}{
		{"timeout", o.Timeout, l.TimeoutMin, l.TimeoutMax},
		{"backoff_initial", o.BackoffInitial, l.BackoffInitialMin, l.BackoffMax},
		{"backoff_max", o.BackoffMax, l.BackoffInitialMin, l.BackoffMax},
		{"breaker_cooldown", o.BreakerCooldown, l.BreakerCooldownMin, l.BreakerCooldownMax},
	} {
		if err := durationIn(d.option, d.value, d.min, d.max, l); err != nil {
			return err
		}
	}
	if err := validateRate(o, l); err != nil {
		return err
	}
	if o.BackoffMax > 0 && o.BackoffInitial > o.BackoffMax {
		return fmt.Errorf("backoff_initial %s is over backoff_max %s",
			time.Duration(o.BackoffInitial), time.Duration(o.BackoffMax))
	}
	if err := validateHeaders(o.Headers, l); err != nil {
		return err
	}
	if err := validateHeaderRules(o, l); err != nil {
		return err
	}
	return validateSigning(o)
}

// validateRate checks rate_limit and max_in_flight: unlike the other
// numbers, 0 has no meaning here (no token ever, no slot ever), so they
// start at 1; absent is the default.
func validateRate(o TargetOptions, l Limits) error {
	if r := o.RateLimit; r != nil {
		if r.Events < 1 || r.Events > l.RateEventsMax {
			return fmt.Errorf("rate_limit events %d: want 1 to %d (%s limits)", r.Events, l.RateEventsMax, l.Name)
		}
		if w := time.Duration(r.Window); w < l.RateWindowMin || w > l.RateWindowMax {
			return fmt.Errorf("rate_limit window %s: want %s to %s (%s limits)", w, l.RateWindowMin, l.RateWindowMax, l.Name)
		}
	}
	if n := o.MaxInFlight; n != nil && (*n < 1 || *n > l.MaxInFlight) {
		return fmt.Errorf("max_in_flight %d: want 1 to %d (%s limits)", *n, l.MaxInFlight, l.Name)
	}
	if n := o.MaxInFlight; o.Ordered && n != nil && *n != 1 {
		return fmt.Errorf("max_in_flight %d with ordered: an ordered target sends one delivery at a time; leave max_in_flight out", *n)
	}
	return nil
}

// intIn checks an optional whole-number option: nil (the default) or 0 to max.
func intIn(option string, v *int, max int, l Limits) error {
	switch {
	case v == nil:
	case *v < 0:
		return fmt.Errorf("%s %d is negative: use 0 to %d", option, *v, max)
	case *v > max:
		return fmt.Errorf("%s %d is over the most allowed, %d (%s limits)", option, *v, max, l.Name)
	}
	return nil
}

// durationIn checks a duration option: 0 (the default) or min to max.
func durationIn(option string, v Duration, min, max time.Duration, l Limits) error {
	d := time.Duration(v)
	switch {
	case d == 0:
	case d < 0:
		return fmt.Errorf("%s %s is negative: use 0 for the default, or %s to %s", option, d, min, max)
	case d < min:
		return fmt.Errorf("%s %s is under the least allowed, %s (%s limits)", option, d, min, l.Name)
	case d > max:
		return fmt.Errorf("%s %s is over the most allowed, %s (%s limits)", option, d, max, l.Name)
	}
	return nil
}

// validateHeaders checks the headers a target sets on its deliveries: names
// and values that HTTP allows (no CR, LF or NUL, which would break every
// delivery or smuggle a header), none that the client owns, each name once,
// and sizes within l.
func validateHeaders(headers map[string]string, l Limits) error {
	if len(headers) > l.Headers {
		return fmt.Errorf("headers: %d, at most %d (%s limits)", len(headers), l.Headers, l.Name)
	}
	total := 0
	seen := make(map[string]string, len(headers))
	// In sorted order, so that which of two clashing names is reported,
	// and which refusal comes first, does not change from run to run.
	for _, name := range slices.Sorted(maps.Keys(headers)) {
		value := headers[name]
		if len(name) > l.HeaderNameBytes {
			return fmt.Errorf("header name %.32q…: %d bytes, at most %d (%s limits)", name, len(name), l.HeaderNameBytes, l.Name)
		}
		if !httpguts.ValidHeaderFieldName(name) {
			return fmt.Errorf("%q is not a valid header name", name)
		}
		canonical := http.CanonicalHeaderKey(name)
		if why, refused := refusedHeaders[canonical]; refused {
			return fmt.Errorf("header %s cannot be configured: it is %s", canonical, why)
		}
		if other, dup := seen[canonical]; dup {
			return fmt.Errorf("headers %q and %q are the same header", other, name)
		}
		seen[canonical] = name
		if len(value) > l.HeaderValueBytes {
			return fmt.Errorf("header %s: value of %d bytes, at most %d (%s limits)", canonical, len(value), l.HeaderValueBytes, l.Name)
		}
		if !httpguts.ValidHeaderFieldValue(value) {
			return fmt.Errorf("header %s: the value holds a control character (such as CR, LF or NUL)", canonical)
		}
		total += len(name) + len(value)
	}
	if total > l.HeadersBytes {
		return fmt.Errorf("headers: %d bytes in all, at most %d (%s limits)", total, l.HeadersBytes, l.Name)
	}
	return nil
}

// validateHeaderRules checks the headers a target adds and removes as
// validateHeaders checks those it sets, and counts them all together
// against l: a header added is one set, a header removed is a name.
func validateHeaderRules(o TargetOptions, l Limits) error {
	count, total := len(o.Headers), 0
	for name, value := range o.Headers {
		total += len(name) + len(value)
	}
	set := make(map[string]bool, len(o.Headers))
	for name := range o.Headers {
		set[http.CanonicalHeaderKey(name)] = true
	}
	added := make(map[string]string, len(o.HeadersAdd))
	for _, name := range slices.Sorted(maps.Keys(o.HeadersAdd)) {
		values := o.HeadersAdd[name]
		canonical, err := configurableHeader(name, l)
		if err != nil {
			return fmt.Errorf("headers_add: %w", err)
		}
		if set[canonical] {
			return fmt.Errorf("header %s is both set (headers) and added (headers_add): a set replaces what is added, so give it once", canonical)
		}
		if other, dup := added[canonical]; dup {
			return fmt.Errorf("headers_add %q and %q are the same header", other, name)
		}
		added[canonical] = name
		if len(values) == 0 {
			return fmt.Errorf("headers_add %s: no value to add", canonical)
		}
		for _, value := range values {
			if err := configurableValue(canonical, value, l); err != nil {
				return fmt.Errorf("headers_add: %w", err)
			}
			if value == RedactedValue {
				return fmt.Errorf("headers_add %s: %q stands for a stored value, and the target has none here: send the value", canonical, RedactedValue)
			}
			count++
			total += len(name) + len(value)
		}
	}
	removed := make(map[string]bool, len(o.HeadersRemove))
	for _, name := range o.HeadersRemove {
		canonical, err := configurableHeader(name, l)
		if err != nil {
			return fmt.Errorf("headers_remove: %w", err)
		}
		if removed[canonical] {
			return fmt.Errorf("headers_remove: %s is given twice", canonical)
		}
		removed[canonical] = true
		count++
		total += len(name)
	}
	if count > l.Headers {
		return fmt.Errorf("headers, headers_add and headers_remove: %d in all, at most %d (%s limits)", count, l.Headers, l.Name)
	}
	if total > l.HeadersBytes {
		return fmt.Errorf("headers, headers_add and headers_remove: %d bytes in all, at most %d (%s limits)", total, l.HeadersBytes, l.Name)
	}
	return nil
}

// configurableHeader checks a header name a target's configuration gives,
// and returns it canonical.
func configurableHeader(name string, l Limits) (string, error) {
	if len(name) > l.HeaderNameBytes {
		return "", fmt.Errorf("header name %.32q…: %d bytes, at most %d (%s limits)", name, len(name), l.HeaderNameBytes, l.Name)
	}
	if !httpguts.ValidHeaderFieldName(name) {
		return "", fmt.Errorf("%q is not a valid header name", name)
	}
	canonical := http.CanonicalHeaderKey(name)
	if why, refused := refusedHeaders[canonical]; refused {
		return "", fmt.Errorf("header %s cannot be configured: it is %s", canonical, why)
	}
	return canonical, nil
}

// configurableValue checks a header value a target's configuration gives.
func configurableValue(canonical, value string, l Limits) error {
	if len(value) > l.HeaderValueBytes {
		return fmt.Errorf("header %s: value of %d bytes, at most %d (%s limits)", canonical, len(value), l.HeaderValueBytes, l.Name)
	}
	if !httpguts.ValidHeaderFieldValue(value) {
		return fmt.Errorf("header %s: the value holds a control character (such as CR, LF or NUL)", canonical)
	}
	return nil
}

// validateRetentionDays checks a webhook's retention_days: 0 (keep for
// ever) to l.RetentionDays.
func validateRetentionDays(days int, l Limits) error {
	if days < 0 {
		return fmt.Errorf("retention_days %d is negative: use 0 (keep forever) to %d", days, l.RetentionDays)
	}
	if days > l.RetentionDays {
		return fmt.Errorf("retention_days %d is over the most allowed, %d (%s limits)", days, l.RetentionDays, l.Name)
	}
	return nil
}
