package caddymodule

import (
	"fmt"
	"net/http"
	"slices"
	"sync"

	"github.com/caddyserver/caddy/v2"

	"github.com/webhooker/caddy-webhooker/handshake"
	"github.com/webhooker/caddy-webhooker/storage"
	"github.com/webhooker/caddy-webhooker/verify"
)

// entrypointAuth is what an entrypoint's options build: its verifiers and
// its handshake. Immutable, shared by the requests to the entrypoint.
type entrypointAuth struct {
	verifiers []verify.Verifier
	handshake handshake.Handshake // nil: none
}

// buildEntrypointAuth builds the verifiers and handshake of o, whose
// placeholders are already replaced (storage.EntrypointOptions.Build: the
// checks the API makes too). Errors never quote a secret.
func buildEntrypointAuth(o storage.EntrypointOptions) (*entrypointAuth, error) {
	verifiers, hs, err := o.Build()
	if err != nil {
		return nil, err
	}
	return &entrypointAuth{verifiers: verifiers, handshake: hs}, nil
}

// resolveEntrypointOptions returns o with the {env.X} placeholders of its
// secrets and handshake arguments replaced ({$X} the Caddyfile adapter
// replaced already). Provision stores the result, so that the secret in
// force is the one of the environment the config was loaded in.
func resolveEntrypointOptions(o storage.EntrypointOptions) storage.EntrypointOptions {
	repl := caddy.NewReplacer()
	out := o
	out.Verify = make([]storage.VerifyRule, len(o.Verify))
	for i, rule := range o.Verify {
		rule.Secrets = slices.Clone(rule.Secrets)
		for j, s := range rule.Secrets {
			rule.Secrets[j] = repl.ReplaceKnown(s, "")
		}
		out.Verify[i] = rule
	}
	if len(out.Verify) == 0 {
		out.Verify = nil
	}
	if o.Handshake != nil {
		hs := *o.Handshake
		hs.Args = slices.Clone(hs.Args)
		for j, s := range hs.Args {
			hs.Args[j] = repl.ReplaceKnown(s, "")
		}
		out.Handshake = &hs
	}
	return out
}

// builtAuth is an entrypoint's auth and the options it was built from.
type builtAuth struct {
	key  string // storage.Entrypoint.OptionsKey
	auth *entrypointAuth
}

// entrypointAuths caches the auth of each entrypoint by id, so that the
// verifiers are built when an entrypoint's options change, not per request.
// It holds one entry per entrypoint with options, replaced when they change.
var entrypointAuths sync.Map // entrypoint id → *builtAuth

// authOf returns the auth of e; nil when it has no options.
func authOf(e storage.Entrypoint) (*entrypointAuth, error) {
	key := e.OptionsKey()
	if key == "" {
		return nil, nil
	}
	if b, ok := entrypointAuths.Load(e.ID); ok && b.(*builtAuth).key == key {
		return b.(*builtAuth).auth, nil
	}
	auth, err := buildEntrypointAuth(e.Options)
	if err != nil {
		return nil, fmt.Errorf("entrypoint %q: %w", e.Key, err)
	}
	entrypointAuths.Store(e.ID, &builtAuth{key: key, auth: auth})
	return auth, nil
}

// allowsGET reports whether the entrypoint answers a GET handshake.
func (a *entrypointAuth) allowsGET() bool {
	return a != nil && a.handshake != nil && a.handshake.Method() == http.MethodGet
}

// verifyRequest checks r against the verifiers: nil when one passes (or
// there are none), else the first verifier's refusal.
func (a *entrypointAuth) verifyRequest(r *http.Request, body []byte) (scheme string, err error) {
	if a == nil || len(a.verifiers) == 0 {
		return "", nil
	}
	req := verify.Request{Method: r.Method, URL: providerURL(r), Header: r.Header, Body: body}
	var first error
	for _, v := range a.verifiers {
		err := v.Verify(req)
		if err == nil {
			return v.Scheme(), nil
		}
		if first == nil {
			first = err
		}
	}
	return "", first
}

// providerURL is the URL as the provider requested it, which Twilio signs.
func providerURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + r.RequestURI
}
