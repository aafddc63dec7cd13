package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DefaultTimeout bounds one http attempt, response included.
const DefaultTimeout = 30 * time.Second

// responseExcerpt is how much of a target's answer each attempt keeps.
const responseExcerpt = 4 << 10

// UserAgent is sent with every http delivery.
const UserAgent = "caddy-webhooker/0.1 (+https://github.com/webhooker/caddy-webhooker)"

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
	// permanent failures are not retried: the target answered 410 Gone.
	permanent bool
	// countsAgainstTarget failures say the target is unwell (network error,
	// timeout, 5xx, 408, 429) and feed its circuit breaker.
	countsAgainstTarget bool
}

func newHTTPClient() *http.Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 64
	return &http.Client{
		Transport: transport,
		// A redirect is an answer, not an instruction to re-send the body
		// elsewhere: it counts as a failed attempt.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// deliverHTTP POSTs the event to the target: the original body and content
// type, the end-to-end headers, and the webhook-id and webhook-timestamp
// headers of the Standard Webhooks convention.
func deliverHTTP(ctx context.Context, client *http.Client, s httpSettings, task *Task, body io.Reader, now time.Time) attemptResult {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, task.Target.URL, body)
	if err != nil {
		return attemptResult{err: fmt.Errorf("build request: %w", err)}
	}
	req.ContentLength = int64(task.Event.BodySize)
	req.Header = forwardedHeaders(task.Event.Headers)
	if task.Event.ContentType != "" {
		req.Header.Set("Content-Type", task.Event.ContentType)
	}
	req.Header.Set("User-Agent", UserAgent)
	// A provider that signs with the Standard Webhooks scheme signs its own
	// webhook-id and webhook-timestamp: keep them, so that the receiver can
	// still verify its signature. They are as stable across retries as ours.
	if req.Header.Get("Webhook-Signature") == "" || req.Header.Get("Webhook-Id") == "" {
		req.Header.Set("Webhook-Id", task.DeliveryID)
		req.Header.Set("Webhook-Timestamp", strconv.FormatInt(now.Unix(), 10))
	}
	// The event's id in the gateway's event log, for the receiver to quote.
	req.Header.Set("Webhooker-Event-Id", task.Event.ID)
	for name, value := range s.headers {
		req.Header.Set(name, value)
	}

	resp, err := client.Do(req)
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
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		r.err = fmt.Errorf("target answered %d (redirect to %q, not followed)", resp.StatusCode, resp.Header.Get("Location"))
	default:
		r.err = fmt.Errorf("target answered %d", resp.StatusCode)
		r.countsAgainstTarget = resp.StatusCode >= 500 ||
			resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		r.retryAfter = resp.Header
	}
	return r
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

func describeTransportError(err error, timeout time.Duration) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("no answer within the target's timeout (%s): %w", timeout, err)
	}
	return err
}
