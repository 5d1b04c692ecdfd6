package batch

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"llmcache/db"
	"llmcache/pipeline"
)

// completionWindow is the only completion window OpenAI offers; a batch here is not bound by it.
const completionWindow = "24h"

// createParams is the body of POST /v1/batches.
type createParams struct {
	InputFileID      *string         `json:"input_file_id"`
	Endpoint         *string         `json:"endpoint"`
	CompletionWindow *string         `json:"completion_window"`
	Metadata         json.RawMessage `json:"metadata"`
}

// Create is POST /v1/batches: it records the batch as validating and starts running it; its input file's
// lines are checked by the run, as OpenAI does, so a file with bad lines gives a batch that ends failed
// with errors.data naming each line.
func (m *Manager) Create(owner string, body []byte) ([]byte, *pipeline.Error) {
	var p createParams
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, invalid("", "the body must be a JSON object with input_file_id, endpoint and completion_window: "+err.Error())
	}
	switch {
	case p.InputFileID == nil || *p.InputFileID == "":
		return nil, invalid("input_file_id", "missing required parameter: input_file_id")
	case p.Endpoint == nil:
		return nil, invalid("endpoint", "missing required parameter: endpoint")
	case p.CompletionWindow == nil:
		return nil, invalid("completion_window", "missing required parameter: completion_window")
	}
	if _, ok := endpoints[*p.Endpoint]; !ok {
		return nil, invalid("endpoint", "endpoint "+strconv.Quote(*p.Endpoint)+" is not supported; batches run "+endpointList)
	}
	if *p.CompletionWindow != completionWindow {
		return nil, invalid("completion_window", "completion_window must be \"24h\"")
	}
	metadata, e := checkMetadata(p.Metadata)
	if e != nil {
		return nil, e
	}
	f, found, err := m.store.File(*p.InputFileID)
	if err != nil {
		return nil, serverError("cannot read the input file's record", err)
	}
	if !found || f.Owner != owner {
		return nil, notFound("input_file_id", "No such File object: "+*p.InputFileID)
	}
	if f.Purpose != purposeBatch {
		return nil, invalid("input_file_id", "file "+f.ID+" has purpose "+strconv.Quote(f.Purpose)+"; a batch's input file must have purpose batch")
	}
	now := time.Now().UnixMilli()
	rec := db.BatchRecord{ID: newID("batch_"), Owner: owner, Endpoint: *p.Endpoint, InputFileID: f.ID, CompletionWindow: completionWindow,
		Status: StatusValidating, Metadata: metadata, CreatedAt: now, ExpiresAt: now + (24 * time.Hour).Milliseconds()}
	if err := m.store.PutBatch(&rec); err != nil {
		return nil, serverError("cannot record the batch", err)
	}
	m.start(rec)
	return marshal(m.batchObject(&rec)), nil
}

// checkMetadata checks metadata as OpenAI does (at most 16 keys of at most 64 characters, string values of
// at most 512) and returns it compact; nil for none.
func checkMetadata(raw json.RawMessage) ([]byte, *pipeline.Error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var md map[string]string
	if err := json.Unmarshal(raw, &md); err != nil {
		return nil, invalid("metadata", "metadata must be an object of string values")
	}
	if len(md) > 16 {
		return nil, invalid("metadata", "metadata holds at most 16 keys")
	}
	for k, v := range md {
		if utf8.RuneCountInString(k) > 64 || utf8.RuneCountInString(v) > 512 {
			return nil, invalid("metadata", "metadata keys hold at most 64 characters and values at most 512")
		}
	}
	return marshal(md), nil
}

// ownedBatch returns owner's batch id, or the 404 OpenAI gives for a batch that does not exist.
func (m *Manager) ownedBatch(owner, id string) (db.BatchRecord, *pipeline.Error) {
	rec, found, err := m.store.Batch(id)
	if err != nil {
		return rec, serverError("cannot read the batch's record", err)
	}
	if !found || rec.Owner != owner {
		return rec, notFound("batch_id", "No batch found with id '"+id+"'.")
	}
	return rec, nil
}

// Batch is GET /v1/batches/{id}.
func (m *Manager) Batch(owner, id string) ([]byte, *pipeline.Error) {
	rec, e := m.ownedBatch(owner, id)
	if e != nil {
		return nil, e
	}
	return marshal(m.batchObject(&rec)), nil
}

// Batches is GET /v1/batches: owner's batches, newest first, from after, at most limit (1 to 100, default
// 20).
func (m *Manager) Batches(owner, after string, limit int) ([]byte, *pipeline.Error) {
	if limit == 0 {
		limit = 20
	}
	if limit < 1 || limit > 100 {
		return nil, invalid("limit", "limit must be between 1 and 100")
	}
	recs, err := m.store.ListBatches(owner, after, limit+1)
	if err != nil {
		return nil, serverError("cannot list batches", err)
	}
	more := len(recs) > limit
	recs = recs[:min(len(recs), limit)]
	out := make([]batchObject, len(recs))
	for i := range recs {
		out[i] = m.batchObject(&recs[i])
	}
	return marshal(list(out, func(b *batchObject) string { return b.ID }, more)), nil
}

// Cancel is POST /v1/batches/{id}/cancel: a validating or running batch becomes cancelling at once; its
// run admits no more lines, lets those in the pipeline finish, and ends it cancelled with the finished
// lines in its output and error files. Cancelling a batch that is already cancelling or cancelled changes
// nothing; any other finished batch is a 409.
func (m *Manager) Cancel(owner, id string) ([]byte, *pipeline.Error) {
	rec, e := m.ownedBatch(owner, id)
	if e != nil {
		return nil, e
	}
	now := time.Now().UnixMilli()
	changed, err := m.store.Transition(id, StatusCancelling, "cancelling_at", now, StatusValidating, StatusInProgress)
	if err != nil {
		return nil, serverError("cannot cancel the batch", err)
	}
	if changed {
		if r := m.running(id); r != nil {
			r.cancelNow()
		}
	}
	if rec, e = m.ownedBatch(owner, id); e != nil {
		return nil, e
	}
	if !changed && rec.Status != StatusCancelling && rec.Status != StatusCancelled {
		return nil, &pipeline.Error{Status: 409, Type: "invalid_request_error", Param: "batch_id", Code: "batch_not_cancellable",
			Message: "Cannot cancel a batch with status '" + rec.Status + "'."}
	}
	return marshal(m.batchObject(&rec)), nil
}
