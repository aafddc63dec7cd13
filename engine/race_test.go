//go:build race

package engine

// raceEnabled: the race detector is on, and measurements of memory and CPU
// mean nothing.
const raceEnabled = true
