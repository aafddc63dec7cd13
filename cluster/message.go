package cluster

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

// Message is one acknowledged event on its way through the intake stream:
// its webhook, the event and the targets it was routed to at ingest.
type Message struct {
	WebhookID string
	Event     *storage.Event
	TargetIDs []string
	// Redelivered is set when the stream had handed this message out
	// before (to this node or to one lost since): its event may already
	// be stored here, or delivered by the node that had it.
	Redelivered bool
}

// meta is the part of a message that is not the request's body, encoded
// as JSON before the body.
type meta struct {
	Webhook       string      `json:"webhook"`
	Targets       []string    `json:"targets"`
	ID            string      `json:"id"`
	EntrypointID  string      `json:"entrypoint_id"`
	EntrypointKey string      `json:"entrypoint_key"`
	Method        string      `json:"method"`
	Path          string      `json:"path"`
	Query         string      `json:"query,omitempty"`
	Headers       http.Header `json:"headers,omitempty"`
	ContentType   string      `json:"content_type,omitempty"`
	RemoteAddr    string      `json:"remote_addr,omitempty"`
	ReceivedAt    time.Time   `json:"received_at"`
	Verified      string      `json:"verified,omitempty"`
}

// maxMetaBytes bounds a message's meta: the request's headers are bounded
// by the HTTP server far below this.
const maxMetaBytes = 4 << 20

// encode lays out a message as a 4-byte meta length, the meta, then the
// body as it came: a body is never re-encoded.
func encode(m *Message) ([]byte, error) {
	ev := m.Event
	js, err := json.Marshal(meta{
		Webhook: m.WebhookID, Targets: m.TargetIDs, ID: ev.ID,
		EntrypointID: ev.EntrypointID, EntrypointKey: ev.EntrypointKey,
		Method: ev.Method, Path: ev.Path, Query: ev.Query, Headers: ev.Headers,
		ContentType: ev.ContentType, RemoteAddr: ev.RemoteAddr, ReceivedAt: ev.ReceivedAt,
		Verified: ev.Verified,
	})
	if err != nil {
		return nil, err
	}
	if len(js) > maxMetaBytes {
		return nil, fmt.Errorf("event meta of %d bytes: at most %d", len(js), maxMetaBytes)
	}
	out := make([]byte, 4, 4+len(js)+len(ev.Body))
	binary.BigEndian.PutUint32(out, uint32(len(js)))
	out = append(out, js...)
	return append(out, ev.Body...), nil
}

var errMalformed = errors.New("not an intake message")

// decode reads what encode wrote. A message the stream holds came from a
// node of this cluster, but is checked all the same: a malformed one is
// reported, never half applied.
func decode(data []byte) (*Message, error) {
	if len(data) < 4 {
		return nil, errMalformed
	}
	n := binary.BigEndian.Uint32(data)
	if n > maxMetaBytes || int(n) > len(data)-4 {
		return nil, fmt.Errorf("%w: meta length %d of %d bytes", errMalformed, n, len(data))
	}
	var m meta
	if err := json.Unmarshal(data[4:4+n], &m); err != nil {
		return nil, fmt.Errorf("%w: %v", errMalformed, err)
	}
	if m.Webhook == "" || m.ID == "" {
		return nil, fmt.Errorf("%w: no webhook or event id", errMalformed)
	}
	body := data[4+n:]
	return &Message{
		WebhookID: m.Webhook, TargetIDs: m.Targets,
		Event: &storage.Event{
			ID: m.ID, EntrypointID: m.EntrypointID, EntrypointKey: m.EntrypointKey,
			Method: m.Method, Path: m.Path, Query: m.Query, Headers: m.Headers,
			Body: append([]byte(nil), body...), ContentType: m.ContentType,
			RemoteAddr: m.RemoteAddr, ReceivedAt: m.ReceivedAt, Verified: m.Verified,
		},
	}, nil
}

// Partitions is how many partitions the webhooks are spread over. Each
// has its own subject and consumer, applied by one node at a time; it is
// fixed, as a webhook's partition must not move while the stream holds
// its events.
const Partitions = 16

// PartitionOf is the partition of webhookID.
func PartitionOf(webhookID string) int {
	h := fnv.New32a()
	h.Write([]byte(webhookID))
	return int(h.Sum32() % Partitions)
}

func subjectOf(partition int) string { return fmt.Sprintf("%s.%d", subjectPrefix, partition) }

func consumerOf(partition int) string { return fmt.Sprintf("webhooker-p%02d", partition) }
