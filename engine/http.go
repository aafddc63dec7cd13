package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DefaultTimeout bounds one http attempt, response included.
const DefaultTimeout = 30 * time.Second

// responseExcerpt is how much of a target's answer each attempt keeps.
const responseExcerpt = 4 << 10

// VersionHeader carries UserAgent on every http delivery: the User-Agent
// itself is the sender's.
const VersionHeader = "Webhooker-Version"

// hopHeaders are meaningful for one connection only (RFC 9110 §7.6.1), and
// so are not forwarded; nor are the headers the client sets itself.
var hopHeaders = []string{
	"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Host", "Content-Length",
}

// attemptResult is what one attempt produced.
type attemptResult struct {
	statusCode int
	err        error  // why it failed, nil on success
	response   []byte // the first 4 KiB of the answer
	retryAfter http.Header
	// permanent failures are not retried: the target answered 410 Gone, or
	// the target policy refused the connection.
	permanent bool
	// refused: the target policy refused every address of the target, so
	// no connection was made and the circuit breaker learns nothing.
	refused bool
	// countsAgainstTarget failures say the target is unwell (network error,
	// timeout, 5xx, 408) and feed its circuit breaker.
	countsAgainstTarget bool
}

// dialTimeout bounds making a connection (a target's timeout bounds the
// whole attempt).
const dialTimeout = 30 * time.Second

// newHTTPClient makes the client of http deliveries, with policy enforced
// where each connection is made: the dialer's Control checks every address
// it is about to connect to, after DNS, so that names, rebinding and every
// spelling of an address meet the same check.
//
// Tenants' requests (the tenant flag in the request context, set by
// deliverHTTP) go through a transport of their own: a connection dialled
// under the operator's rules sits in a pool that no tenant's request draws
// from.
//
// policy gives the policy in force at each dial, so that a new one (a
// reload) applies to the next connection.
func newHTTPClient(policy func() *TargetPolicy) *http.Client {
	return &http.Client{
		Transport: &policyTransport{
			operator: policyHTTPTransport(policy, false),
			tenant:   policyHTTPTransport(policy, true),
		},
		// A redirect is an answer, not an instruction to re-send the body
		// elsewhere: it counts as a failed attempt.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func policyHTTPTransport(policy func() *TargetPolicy, tenant bool) *http.Transport {
	dialer := &net.Dialer{
		Timeout:   dialTimeout,
		KeepAlive: 30 * time.Second,
		ControlContext: func(ctx context.Context, _, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: cannot read the address being dialled, %q: %v", ErrTargetPolicy, address, err)
			}
			return policy().CheckAddr(ap, tenant || tenantFrom(ctx))
		},
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.DialContext = dialer.DialContext
	// No proxy, whatever HTTP_PROXY says: through a proxy the dialer would
	// check the proxy's address, not the target's, and the policy would
	// guard nothing.
	transport.Proxy = nil
	transport.MaxIdleConnsPerHost = 64
	return transport
}

// policyTransport sends a request through the transport of its kind.
type policyTransport struct {
	operator, tenant *http.Transport
}

func (t *policyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if tenantFrom(req.Context()) {
		return t.tenant.RoundTrip(req)
	}
	return t.operator.RoundTrip(req)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach both pools.
func (t *policyTransport) CloseIdleConnections() {
	t.operator.CloseIdleConnections()
	t.tenant.CloseIdleConnections()
}

// deliverHTTP POSTs the event to the target: the original body and content
// type, the end-to-end headers (User-Agent included) and the query string
// of the entrypoint's URL merged into the target's, the target's header
// rules, the Standard Webhooks headers (signed when the target has a
// signing secret), and the hop marker of gatewayID. tenant says the
// target's webhook is owned by a user: the client holds it to the tenant
// rules of the target policy.
func deliverHTTP(ctx context.Context, client *http.Client, s httpSettings, task *Task, body io.Reader, now time.Time,
	tenant bool, gatewayID string) attemptResult {
	ctx, cancel := context.WithTimeout(withTenant(ctx, tenant), s.timeout)
	defer cancel()
	u, err := url.Parse(task.Target.URL)
	if err != nil {
		return attemptResult{err: fmt.Errorf("build request: %w", redactURLError(err))}
	}
	u.RawQuery = mergeQuery(u.RawQuery, task.Event.Query)
	keys, err := signingKeys(s.options, now)
	if err != nil {
		return attemptResult{err: err}
	}
	msgID, timestamp := MessageID(task.Event.ID, task.Target.ID), strconv.FormatInt(now.Unix(), 10)
	var sig string
	if len(keys) > 0 {
		// Signed before the request is made: NewRequest takes a snapshot
		// of a bytes or strings reader's position to re-send the body.
		if sig, body, err = signBody(keys, msgID, now.Unix(), body); err != nil {
			return attemptResult{err: err}
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), body)
	if err != nil {
		return attemptResult{err: fmt.Errorf("build request: %w", redactURLError(err))}
	}
	req.ContentLength = int64(task.Event.BodySize)
	req.Header = forwardedHeaders(task.Event.Headers)
	if task.Event.ContentType != "" {
		req.Header.Set("Content-Type", task.Event.ContentType)
	}
	// header_up -<field>: the sender's headers that must not leave, such
	// as its credentials for the gateway.
	for _, name := range s.headersRemove {
		req.Header.Del(name)
	}
	// The sender's User-Agent goes through: receivers tell providers by it.
	// The gateway says who it is in a header of its own.
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", UserAgent)
	}
	req.Header.Set(VersionHeader, UserAgent)
	// A provider that signs with the Standard Webhooks scheme signs its own
	// webhook-id and webhook-timestamp: unless the target signs (below),
	// keep them, so that the receiver can still verify its signature.
	if len(keys) == 0 && (req.Header.Get("Webhook-Signature") == "" || req.Header.Get("Webhook-Id") == "") {
		req.Header.Set("Webhook-Id", msgID)
		req.Header.Set("Webhook-Timestamp", timestamp)
	}
	// The event's id in the gateway's event log, for the receiver to quote.
	req.Header.Set("Webhooker-Event-Id", task.Event.ID)
	eventHops := req.Header.Values(HopHeader)
	for name, values := range s.headersAdd {
		for _, value := range values {
			req.Header.Add(name, value)
		}
	}
	for name, value := range s.headers {
		req.Header.Set(name, value)
	}
	// The gateway's signature replaces the sender's, over any configured
	// header: a receiver must be able to verify it.
	if len(keys) > 0 {
		req.Header.Set("Webhook-Id", msgID)
		req.Header.Set("Webhook-Timestamp", timestamp)
		req.Header.Set("Webhook-Signature", sig)
	}
	// Last, from the event's own hops: neither the event nor a configured
	// header can remove or forge this gateway's id, on which loop
	// detection depends.
	req.Header[HopHeader] = eventHops
	addHop(req.Header, gatewayID)
	// Set from what the gateway checked, never from the sender or a
	// configured header: a receiver may trust it as far as it trusts us.
	req.Header.Del(VerifiedHeader)
	if task.Event.Verified != "" {
		req.Header.Set(VerifiedHeader, task.Event.Verified)
	}

	resp, err := client.Do(req)
	if errors.Is(err, ErrTargetPolicy) {
		// Refused before a connection was made: it says nothing of the
		// target's health, and trying again would be refused again.
		return attemptResult{err: describeTransportError(err, s.timeout), permanent: true, refused: true}
	}
	if err != nil {
		return attemptResult{err: describeTransportError(err, s.timeout), countsAgainstTarget: true}
	}
	defer resp.Body.Close()
	excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, responseExcerpt))
	// Drain a little more so the connection can be reused; not without end.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))

	r := attemptResult{statusCode: resp.StatusCode, response: excerpt}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return r
	case resp.StatusCode == http.StatusGone:
		r.err, r.permanent = fmt.Errorf("target answered 410 Gone: not retrying"), true
	case resp.StatusCode == http.StatusLoopDetected:
		// A gateway this delivery went through already (this one, say: a
		// target on one of its own entrypoints) refused it. Sending it
		// again would loop again.
		r.err, r.permanent = fmt.Errorf("target answered 508 Loop Detected: the delivery came back to a gateway it went through; not retrying"), true
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		r.err = fmt.Errorf("target answered %d (redirect to %q, not followed)", resp.StatusCode, resp.Header.Get("Location"))
	default:
		r.err = fmt.Errorf("target answered %d", resp.StatusCode)
		// A 429 is not: the target is well and asks for less, which the
		// engine gives it by slowing all its deliveries (targetRates).
		r.countsAgainstTarget = resp.StatusCode >= 500 || resp.StatusCode == http.StatusRequestTimeout
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		r.retryAfter = resp.Header
	}
	return r
}

// signBody signs body for keys and returns the signature with a reader of
// the same body from its start.
func signBody(keys []signingKey, msgID string, timestamp int64, body io.Reader) (string, io.Reader, error) {
	rs, ok := body.(io.ReadSeeker)
	if !ok {
		b, err := io.ReadAll(body)
		if err != nil {
			return "", nil, fmt.Errorf("read the body to sign it: %w", err)
		}
		rs = bytes.NewReader(b)
	}
	sig, err := signature(keys, msgID, timestamp, rs)
	if err != nil {
		return "", nil, err
	}
	if _, err := rs.Seek(0, io.SeekStart); err != nil {
		return "", nil, fmt.Errorf("rewind the signed body: %w", err)
	}
	return sig, rs, nil
}

// mergeQuery is the query string of a delivery: the target URL's, then the
// parameters of the entrypoint request's (event) that the target's does not
// name, so that the target's own parameters win a clash. Each parameter is
// kept as it was written; bytes that cannot appear in a request line
// (controls, space, '#', non-ASCII) are percent-encoded.
func mergeQuery(target, event string) string {
	if event == "" {
		return target
	}
	taken := make(map[string]bool)
	for _, p := range strings.Split(target, "&") {
		if p != "" {
			taken[queryKey(p)] = true
		}
	}
	merged := target
	for _, p := range strings.Split(event, "&") {
		if p == "" || taken[queryKey(p)] {
			continue
		}
		if merged != "" {
			merged += "&"
		}
		merged += escapeQueryBytes(p)
	}
	return merged
}

// queryKey is the unescaped name of a query parameter written as k=v.
func queryKey(param string) string {
	k, _, _ := strings.Cut(param, "=")
	if u, err := url.QueryUnescape(k); err == nil {
		return u
	}
	return k
}

// escapeQueryBytes percent-encodes the bytes of s that a request line
// cannot carry as they are.
func escapeQueryBytes(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '#' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// forwardedHeaders copies the end-to-end headers of the event, dropping the
// hop-by-hop ones, including those the Connection header names.
func forwardedHeaders(in http.Header) http.Header {
	out := make(http.Header, len(in))
	for name, values := range in {
		out[name] = append([]string(nil), values...)
	}
	for _, v := range in.Values("Connection") {
		for _, name := range strings.Split(v, ",") {
			out.Del(strings.TrimSpace(name))
		}
	}
	for _, name := range hopHeaders {
		out.Del(name)
	}
	return out
}

// describeTransportError says why an attempt got no answer, without the
// URL's query string or credentials, which may hold a secret (the error
// text is stored in the event log and shown to the webhook's owner).
func describeTransportError(err error, timeout time.Duration) error {
	err = redactURLError(err)
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("no answer within the target's timeout (%s): %w", timeout, err)
	}
	return err
}

// redactURLError rewrites the URL a *url.Error quotes with redactURL.
func redactURLError(err error) error {
	var uerr *url.Error
	if !errors.As(err, &uerr) {
		return err
	}
	redacted := *uerr
	redacted.URL = redactURL(uerr.URL)
	if uerr == err {
		return &redacted
	}
	// Wrapped deeper than expected: the text as a whole cannot be trusted
	// to be free of the URL, so keep only the cause's.
	return fmt.Errorf("%s %q: %w", redacted.Op, redacted.URL, uerr.Err)
}

// redactURL is raw with its credentials, query string and fragment replaced
// by REDACTED: http://host:8080/x?REDACTED.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		// Not a URL we can take apart: keep the scheme only.
		scheme, _, found := strings.Cut(raw, "://")
		if !found || strings.ContainsAny(scheme, "/?#@") {
			return "REDACTED"
		}
		return scheme + "://REDACTED"
	}
	if u.User != nil {
		u.User = url.User("REDACTED")
	}
	if u.RawQuery != "" || u.ForceQuery {
		u.RawQuery, u.ForceQuery = "REDACTED", false
	}
	if u.Fragment != "" {
		u.Fragment, u.RawFragment = "REDACTED", ""
	}
	return u.String()
}

// GatewayID is this gateway's id in the hop marker of its deliveries: an
// entrypoint that finds it in a request's HopHeader refuses the request
// (LoopDetected).
func (e *Engine) GatewayID() string { return e.opts.GatewayID }
