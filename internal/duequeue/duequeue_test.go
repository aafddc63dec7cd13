package duequeue

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

func at(minutes int) time.Time { return t0.Add(time.Duration(minutes) * time.Minute) }

// drain pops every key, in order, checking each key's due time against
// what At said of it just before.
func drain(t *testing.T, q *Queue[string]) []string {
	t.Helper()
	var keys []string
	for q.Len() > 0 {
		pk, pat, _ := q.Peek()
		k, due, ok := q.Pop()
		if !ok || k != pk || !due.Equal(pat) {
			t.Fatalf("Pop = %q %s %v after Peek = %q %s", k, due, ok, pk, pat)
		}
		if _, still := q.At(k); still {
			t.Fatalf("%q still has a due time after Pop", k)
		}
		keys = append(keys, k)
	}
	return keys
}

func TestQueue(t *testing.T) {
	tests := []struct {
		name string
		do   func(q *Queue[string])
		want []string // keys popped, earliest first
	}{
		{"earliest first", func(q *Queue[string]) {
			q.Set("c", at(3))
			q.Set("a", at(1))
			q.Set("d", at(4))
			q.Set("b", at(2))
		}, []string{"a", "b", "c", "d"}},
		{"set again moves up", func(q *Queue[string]) {
			for i, k := range []string{"a", "b", "c", "d", "e"} {
				q.Set(k, at(i+1))
			}
			q.Set("e", at(0))
		}, []string{"e", "a", "b", "c", "d"}},
		{"set again moves down", func(q *Queue[string]) {
			for i, k := range []string{"a", "b", "c", "d", "e"} {
				q.Set(k, at(i+1))
			}
			q.Set("a", at(10))
		}, []string{"b", "c", "d", "e", "a"}},
		{"set earlier keeps the earliest", func(q *Queue[string]) {
			q.Set("a", at(5))
			q.Set("b", at(3))
			q.SetEarlier("a", at(9)) // later: kept at 5
			q.SetEarlier("b", at(1))
			q.SetEarlier("c", at(4)) // new
		}, []string{"b", "c", "a"}},
		{"remove from the middle", func(q *Queue[string]) {
			for i, k := range []string{"a", "b", "c", "d", "e", "f", "g"} {
				q.Set(k, at(i+1))
			}
			q.Remove("c")
			q.Remove("b")
			q.Remove("x") // never set
		}, []string{"a", "d", "e", "f", "g"}},
		{"remove the last and the first", func(q *Queue[string]) {
			q.Set("a", at(1))
			q.Set("b", at(2))
			q.Set("c", at(3))
			q.Remove("c")
			q.Remove("a")
		}, []string{"b"}},
		{"clear", func(q *Queue[string]) {
			q.Set("a", at(1))
			q.Set("b", at(2))
			q.Clear()
			q.Set("c", at(3))
		}, []string{"c"}},
		{"empty", func(q *Queue[string]) {}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var q Queue[string]
			tt.do(&q)
			if got := drain(t, &q); !slices.Equal(got, tt.want) {
				t.Errorf("popped %v, want %v", got, tt.want)
			}
			if k, _, ok := q.Pop(); ok {
				t.Errorf("Pop on an empty queue = %q, true", k)
			}
			if k, _, ok := q.Peek(); ok {
				t.Errorf("Peek on an empty queue = %q, true", k)
			}
		})
	}
}

func TestSetEarlierAndRemoveSayWhatTheyDid(t *testing.T) {
	var q Queue[int]
	if !q.SetEarlier(1, at(5)) || q.SetEarlier(1, at(5)) || q.SetEarlier(1, at(6)) || !q.SetEarlier(1, at(4)) {
		t.Error("SetEarlier changed, or kept, the wrong due times")
	}
	if due, ok := q.At(1); !ok || !due.Equal(at(4)) {
		t.Errorf("At(1) = %s %v, want %s", due, ok, at(4))
	}
	if !q.Remove(1) || q.Remove(1) || q.Len() != 0 {
		t.Errorf("Remove twice: want true then false, and an empty queue (len %d)", q.Len())
	}
}

// Many random sets, moves and removes pop in the order a sort gives.
func TestQueueAgainstASort(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 13))
	var q Queue[int]
	model := map[int]time.Time{}
	for range 5000 {
		k := rng.IntN(200)
		switch rng.IntN(3) {
		case 0, 1:
			due := at(rng.IntN(1000))
			q.Set(k, due)
			model[k] = due
		case 2:
			if q.Remove(k) != (func() bool { _, ok := model[k]; return ok })() {
				t.Fatalf("Remove(%d) disagrees with the model", k)
			}
			delete(model, k)
		}
	}
	if q.Len() != len(model) {
		t.Fatalf("Len %d, model %d", q.Len(), len(model))
	}
	var prev time.Time
	for q.Len() > 0 {
		k, due, _ := q.Pop()
		if want, ok := model[k]; !ok || !due.Equal(want) {
			t.Fatalf("popped %d at %s, model %s %v", k, due, want, ok)
		}
		if due.Before(prev) {
			t.Fatalf("popped %s after %s", due, prev)
		}
		prev = due
		delete(model, k)
	}
}

// PopDue takes only what is due by now, at its exact time included.
func TestPopDueTakesOnlyWhatIsDue(t *testing.T) {
	var q Queue[string]
	q.Set("later", at(2))
	q.Set("now", at(1))
	q.Set("before", at(0))
	var got []string
	for k, _, ok := q.PopDue(at(1)); ok; k, _, ok = q.PopDue(at(1)) {
		got = append(got, k)
	}
	if !slices.Equal(got, []string{"before", "now"}) || q.Len() != 1 {
		t.Errorf("PopDue took %v, left %d; want [before now], 1 left", got, q.Len())
	}
	q.Clear()
	if k, _, ok := q.PopDue(at(9)); ok {
		t.Errorf("PopDue on an empty queue = %q, true", k)
	}
}

func TestCountAfter(t *testing.T) {
	var q Queue[string]
	t0 := time.Unix(1_700_000_000, 0)
	q.Set("now", time.Time{})
	q.Set("past", t0.Add(-time.Second))
	q.Set("at", t0)
	q.Set("later", t0.Add(time.Second))
	q.Set("much later", t0.Add(time.Hour))
	if n := q.CountAfter(t0); n != 2 {
		t.Errorf("CountAfter = %d, want 2 (later, much later)", n)
	}
	var empty Queue[int]
	if n := empty.CountAfter(t0); n != 0 {
		t.Errorf("CountAfter of an empty queue = %d", n)
	}
}
