package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Dedup in cluster mode: a repeat of a webhook's dedup id within the
// webhook's window (from the first event's receipt) is answered with the
// first event's id and stores nothing; past the window the id makes a new
// event, as on a single node.
//
// Two things remember a dedup id. The intake stream remembers each
// message id for streamDedup (JetStream's Nats-Msg-Id): two ingests of one
// id at once, on any nodes, store one message, atomically with the
// publish. A dedup record in a key-value bucket keeps the first event's
// id, when it came, and its generation, for the webhook's window: an
// ingest reads it first, and answers a repeat within the window from it,
// however long ago the stream forgot. A record whose window has passed
// makes the next ingest publish under the next generation's message id,
// which the stream has not seen: a new event, though the stream still
// remembers the id of the one before.
//
// The record is written after the publish, so a node lost between the two
// leaves none: a repeat within streamDedup is still caught by the stream
// (answered without the first id once the stream has let go of the
// message), and one after it makes a second event. At least once, never a
// loss.

const (
	// streamDedup is how long the intake stream remembers a message id.
	streamDedup = 24 * time.Hour
	// dedupMargin keeps a record past the longest window of its bucket, so
	// that one gone means the stream has forgotten its message id too.
	dedupMargin = time.Hour
)

// dedupBuckets keep the records, each for a fixed time: a webhook's go to
// the first whose time covers its window. Fixed, so that no node shortens
// what another keeps; a record is kept at most a few times its window.
var dedupBuckets = [...]struct {
	name string
	ttl  time.Duration
}{
	{"webhooker_dedup", streamDedup + dedupMargin},
	{"webhooker_dedup_3d", 3*24*time.Hour + dedupMargin},
	{"webhooker_dedup_7d", 7*24*time.Hour + dedupMargin},
	{"webhooker_dedup_30d", 30*24*time.Hour + dedupMargin},
}

// dedupBucketOf is the index of the bucket for a window (the last for one
// longer than all, which Validate never lets through).
func dedupBucketOf(window time.Duration) int {
	for i, b := range dedupBuckets {
		if window <= b.ttl-dedupMargin {
			return i
		}
	}
	return len(dedupBuckets) - 1
}

// dedupRecord is what a bucket keeps of a dedup id.
type dedupRecord struct {
	// ID is the first event's id; At when it was received (Unix ms).
	ID string `json:"id"`
	At int64  `json:"at"`
	// Gen counts the windows this dedup id has opened before this one: it
	// was published with msgIDOf(…, Gen).
	Gen uint64 `json:"gen"`
}

// dedupKey is the key of a webhook's dedup id in a bucket (its keys take
// few characters: the id is hashed).
func dedupKey(webhookID, key string) string {
	sum := sha256.Sum256([]byte(key))
	return webhookID + "." + hex.EncodeToString(sum[:16])
}

// msgIDOf is the stream's message id of a dedup id's generation gen. The
// first is the id earlier versions used; a webhook id never holds '#', so
// no dedup id's first generation is another's later one.
func msgIDOf(webhookID, key string, gen uint64) string {
	if gen == 0 {
		return webhookID + "/" + key
	}
	return fmt.Sprintf("%s#%d/%s", webhookID, gen, key)
}

// bucket is the dedup bucket of index i, made on first use.
func (c *Cluster) bucket(ctx context.Context, i int) (jetstream.KeyValue, error) {
	if kv := c.dedup[i].Load(); kv != nil {
		return *kv, nil
	}
	c.dedupMu.Lock()
	defer c.dedupMu.Unlock()
	if kv := c.dedup[i].Load(); kv != nil {
		return *kv, nil
	}
	b := dedupBuckets[i]
	kv, err := c.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      b.name,
		Description: fmt.Sprintf("caddy-webhooker: the first event of each dedup id, for windows up to %s", b.ttl-dedupMargin),
		TTL:         b.ttl,
		Storage:     jetstream.FileStorage,
		Replicas:    c.opts.replicas(),
	})
	if err != nil {
		return nil, fmt.Errorf("dedup bucket %s: %w", b.name, err)
	}
	c.dedup[i].Store(&kv)
	return kv, nil
}

// dedupLookup reads the record of webhookID's dedup id key: nil when there
// is none.
func dedupLookup(ctx context.Context, kv jetstream.KeyValue, k string) (*dedupRecord, error) {
	e, err := kv.Get(ctx, k)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r dedupRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil || r.ID == "" {
		// An earlier version kept the bare event id, for 24 hours.
		return &dedupRecord{ID: string(e.Value()), At: e.Created().UnixMilli()}, nil
	}
	return &r, nil
}

// firstOf is the id of the event first stored with a dedup id's generation
// gen, which the stream took as the message at seq: from the message while
// the stream still holds it, or from the record (whose write may follow
// the repeat by a moment: read again a few times). "" when neither has it
// (the node that stored it was lost before writing the record): the repeat
// is answered without an id, and logged.
func (c *Cluster) firstOf(ctx context.Context, kv jetstream.KeyValue, webhookID, k string, gen, seq uint64) string {
	for try := range 5 {
		if st := c.stream.Load(); st != nil {
			if m, err := (*st).GetMsg(ctx, seq); err == nil {
				return m.Header.Get(headerEvent)
			}
		}
		if r, err := dedupLookup(ctx, kv, k); err == nil && r != nil && r.Gen == gen {
			return r.ID
		}
		select {
		case <-ctx.Done():
			return ""
		case <-time.After(time.Duration(try+1) * 20 * time.Millisecond):
		}
	}
	c.log.Warn("a repeated dedup id whose first event id is not known here: answered without it",
		zap.String("webhook_id", webhookID))
	return ""
}
