package sse

import "bytes"

// Splitter cuts a byte stream, as it arrives from the network in arbitrary pieces, into server-sent events
// (WHATWG HTML, "Interpreting an event stream"): lines end with "\r\n", "\n" or "\r", and an empty line ends
// an event. It is not safe for concurrent use; the zero value is ready for a new stream.
//
// An event that arrives whole inside one Feed is handed out as a sub-slice of that Feed's data, without a
// copy; only an event that spans Feed calls is gathered in the Splitter's buffer.
type Splitter struct {
	// buf holds the scanned bytes of the event in progress (never a complete event).
	buf []byte
	// midLine is set when the last byte scanned was not a line terminator. Its zero value puts the stream
	// start at a line start, as the spec does, so that a leading empty line ends an (empty) event.
	midLine bool
	// cr is set when the last byte scanned was a '\r' that ended a Feed: if the next Feed starts with '\n',
	// that byte completes the same "\r\n" terminator and must not count as an empty line.
	cr bool
}

// Feed appends data and calls emit for each complete event, in order. event is the event's raw bytes including
// its terminating empty line, valid only during the call (it may point into data or into the Splitter's buffer).
//
// One case cannot be decided without waiting for a byte that may never come: an event whose last line
// terminator is a '\r' that ends data. The event is emitted at once, ending in that '\r', because a live stream
// must not stall on it; if the next Feed starts with '\n', that '\n' (the rest of a "\r\n") is dropped. So an
// event can end in "\r\n\r" where feeding the stream whole would have given "\r\n\r\n"; both mean the same.
func (s *Splitter) Feed(data []byte, emit func(event []byte)) {
	start, i := 0, 0 // data[start:i] is scanned and not yet emitted or buffered
	if s.cr && len(data) > 0 {
		s.cr = false
		if data[0] == '\n' {
			i = 1
			if len(s.buf) == 0 {
				// The '\r' ended an empty line, so its event has been emitted: drop the '\n'.
				start = 1
			}
		}
	}
	for i < len(data) {
		if c := data[i]; c != '\n' && c != '\r' {
			i = nextEOL(data, i)
			s.midLine = true
			continue
		}
		end := i + 1
		if data[i] == '\r' {
			if end < len(data) {
				if data[end] == '\n' {
					end++
				}
			} else {
				s.cr = true
			}
		}
		if !s.midLine { // an empty line: the event is complete
			if len(s.buf) > 0 {
				s.buf = append(s.buf, data[start:end]...)
				emit(s.buf)
				s.buf = s.buf[:0]
			} else {
				emit(data[start:end])
			}
			start = end
		}
		s.midLine = false
		i = end
	}
	s.buf = append(s.buf, data[start:]...)
}

// nextEOL returns the offset of the first '\n' or '\r' at or after i, or len(b). Most streams use "\n" only;
// two IndexByte scans keep the common case fast.
func nextEOL(b []byte, i int) int {
	rest := b[i:]
	n := bytes.IndexByte(rest, '\n')
	if n < 0 {
		n = len(rest)
	}
	if r := bytes.IndexByte(rest[:n], '\r'); r >= 0 {
		n = r
	}
	return i + n
}

// Pending reports whether an incomplete event is buffered: at the end of a stream, it means the stream was cut
// inside an event.
func (s *Splitter) Pending() bool { return len(s.buf) > 0 }

// Buffered returns how many bytes of an incomplete event are buffered, so that a caller can bound the memory
// a misbehaving upstream makes it hold.
func (s *Splitter) Buffered() int { return len(s.buf) }

// Reset prepares the Splitter for a new stream, keeping its buffer's capacity.
func (s *Splitter) Reset() { *s = Splitter{buf: s.buf[:0]} }

var bom = []byte("\xef\xbb\xbf")

// Data returns the event's data (multiple `data:` lines joined with "\n", one leading space after the colon
// removed), its `event:` field if any, and whether it had any data line. Comment lines (":...") and other
// fields are ignored. data is a sub-slice of event unless the event has several data lines.
func Data(event []byte) (data []byte, eventType string, ok bool) {
	data, et, _, ok := parseEvent(event, nil)
	switch string(et) { // no allocation for the names that matter
	case "":
	case "error":
		eventType = "error"
	case "message":
		eventType = "message"
	default:
		eventType = string(et)
	}
	return data, eventType, ok
}

// parseEvent does the work of Data. When the event has several data lines, their joined value is built in
// scratch, which is returned grown (so that a caller may keep its capacity across events, or hand in a
// buffer on its stack); otherwise data points into event.
func parseEvent(event, scratch []byte) (data, eventType, scratchOut []byte, ok bool) {
	// A byte order mark is allowed before the first line of a stream; it can only be in the first event.
	event = bytes.TrimPrefix(event, bom)
	joined := false
	for len(event) > 0 {
		n := nextEOL(event, 0)
		line := event[:n]
		if n < len(event) {
			if event[n] == '\r' && n+1 < len(event) && event[n+1] == '\n' {
				n++
			}
			n++
		}
		event = event[n:]
		if len(line) == 0 || line[0] == ':' {
			continue
		}
		name, value := line, []byte(nil)
		if c := bytes.IndexByte(line, ':'); c >= 0 {
			name, value = line[:c], line[c+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(name) {
		case "data":
			switch {
			case !ok:
				data, ok = value, true
			case !joined:
				scratch = append(append(append(scratch[:0], data...), '\n'), value...)
				data, joined = scratch, true
			default:
				scratch = append(append(scratch, '\n'), value...)
				data = scratch
			}
		case "event":
			eventType = value
		}
	}
	if ok && data == nil {
		data = []byte{}
	}
	return data, eventType, scratch, ok
}
