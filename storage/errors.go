package storage

import (
	"errors"
	"fmt"
)

// The errors of this package's API. They are wrapped with detail (%w), so
// test for them with errors.Is; the admin API maps them to status codes.
var (
	// ErrNotFound: the row asked for does not exist, is deleted, or does not
	// belong to the parent named with it.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a unique name or key is taken, or a row is still in use.
	ErrConflict = errors.New("conflict")
	// ErrReadOnly: the webhook is declared in the Caddyfile, which owns it.
	ErrReadOnly = errors.New("the webhook is declared in the Caddyfile, which owns it: change it there")
	// ErrUnauthorized: an API key that is unknown, revoked, or whose user is deleted.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrInvalid: bad input, such as a name, key, URL or option that does not validate.
	ErrInvalid = errors.New("invalid")
	// ErrNotOpen: the delivery is neither pending nor retrying (delivered,
	// or failed), so it cannot be retried now or cancelled.
	ErrNotOpen = errors.New("the delivery is not open (pending or retrying)")
)

// readOnlyError names the Caddyfile-declared webhook a change was refused for.
type readOnlyError struct{ name string }

func (e readOnlyError) Error() string {
	return fmt.Sprintf("webhook %s is declared in the Caddyfile, which owns it: change it there", e.name)
}

func (e readOnlyError) Is(target error) bool { return target == ErrReadOnly }

// invalid wraps a validation error so that errors.Is(err, ErrInvalid) holds.
func invalid(err error) error { return fmt.Errorf("%w: %v", ErrInvalid, err) }
