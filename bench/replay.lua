-- wrk script of bench/replay.sh: cycles through a fixed set of distinct chat requests, as a replayed
-- evaluation run does. Arguments after "--": a prefix naming the set, and how many requests each wrk
-- thread cycles through (its own, so the threads together replay threads x count distinct prompts).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local threads, prefix, count = 0, "", 1
function setup(thread)
	threads = threads + 1
	thread:set("tid", threads)
end
function init(args)
	prefix = args[1] or ""
	count = tonumber(args[2] or "1")
	n = 0
end
function request()
	n = n % count + 1
	return wrk.format(nil, nil, nil, string.format(
		'{"model":"fake-model","messages":[{"role":"system","content":"You are a helpful assistant for a travel company. Answer briefly and accurately."},{"role":"user","content":"Question %s-%d-%d: I am planning a four-day trip to Lisbon in early spring with two children. Which neighbourhoods are good to stay in, and how do we get around without a car?"}],"temperature":0.7,"max_tokens":512}',
		prefix, tid, n))
end
