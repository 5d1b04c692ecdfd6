// Package canon validates JSON request bodies and writes their canonical form,
// so that two requests that mean the same thing hash to the same cache key.
//
// The canonical form follows RFC 8785 (JSON Canonicalization Scheme): object
// members sorted by their keys as UTF-16 code units, no insignificant
// whitespace, strings re-escaped in one fixed way, and numbers written as
// ECMAScript would print them. One project rule deviates from JCS: an integer
// literal without fraction or exponent keeps its exact digits, because request
// fields such as seeds or IDs may exceed 2^53 and must not collide after a
// round trip through float64.
//
// Validation is stricter than encoding/json on purpose: invalid UTF-8, lone
// surrogate escapes, duplicate keys at any depth, numbers beyond float64 and
// nesting deeper than 512 levels are refused, because each of them would make
// the meaning of a request ambiguous (different upstream parsers would read it
// differently) and so make its cache key meaningless.
//
// The hot path (Parser.ParseObject followed by Parser.AppendCanonicalObject)
// uses no reflection, maps or encoding/json, and allocates nothing once a
// Parser's scratch buffers have grown to fit the traffic.
package canon
