-- wrk script of bench/misses.sh and bench/misses_ab.sh: POSTs a chat request that no other request repeats.
-- Each carries the argument after "--" (the round and the server's name), the wrk thread and a counter, so
-- no two are alike within a run or across rounds.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local threads, prefix = 0, ""
function setup(thread)
	threads = threads + 1
	thread:set("tid", threads)
end
function init(args)
	prefix = args[1] or ""
	n = 0
end
function request()
	n = n + 1
	return wrk.format(nil, nil, nil, string.format(
		'{"model":"fake-model","messages":[{"role":"system","content":"You are a helpful assistant for a travel company. Answer briefly and accurately."},{"role":"user","content":"Question %s-%d-%d: I am planning a four-day trip to Lisbon in early spring with two children. Which neighbourhoods are good to stay in, and how do we get around without a car?"}],"temperature":0.7,"max_tokens":512}',
		prefix, tid, n))
end
