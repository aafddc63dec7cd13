package caddymodule

import (
	"fmt"

	"github.com/webhooker/caddy-webhooker/storage"
)

// declarations checks the webhooks of one config as they are declared, one
// piece at a time. The Caddyfile calls it at each line, so that a mistake is
// reported with its file and line; Provision calls it over the JSON config
// (declaredWebhooks), so that JSON users get the very same checks.
type declarations struct {
	// targets holds each declared webhook's target names.
	targets map[string]map[string]bool
	// keys maps each declared entrypoint key to its webhook: a key routes
	// to one webhook only.
	keys map[string]string
}

func newDeclarations() *declarations {
	return &declarations{targets: make(map[string]map[string]bool), keys: make(map[string]string)}
}

// webhook checks a webhook's name, unique in the config, and its settings.
func (ds *declarations) webhook(wc *WebhookConfig) error {
	if err := storage.ValidateName("webhook", wc.Name); err != nil {
		return err
	}
	if _, dup := ds.targets[wc.Name]; dup {
		return fmt.Errorf("webhook %s is declared twice", wc.Name)
	}
	ds.targets[wc.Name] = make(map[string]bool)
	if err := checkRetentionDays(wc); err != nil {
		return err
	}
	return checkDedup(wc)
}

// checkDedup holds a declared webhook's dedup to the operator's limits,
// compiling an expression: the Caddyfile reports CEL's message at the
// dedup line.
func checkDedup(wc *WebhookConfig) error {
	if wc.Dedup == nil {
		return nil
	}
	if err := wc.Dedup.Validate(storage.OperatorLimits()); err != nil {
		return fmt.Errorf("webhook %s: %w", wc.Name, err)
	}
	return nil
}

// checkRetentionDays holds a declared webhook to the operator's bound, as
// the admin API does: a retention beyond it would overflow and prune
// acknowledged events.
func checkRetentionDays(wc *WebhookConfig) error {
	if err := storage.ValidateRetentionDays(wc.RetentionDays, storage.OperatorLimits()); err != nil {
		return fmt.Errorf("webhook %s: %w", wc.Name, err)
	}
	return nil
}

// entrypoint checks an entrypoint key of webhook, unique in the config.
func (ds *declarations) entrypoint(webhook string, ec EntrypointConfig) error {
	if err := storage.ValidateEntrypointKey(ec.Key); err != nil {
		return fmt.Errorf("webhook %s: %w", webhook, err)
	}
	switch other, dup := ds.keys[ec.Key]; {
	case dup && other == webhook:
		return fmt.Errorf("webhook %s: entrypoint key %q is declared twice", webhook, ec.Key)
	case dup:
		return fmt.Errorf("webhook %s: entrypoint key %q is already used by webhook %s", webhook, ec.Key, other)
	}
	ds.keys[ec.Key] = webhook
	return nil
}

// checkEntrypointOptions builds the verifiers and handshake of an
// entrypoint, its placeholders replaced, and returns the options resolved.
// The Caddyfile calls it after each verify, tolerance or handshake line, so
// that the line that broke a rule is the one named.
func checkEntrypointOptions(webhook string, ec EntrypointConfig) (storage.EntrypointOptions, error) {
	resolved := resolveEntrypointOptions(ec.Options)
	if _, err := buildEntrypointAuth(resolved); err != nil {
		return resolved, fmt.Errorf("webhook %s: entrypoint %q: %w", webhook, ec.Key, err)
	}
	return resolved, nil
}

// target checks that a target's name is unique in its webhook, then the
// target itself (checkTarget).
func (ds *declarations) target(webhook string, tc TargetConfig) error {
	if err := checkTarget(webhook, tc); err != nil {
		return err
	}
	if ds.targets[webhook][tc.Name] {
		return fmt.Errorf("webhook %s: target %s is declared twice", webhook, tc.Name)
	}
	ds.targets[webhook][tc.Name] = true
	return nil
}

// checkTarget checks a target's name, type, URL and options against the
// operator's limits. The Caddyfile calls it again after each option of a
// target's block, so that the line of the option that broke a rule (a
// backoff under its initial value, a header given twice) is the one named.
func checkTarget(webhook string, tc TargetConfig) error {
	if err := declaredTarget("", tc).Validate(); err != nil {
		return fmt.Errorf("webhook %s: %w", webhook, err)
	}
	return nil
}

// checkMaxInFlight refuses a declared target's max_in_flight over the
// workers: that many attempts could never be in flight at once.
func checkMaxInFlight(declared []*storage.Webhook, workers int) error {
	for _, w := range declared {
		for _, t := range w.Targets {
			if n := t.Options.MaxInFlight; n != nil && *n > workers {
				return fmt.Errorf("webhook %s: target %s: max_in_flight %d is over workers %d", w.Name, t.Name, *n, workers)
			}
		}
	}
	return nil
}

func declaredTarget(webhookID string, tc TargetConfig) storage.Target {
	return storage.Target{
		ID: storage.DeclaredTargetID(webhookID, tc.Name), WebhookID: webhookID, Name: tc.Name,
		Type: storage.TargetType(tc.Type), URL: tc.URL, Options: tc.Options, Filter: tc.Filter, Active: !tc.Disabled,
	}
}

// declaredWebhooks checks the declarations of a config, with the same checks
// as its Caddyfile, and gives each its stable ids.
func declaredWebhooks(configs []*WebhookConfig) ([]*storage.Webhook, error) {
	ds := newDeclarations()
	out := make([]*storage.Webhook, 0, len(configs))
	for _, wc := range configs {
		if err := ds.webhook(wc); err != nil {
			return nil, err
		}
		w := &storage.Webhook{
			ID: storage.DeclaredWebhookID(wc.Name), Name: wc.Name, Description: wc.Description,
			Source: storage.SourceCaddyfile, Active: !wc.Disabled, RetentionDays: wc.RetentionDays,
			Dedup: wc.Dedup,
		}
		for _, ec := range wc.Entrypoints {
			if err := ds.entrypoint(wc.Name, ec); err != nil {
				return nil, err
			}
			options, err := checkEntrypointOptions(wc.Name, ec)
			if err != nil {
				return nil, err
			}
			w.Entrypoints = append(w.Entrypoints, storage.Entrypoint{
				ID: storage.DeclaredEntrypointID(w.ID, ec.Key), WebhookID: w.ID, Key: ec.Key, Active: !ec.Disabled,
				Options: options,
			})
		}
		for _, tc := range wc.Targets {
			if err := ds.target(wc.Name, tc); err != nil {
				return nil, err
			}
			w.Targets = append(w.Targets, declaredTarget(w.ID, tc))
		}
		out = append(out, w)
	}
	return out, nil
}
