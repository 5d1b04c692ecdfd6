-- wrk script of bench/misses.sh, bench/misses_ab.sh and bench/replay.sh: POSTs distinct chat requests.
-- Arguments after "--": a prefix naming the set (each request also carries the wrk thread and a counter),
-- and optionally how many requests each thread cycles through. Without a count no request repeats
-- another, within a run or across runs with other prefixes (misses); with one, each thread asks its count
-- of distinct prompts in turn, again and again, as a replayed evaluation run does (threads x count prompts).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local threads, prefix, count = 0, "", 0
function setup(thread)
	threads = threads + 1
	thread:set("tid", threads)
end
function init(args)
	prefix = args[1] or ""
	count = tonumber(args[2] or "0")
	n = 0
end
function request()
	if count > 0 then
		n = n % count + 1
	else
		n = n + 1
	end
	return wrk.format(nil, nil, nil, string.format(
		'{"model":"fake-model","messages":[{"role":"system","content":"You are a helpful assistant for a travel company. Answer briefly and accurately."},{"role":"user","content":"Question %s-%d-%d: I am planning a four-day trip to Lisbon in early spring with two children. Which neighbourhoods are good to stay in, and how do we get around without a car?"}],"temperature":0.7,"max_tokens":512}',
		prefix, tid, n))
end
