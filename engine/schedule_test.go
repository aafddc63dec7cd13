package engine

import "fmt"

// engineMapSizes is the size of every map and timer set the engine keeps,
// for the backlog test's figures: none may grow with waiting deliveries.
func engineMapSizes(e *Engine) string {
	e.scanMu.Lock()
	due, heap, recovering := len(e.due), len(e.dueOrder), len(e.recovering)
	e.scanMu.Unlock()
	e.timersMu.Lock()
	faults := len(e.faultTimers)
	e.timersMu.Unlock()
	count := func(m interface{ Range(func(any, any) bool) }) int {
		n := 0
		m.Range(func(any, any) bool { n++; return true })
		return n
	}
	e.breakersMu.Lock()
	breakers := len(e.breakers)
	e.breakersMu.Unlock()
	return fmt.Sprintf("maps: due %d, dueOrder %d, recovering %d, faultTimers %d, owned %d, cancelled %d, storageFaults %d, readFaults %d, breakers %d, parked %d",
		due, heap, recovering, faults, count(&e.owned), count(&e.cancelled), count(&e.storageFaults), count(&e.readFaults), breakers, e.ParkedDeliveries())
}
