package db

import "strings"

// PathFromURL turns a database_url into a file path. It accepts a plain path
// ("cache.db", "/var/lib/llmcache/cache.db") and the URL forms used by the
// Rust project's database_url: "sqlite://cache.db", "sqlite:cache.db",
// "sqlite:///abs/cache.db" (→ "/abs/cache.db"). For the sqlite: forms, a
// query string ("?mode=rwc") is dropped. Plain paths are returned unchanged.
func PathFromURL(url string) string {
	const scheme = "sqlite:"
	if len(url) < len(scheme) || !strings.EqualFold(url[:len(scheme)], scheme) {
		return url
	}
	p := url[len(scheme):]
	p = strings.TrimPrefix(p, "//")
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	return p
}
