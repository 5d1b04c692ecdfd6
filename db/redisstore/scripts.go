package redisstore

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"slices"

	"github.com/valkey-io/valkey-go"

	"llmcache/db"
)

// script is a Lua script run by EVALSHA in pipelines, falling back to EVAL (which caches it) where a node
// does not know it yet: valkey-go's own ExecMulti loads the script on every node first, a round trip per
// node on every call.
type script struct{ src, sha string }

func newScript(src string) *script {
	sum := sha1.Sum([]byte(src))
	return &script{src: src, sha: hex.EncodeToString(sum[:])}
}

type scriptCall struct{ keys, args []string }

// run runs the calls in one pipeline, and those that met NOSCRIPT again by EVAL.
func (sc *script) run(ctx context.Context, c valkey.Client, calls []scriptCall) []valkey.ValkeyResult {
	if len(calls) == 0 {
		return nil
	}
	cmds := make(valkey.Commands, len(calls))
	for i, x := range calls {
		cmds[i] = c.B().Evalsha().Sha1(sc.sha).Numkeys(int64(len(x.keys))).Key(x.keys...).Arg(x.args...).Build()
	}
	res := c.DoMulti(ctx, cmds...)
	var again []int
	for i, r := range res {
		if e, ok := valkey.IsValkeyErr(r.Error()); ok && e.IsNoScript() {
			again = append(again, i)
		}
	}
	if len(again) > 0 {
		cmds = cmds[:0]
		for _, i := range again {
			x := calls[i]
			cmds = append(cmds, c.B().Eval().Script(sc.src).Numkeys(int64(len(x.keys))).Key(x.keys...).Arg(x.args...).Build())
		}
		for j, r := range c.DoMulti(ctx, cmds...) {
			res[again[j]] = r
		}
	}
	return res
}

func sorted(m map[string]*db.Count) []db.Count {
	out := make([]db.Count, 0, len(m))
	for _, c := range m {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b db.Count) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}
