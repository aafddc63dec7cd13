// Package duequeue owns the keyed min-heap of due times that the delivery
// engine's schedule and the data directory's retention both keep: one entry
// per key (a webhook), earliest first, so that each can hold a single timer
// for the earliest due time of all instead of one timer per key.
package duequeue

import "time"

// Queue holds at most one due time per key, earliest first. The zero value
// is an empty queue ready for use. It is not safe for concurrent use: its
// owners guard it with the mutex that guards their timer.
type Queue[K comparable] struct {
	entries []entry[K]
	// index is each key's place in entries, so that moving or removing a
	// key is O(log n), not a search.
	index map[K]int
}

type entry[K comparable] struct {
	key K
	at  time.Time
}

// Len is the number of keys with a due time.
func (q *Queue[K]) Len() int { return len(q.entries) }

// CountAfter is the number of keys due after t (a walk of every key: for
// a gauge, not a hot path).
func (q *Queue[K]) CountAfter(t time.Time) int {
	n := 0
	for _, e := range q.entries {
		if e.at.After(t) {
			n++
		}
	}
	return n
}

// At is k's due time, and whether k has one.
func (q *Queue[K]) At(k K) (time.Time, bool) {
	i, ok := q.index[k]
	if !ok {
		return time.Time{}, false
	}
	return q.entries[i].at, true
}

// Set makes k due at at: it adds k, or moves it, earlier or later.
func (q *Queue[K]) Set(k K, at time.Time) {
	if i, ok := q.index[k]; ok {
		q.entries[i].at = at
		if !q.up(i) {
			q.down(i)
		}
		return
	}
	if q.index == nil {
		q.index = make(map[K]int)
	}
	q.entries = append(q.entries, entry[K]{key: k, at: at})
	q.index[k] = len(q.entries) - 1
	q.up(len(q.entries) - 1)
}

// SetEarlier makes k due at at unless it is due earlier already, and says
// whether it changed anything. Both owners merge what they are told this
// way: a due time only ever comes forward until it is taken.
func (q *Queue[K]) SetEarlier(k K, at time.Time) bool {
	if cur, ok := q.At(k); ok && !at.Before(cur) {
		return false
	}
	q.Set(k, at)
	return true
}

// Remove takes k's due time out, if it has one, and says whether it had.
func (q *Queue[K]) Remove(k K) bool {
	i, ok := q.index[k]
	if !ok {
		return false
	}
	q.removeAt(i)
	return true
}

// Peek is the key due first and its due time, without taking it; ok is
// false when the queue is empty.
func (q *Queue[K]) Peek() (k K, at time.Time, ok bool) {
	if len(q.entries) == 0 {
		return k, at, false
	}
	return q.entries[0].key, q.entries[0].at, true
}

// Pop takes the key due first out, with its due time; ok is false when the
// queue is empty.
func (q *Queue[K]) Pop() (k K, at time.Time, ok bool) {
	if len(q.entries) == 0 {
		return k, at, false
	}
	first := q.entries[0]
	q.removeAt(0)
	return first.key, first.at, true
}

// PopDue takes out the key due first if it is due by now (at or before
// it), with its due time; ok is false when none is.
func (q *Queue[K]) PopDue(now time.Time) (k K, at time.Time, ok bool) {
	if len(q.entries) == 0 || q.entries[0].at.After(now) {
		return k, at, false
	}
	return q.Pop()
}

// Clear takes every due time out, and lets go of the memory they held.
func (q *Queue[K]) Clear() {
	q.entries, q.index = nil, nil
}

// removeAt takes out the entry at i: the last entry takes its place and
// moves up or down from there.
func (q *Queue[K]) removeAt(i int) {
	last := len(q.entries) - 1
	delete(q.index, q.entries[i].key)
	if i != last {
		q.entries[i] = q.entries[last]
		q.index[q.entries[i].key] = i
	}
	q.entries[last] = entry[K]{} // a pointer key is not kept alive
	q.entries = q.entries[:last]
	if i != last && !q.up(i) {
		q.down(i)
	}
}

// up moves the entry at i towards the root while it is due before its
// parent, and says whether it moved.
func (q *Queue[K]) up(i int) bool {
	start := i
	for i > 0 {
		parent := (i - 1) / 2
		if !q.entries[i].at.Before(q.entries[parent].at) {
			break
		}
		q.swap(i, parent)
		i = parent
	}
	return i != start
}

// down moves the entry at i towards the leaves while a child is due before
// it.
func (q *Queue[K]) down(i int) {
	n := len(q.entries)
	for {
		first := i
		if l := 2*i + 1; l < n && q.entries[l].at.Before(q.entries[first].at) {
			first = l
		}
		if r := 2*i + 2; r < n && q.entries[r].at.Before(q.entries[first].at) {
			first = r
		}
		if first == i {
			return
		}
		q.swap(i, first)
		i = first
	}
}

func (q *Queue[K]) swap(i, j int) {
	q.entries[i], q.entries[j] = q.entries[j], q.entries[i]
	q.index[q.entries[i].key] = i
	q.index[q.entries[j].key] = j
}
