package httpx

type headerKind uint8

const (
	headerDrop    headerKind = iota // not forwarded upstream
	headerForward                   // forwarded as the client sent it
	headerControl                   // a cache control for this proxy, never forwarded
)

// headerClass decides what happens to one client request header (DESIGN section 3): hop-by-hop headers,
// Host, Content-Length, Accept-Encoding (upstreams are asked for identity encoding so that stored bytes are
// plain), Content-Type (set by the transport) and the cache controls are not forwarded.
func headerClass(name []byte) headerKind {
	if len(name) > 8 && lowerEq(name[:8], "x-cache-") {
		return headerControl
	}
	switch len(name) {
	case 2:
		if lowerEq(name, "te") {
			return headerDrop
		}
	case 4:
		if lowerEq(name, "host") {
			return headerDrop
		}
	case 7:
		if lowerEq(name, "upgrade") || lowerEq(name, "trailer") {
			return headerDrop
		}
	case 8:
		if lowerEq(name, "trailers") {
			return headerDrop
		}
	case 10:
		if lowerEq(name, "connection") || lowerEq(name, "keep-alive") {
			return headerDrop
		}
	case 12:
		if lowerEq(name, "content-type") {
			return headerDrop
		}
	case 13:
		if lowerEq(name, "cache-control") {
			return headerControl
		}
	case 14:
		if lowerEq(name, "content-length") {
			return headerDrop
		}
	case 15:
		if lowerEq(name, "accept-encoding") {
			return headerDrop
		}
	case 16:
		if lowerEq(name, "proxy-connection") {
			return headerDrop
		}
	case 17:
		if lowerEq(name, "transfer-encoding") {
			return headerDrop
		}
	case 18:
		if lowerEq(name, "proxy-authenticate") {
			return headerDrop
		}
	case 19:
		if lowerEq(name, "proxy-authorization") {
			return headerDrop
		}
	}
	return headerForward
}

// lowerEq compares name, in any case, with lower, which is lower case.
func lowerEq(name []byte, lower string) bool {
	if len(name) != len(lower) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
