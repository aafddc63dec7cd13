package caddymodule

// IngestMemoryInUse is the body memory reserved by ingests in flight, for
// the tests that check the budget is taken and given back.
func IngestMemoryInUse() int64 { return ingestMemory.inUse.Load() }
