package httpx

import "bytes"

type headerKind uint8

const (
	headerDrop    headerKind = iota // not forwarded upstream
	headerForward                   // forwarded as the client sent it
	headerControl                   // a cache control for this proxy, never forwarded
)

// headerClass decides what happens to one client request header: hop-by-hop headers (and those the
// request's Connection header names: see namedHeaders), Host, Content-Length, Accept-Encoding (upstreams are asked for identity encoding so that stored bytes are
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

// namedHeaders returns the values of a request's Connection headers when they name any header besides
// close and keep-alive, which are hop-by-hop then (RFC 9110 section 7.6.1), and nil otherwise: the usual
// "keep-alive" costs no lookup per header.
func namedHeaders(values [][]byte) [][]byte {
	for _, v := range values {
		for len(v) > 0 {
			var tok []byte
			tok, v = nextToken(v)
			if len(tok) > 0 && !lowerEq(tok, "close") && !lowerEq(tok, "keep-alive") {
				return values
			}
		}
	}
	return nil
}

// tokenListed reports whether name is among the comma-separated tokens of values, in any case.
func tokenListed(values [][]byte, name []byte) bool {
	for _, v := range values {
		for len(v) > 0 {
			var tok []byte
			tok, v = nextToken(v)
			if bytes.EqualFold(tok, name) {
				return true
			}
		}
	}
	return false
}

// nextToken splits the first element off a comma-separated list, without its surrounding spaces and tabs.
func nextToken(list []byte) (tok, rest []byte) {
	tok = list
	for i, c := range list {
		if c == ',' {
			tok, rest = list[:i], list[i+1:]
			break
		}
	}
	for len(tok) > 0 && (tok[0] == ' ' || tok[0] == '\t') {
		tok = tok[1:]
	}
	for len(tok) > 0 && (tok[len(tok)-1] == ' ' || tok[len(tok)-1] == '\t') {
		tok = tok[:len(tok)-1]
	}
	return tok, rest
}
