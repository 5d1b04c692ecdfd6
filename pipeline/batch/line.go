package batch

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	stdjson "encoding/json"
	"io"
	"strconv"
	"time"

	json "github.com/goccy/go-json"

	"llmcache/pipeline"
)

// answer runs one line through the pipeline as a live request of its route, with no headers (a line has
// none: its cache controls come from its body's cache object, and the upstream gets the endpoint's own
// api_key and headers), and returns its result. A local overload (the pipeline's 503) is not a result: the
// line is submitted again after RetryPause, until it is answered or stop is closed.
func (m *Manager) answer(kind pipeline.Kind, tenant *pipeline.Tenant, p pending, stop <-chan struct{}) result {
	if max := m.cfg.MaxBodyBytes; max > 0 && len(p.body) > max {
		e := &pipeline.Error{Status: 413, Type: "invalid_request_error", Code: "request_too_large",
			Message: "request body is larger than max_body_bytes (" + strconv.Itoa(max) + " bytes)"}
		return result{line: encodeLine(nil, p.customID, e.Status, errorBody(e), false), outcome: pipeline.OutcomeError}
	}
	if streamed(p.body) {
		// A result is one JSON body; a stream has none to give. Refused before the pipeline sees it, so that
		// no upstream call is made for it.
		e := &pipeline.Error{Status: 400, Type: "invalid_request_error", Param: "stream",
			Message: "a batch line cannot be streamed: remove \"stream\": true from its body"}
		return result{line: encodeLine(nil, p.customID, e.Status, errorBody(e), false), outcome: pipeline.OutcomeError}
	}
	var pause *time.Timer
	defer func() {
		if pause != nil {
			pause.Stop()
		}
	}()
	for {
		r := pipeline.Acquire()
		r.Kind, r.Tenant = kind, tenant
		r.Arrived = time.Now()
		r.Body = append(r.Body[:0], p.body...)
		r.Controls = pipeline.DefaultControls(m.cfg.DefaultMode)
		if m.cfg.Activity != nil {
			m.cfg.Activity.Touch(r.Arrived)
		}
		m.pipe.Submit(r)
		<-r.Done()
		resp := &r.Resp
		if e := resp.Err; e != nil && e.Status == 503 && e.Code == "overloaded" {
			pipeline.Release(r)
			m.retries.Add(1)
			if pause == nil {
				pause = time.NewTimer(m.cfg.RetryPause)
			} else {
				pause.Reset(m.cfg.RetryPause)
			}
			select {
			case <-stop:
				return result{abandoned: true}
			case <-pause.C:
			}
			continue
		}
		res := result{outcome: resp.Outcome}
		switch {
		case resp.Live != nil:
			// Not reached (streamed lines are refused above); should a stream come, it is read to its end,
			// as the front end would, so that the call it belongs to is not held up.
			w := bufio.NewWriter(io.Discard)
			resp.Live.CopyTo(w, true)
			e := &pipeline.Error{Status: 502, Type: "server_error", Message: "the pipeline answered a batch line with a stream"}
			res.line = encodeLine(nil, p.customID, e.Status, errorBody(e), false)
		case resp.Err != nil:
			res.line = encodeLine(nil, p.customID, resp.Err.Status, errorBody(resp.Err), false)
		default:
			res.ok = resp.Status >= 200 && resp.Status < 300
			res.line = encodeLine(nil, p.customID, resp.Status, resp.Body, resp.Status == 200)
		}
		if !res.ok {
			res.outcome = pipeline.OutcomeError // as the pipeline counts an answer with an error status
		}
		pipeline.Release(r)
		return res
	}
}

// streamed reports whether a line's body asks for "stream": true.
func streamed(body []byte) bool {
	var b struct {
		Stream stdjson.RawMessage `json:"stream"`
	}
	return json.Unmarshal(body, &b) == nil && string(b.Stream) == "true"
}

// encodeLine appends to dst a line of an output or error file, OpenAI's:
//
//	{"id":"batch_req_...","custom_id":...,"response":{"status_code":200,"request_id":"...","body":{...}},"error":null}
//
// body is written as one line of compact JSON; a body that is not JSON (an upstream's error page) is
// written as a JSON string. valid says body is known to be JSON (a 2xx answer: the pipeline checked it, or
// stored it checked), which is then compacted without being checked again.
func encodeLine(dst, customID []byte, status int, body []byte, valid bool) []byte {
	if dst == nil {
		dst = make([]byte, 0, len(body)+len(customID)+160)
	}
	var rnd [28]byte
	_, _ = rand.Read(rnd[:])
	var ids [56]byte
	hex.Encode(ids[:], rnd[:])
	dst = append(dst, `{"id":"batch_req_`...)
	dst = append(dst, ids[:24]...)
	dst = append(dst, `","custom_id":`...)
	dst = appendCompactJSON(dst, customID)
	dst = append(dst, `,"response":{"status_code":`...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, `,"request_id":"`...)
	dst = append(dst, ids[24:]...)
	dst = append(dst, `","body":`...)
	if valid {
		dst = appendCompactValid(dst, body)
	} else {
		dst = appendCompactJSON(dst, body)
	}
	return append(dst, "},\"error\":null}\n"...)
}

// appendCompactJSON appends src to dst as compact JSON, or as a JSON string when it is not JSON.
func appendCompactJSON(dst, src []byte) []byte {
	buf := bytes.NewBuffer(dst)
	if err := stdjson.Compact(buf, src); err == nil {
		return buf.Bytes()
	}
	s, _ := stdjson.Marshal(string(src))
	return append(dst, s...)
}

// appendCompactValid appends src, which is valid JSON, without the white space between its tokens: a
// byte loop that copies runs, several times as fast as a checking compaction, for the answers that make up
// nearly all of a batch's output.
func appendCompactValid(dst, src []byte) []byte {
	inString, escaped := false, false
	run := 0 // start of the bytes not yet copied
	for i, c := range src {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case ' ', '\t', '\n', '\r':
			dst = append(dst, src[run:i]...)
			run = i + 1
		}
	}
	return append(dst, src[run:]...)
}

// errorBody is e in OpenAI's error shape, as the front end renders it for a live request.
func errorBody(e *pipeline.Error) []byte {
	var b struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    *string `json:"code"`
		} `json:"error"`
	}
	b.Error.Message, b.Error.Type, b.Error.Param, b.Error.Code = e.Message, e.Type, optional(e.Param), optional(e.Code)
	out, _ := stdjson.Marshal(&b)
	return out
}
