package storage

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"
)

// The attack: PATCH retention_days 999999, one POST, and the event list was
// empty: days*24h overflowed time.Duration and the cutoff landed after every
// event. A retention too long to compute prunes nothing; one that fits
// prunes as before. Whatever bound validation puts on retention_days, this
// holds without it.
func TestRetentionTooLongToComputePrunesNothing(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	cases := []struct {
		days       int
		wantPruned bool // the old finished events
	}{
		{1, true},
		{30, true},
		{36500, false}, // 100 years: computed, and older than every event here
		{int(maxRetentionDays), false},
		{int(maxRetentionDays) + 1, false},
		{999999, false},
		{math.MaxInt, false},
		{math.MaxInt32, false},
		{0, false},
		{-1, false},
		{math.MinInt, false},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%d days", c.days), func(t *testing.T) {
			db := openEventDB(t)
			old := storeEvents(t, db, []time.Time{now.AddDate(0, 0, -40), now.AddDate(-10, 0, 0)}, "a")
			for _, ev := range old {
				setStatus(t, db, ev.ID, "a", DeliveryDelivered)
			}
			recent := storeEvents(t, db, []time.Time{now}, "a")[0]
			setStatus(t, db, recent.ID, "a", DeliveryDelivered)

			n, err := db.PruneRetention(ctx, now, c.days)
			if err != nil {
				t.Fatalf("PruneRetention: %v", err)
			}
			ids := eventIDs(t, db)
			if !contains(ids, recent.ID) {
				t.Errorf("retention %d days pruned the event just received", c.days)
			}
			if c.wantPruned {
				if n != len(old) || len(ids) != 1 {
					t.Errorf("retention %d days pruned %d events (%d left), want the %d old ones", c.days, n, len(ids), len(old))
				}
				return
			}
			if n != 0 || len(ids) != 3 {
				t.Errorf("retention %d days pruned %d events (%d left), want none", c.days, n, len(ids))
			}
		})
	}
}

// The overflow is real: the arithmetic the finding came from puts the cutoff
// of 999999 days after now. RetentionCutoff refuses it instead.
func TestRetentionCutoffSaturates(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	days := 999999
	if naive := now.Add(-time.Duration(days) * 24 * time.Hour); !naive.After(now) {
		t.Fatalf("setup: the naive cutoff of 999999 days is %v, not after now: the case no longer shows the overflow", naive)
	}
	for _, days := range []int{999999, math.MaxInt, int(maxRetentionDays) + 1} {
		if cutoff, ok := RetentionCutoff(now, days); ok {
			t.Errorf("RetentionCutoff(%d days) = %v, want none", days, cutoff)
		}
	}
	if cutoff, ok := RetentionCutoff(now, 1); !ok || !cutoff.Equal(now.Add(-24*time.Hour)) {
		t.Errorf("RetentionCutoff(1 day) = %v, %v, want %v", cutoff, ok, now.Add(-24*time.Hour))
	}
	longest, ok := RetentionCutoff(now, int(maxRetentionDays))
	if !ok || !longest.Before(now.AddDate(-290, 0, 0)) {
		t.Errorf("RetentionCutoff(%d days) = %v, %v, want about 292 years back", maxRetentionDays, longest, ok)
	}
}

// Prune itself saturates cutoffs outside what Unix nanoseconds can hold
// (UnixNano is undefined there): before it nothing is older, after it
// every finished event is.
func TestPruneSaturatesCutoffsOutsideUnixNanoRange(t *testing.T) {
	ctx := context.Background()
	db := openEventDB(t)
	ev := storeEvents(t, db, []time.Time{time.Now().AddDate(-1, 0, 0)}, "a")[0]
	setStatus(t, db, ev.ID, "a", DeliveryDelivered)
	if n, err := db.Prune(ctx, time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil || n != 0 {
		t.Errorf("Prune before year 1678 = %d, %v, want nothing pruned", n, err)
	}
	if n, err := db.Prune(ctx, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil || n != 1 {
		t.Errorf("Prune after year 2262 = %d, %v, want the finished event pruned", n, err)
	}
}
