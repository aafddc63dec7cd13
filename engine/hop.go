package engine

import (
	"net/http"
	"strings"
)

// HopHeader marks a request that went through a gateway: every http delivery
// carries it with the delivering gateway's id appended to the ids it came
// in with, the way proxies append to Via. An entrypoint that finds its own
// gateway's id in it refuses the request (508 Loop Detected), so that no
// webhook feeds itself, directly or through other gateways.
const HopHeader = "Webhooker-Via"

// VerifiedHeader carries, on a delivery, the verify scheme its event passed
// at the entrypoint (github, stripe, …); absent when the entrypoint verifies
// nothing. A sender's own is removed.
const VerifiedHeader = "Webhooker-Verified"

// maxHops bounds the ids read from a HopHeader: a longer chain is a loop
// between gateways that do not know each other, or an attack.
const maxHops = 32

// Hops lists the gateway ids in h's HopHeader values, at most maxHops+1 of
// them (more than maxHops means: too many).
func Hops(h http.Header) []string {
	var ids []string
	for _, v := range h.Values(HopHeader) {
		for _, id := range strings.Split(v, ",") {
			if id = strings.TrimSpace(id); id != "" {
				ids = append(ids, id)
				if len(ids) > maxHops {
					return ids
				}
			}
		}
	}
	return ids
}

// LoopDetected reports whether a request with headers h came through the
// gateway gatewayID already, or through more gateways than any sane chain.
func LoopDetected(h http.Header, gatewayID string) bool {
	ids := Hops(h)
	if len(ids) > maxHops {
		return true
	}
	for _, id := range ids {
		if id == gatewayID {
			return true
		}
	}
	return false
}

// addHop sets h's HopHeader to the ids it came in with, then gatewayID.
func addHop(h http.Header, gatewayID string) {
	ids := append(Hops(h), gatewayID)
	h.Set(HopHeader, strings.Join(ids, ", "))
}
