-- wrk script for the ingest benchmark: every request is a POST of the same
-- 1 KiB (1024-byte) JSON body with Content-Type: application/json.
--
--   wrk -t2 -c64 -d20s --latency -s bench/ingest.lua http://localhost:8081/hooks/bench
--
-- See bench/README.md for the Caddyfiles and how the numbers were produced.

local prefix = '{"event":"bench","padding":"'
local suffix = '"}'
local body = prefix .. string.rep("x", 1024 - #prefix - #suffix) .. suffix
assert(#body == 1024)

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"

-- One machine-readable line after wrk's own report. errors.status counts
-- responses that were not 2xx or 3xx, so ok is the number of 2xx answers.
function done(summary, latency, requests)
	local e = summary.errors
	io.write(string.format(
		"RESULT requests=%d ok=%d non2xx=%d connect=%d read=%d write=%d timeout=%d duration_s=%.2f req_per_s=%.0f p50_ms=%.2f p99_ms=%.2f\n",
		summary.requests, summary.requests - e.status, e.status, e.connect, e.read, e.write, e.timeout,
		summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
		latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
