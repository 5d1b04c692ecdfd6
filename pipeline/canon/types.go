package canon

import "fmt"

// Type is the JSON type of a value.
type Type uint8

// The JSON types. Invalid is the zero value so that an unset Type is never
// mistaken for a real one.
const (
	Invalid Type = iota
	Object
	Array
	String
	Number
	True
	False
	Null
)

// Member is one member of the top-level object, as offsets into the parsed body.
type Member struct {
	Key        []byte // the decoded key (escapes resolved); valid until the next ParseObject call on the same Parser
	KeyStart   int    // offset of the key's opening quote in the body
	ValueStart int    // raw value span [ValueStart, ValueEnd) in the body
	ValueEnd   int
	Type       Type
}

// SyntaxError reports why a body was refused. Msg is a complete, short
// sentence that can be sent to the client as is in an HTTP 400 body, e.g.
// `invalid JSON at offset 17: duplicate object key "model"`; Offset is the
// byte offset in the body the sentence refers to.
type SyntaxError struct {
	Offset int
	Msg    string
}

// Error returns Msg.
func (e *SyntaxError) Error() string { return e.Msg }

// syntaxErr builds the error for a problem found at off. It is only called on
// the failure path, so its allocations do not matter.
func syntaxErr(off int, format string, args ...any) *SyntaxError {
	return &SyntaxError{
		Offset: off,
		Msg:    fmt.Sprintf("invalid JSON at offset %d: ", off) + fmt.Sprintf(format, args...),
	}
}

// describeByte names a byte for an error message in a way that stays
// readable for control characters and stray non-ASCII bytes.
func describeByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return fmt.Sprintf("character %q", rune(c))
	}
	return fmt.Sprintf("byte 0x%02X", c)
}

// msgLimit caps how much of a user-supplied fragment an error message
// repeats, so that a hostile body cannot make the error response arbitrarily
// large.
const msgLimit = 64

// clip returns b as a string, cut to msgLimit bytes.
func clip(b []byte) string {
	if len(b) > msgLimit {
		return string(b[:msgLimit]) + "..."
	}
	return string(b)
}

// quoteForMsg renders a decoded key for an error message: quoted and escaped
// so that control characters stay visible, and clipped.
func quoteForMsg(b []byte) string {
	if len(b) > msgLimit {
		return fmt.Sprintf("%q...", b[:msgLimit])
	}
	return fmt.Sprintf("%q", b)
}
