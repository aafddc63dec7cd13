-- wrk script: POST a JSON body of BODY_BYTES bytes (default 1024) to the
-- entrypoint path given on the command line, or, when SPREAD=n is set, to
-- one of /hooks/k00000 … /hooks/k<n-1> picked at random per request (the
-- keys of bench/wrk/spread.sh's Caddyfile).
--
--   BODY_BYTES=65536 wrk -t2 -c64 -d20s --latency -s bench/wrk/body.lua http://localhost:8081/hooks/bench

local size = tonumber(os.getenv("BODY_BYTES") or "1024")
local spread = tonumber(os.getenv("SPREAD") or "0")
local prefix = '{"event":"bench","padding":"'
local suffix = '"}'
local body = prefix .. string.rep("x", size - #prefix - #suffix) .. suffix
assert(#body == size)

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"

function init(args)
	math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

function request()
	if spread > 0 then
		return wrk.format(nil, string.format("/hooks/k%05d", math.random(0, spread - 1)))
	end
	return wrk.format()
end

-- One machine-readable line after wrk's own report; ok counts 2xx answers.
function done(summary, latency, requests)
	local e = summary.errors
	io.write(string.format(
		"RESULT requests=%d ok=%d non2xx=%d connect=%d read=%d write=%d timeout=%d duration_s=%.2f req_per_s=%.0f p50_ms=%.2f p99_ms=%.2f\n",
		summary.requests, summary.requests - e.status, e.status, e.connect, e.read, e.write, e.timeout,
		summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
		latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
