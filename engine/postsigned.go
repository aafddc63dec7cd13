package engine

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

// PostSigned POSTs one JSON body to rawURL, as an http target of the
// operator's with opts would send a delivery: its headers, its timeout, the
// hop marker, and the Standard Webhooks headers with webhook-id msgID,
// signed when opts has a signing secret. It goes through the operator's
// transport and the target policy in force, which never reaches Caddy's
// admin endpoint. For messages of the gateway's own (the operational
// webhook), not for events: nothing is recorded, nothing retried. A 2xx is
// success; any other answer is returned with an error.
func (e *Engine) PostSigned(ctx context.Context, rawURL string, opts storage.TargetOptions, msgID string, body []byte) (statusCode int, err error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return 0, fmt.Errorf("post to %s: want an http or https URL", redactURL(rawURL))
	}
	s := settingsOf(storage.Target{Options: opts})
	ctx, cancel := context.WithTimeout(withTenant(ctx, false), s.timeout)
	defer cancel()
	now := time.Now()
	keys, err := signingKeys(opts, now)
	if err != nil {
		return 0, err
	}
	var sig string
	if len(keys) > 0 {
		if sig, err = signature(keys, msgID, now.Unix(), bytes.NewReader(body)); err != nil {
			return 0, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("post to %s: %w", redactURL(rawURL), redactURLError(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set(VersionHeader, UserAgent)
	for name, values := range s.headersAdd {
		for _, value := range values {
			req.Header.Add(name, value)
		}
	}
	for name, value := range s.headers {
		req.Header.Set(name, value)
	}
	// As in deliverHTTP: the signature and the hop marker come last, so
	// that no configured header can replace them.
	req.Header.Set("Webhook-Id", msgID)
	req.Header.Set("Webhook-Timestamp", strconv.FormatInt(now.Unix(), 10))
	if sig != "" {
		req.Header.Set("Webhook-Signature", sig)
	} else {
		req.Header.Del("Webhook-Signature")
	}
	req.Header.Del(HopHeader)
	addHop(req.Header, e.opts.GatewayID)

	resp, err := e.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("post to %s: %w", redactURL(rawURL), describeTransportError(err, s.timeout))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so that the connection is reused
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("post to %s: answered %d", redactURL(rawURL), resp.StatusCode)
	}
	return resp.StatusCode, nil
}
