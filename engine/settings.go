package engine

import (
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

// httpSettings are a target's delivery settings with the defaults applied.
type httpSettings struct {
	maxRetries       int
	timeout          time.Duration
	backoff          Backoff
	headers          map[string]string   // set, over the event's
	headersAdd       map[string][]string // added to the event's
	headersRemove    []string            // the event's, not forwarded
	breakerThreshold int
	breakerCooldown  time.Duration
	// options hold the signing secrets, decoded at each attempt
	// (signingKeys), since whether the previous one signs depends on when.
	options storage.TargetOptions
}

func settingsOf(t storage.Target) httpSettings {
	o := t.Options
	s := httpSettings{
		maxRetries:       DefaultMaxRetries,
		timeout:          DefaultTimeout,
		backoff:          defaultBackoff,
		headers:          o.Headers,
		headersAdd:       o.HeadersAdd,
		headersRemove:    o.HeadersRemove,
		options:          o,
		breakerThreshold: DefaultBreakerThreshold,
		breakerCooldown:  DefaultBreakerCooldown,
	}
	if o.MaxRetries != nil {
		s.maxRetries = *o.MaxRetries
	}
	if o.Timeout > 0 {
		s.timeout = time.Duration(o.Timeout)
	}
	if o.BackoffInitial > 0 {
		s.backoff.Initial = time.Duration(o.BackoffInitial)
	}
	if o.BackoffMax > 0 {
		s.backoff.Max = time.Duration(o.BackoffMax)
	}
	if s.backoff.Max < s.backoff.Initial {
		s.backoff.Max = s.backoff.Initial
	}
	if o.BreakerThreshold != nil {
		s.breakerThreshold = *o.BreakerThreshold
	}
	if o.BreakerCooldown > 0 {
		s.breakerCooldown = time.Duration(o.BreakerCooldown)
	}
	return s
}
