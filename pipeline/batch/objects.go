package batch

import (
	"encoding/json"

	"llmcache/db"
	"llmcache/pipeline"
)

// A batch's statuses, OpenAI's: validating → in_progress → finalizing → completed; failed (its input file
// did not validate); cancelling → cancelled. expired is never reached here: a batch runs to its end however
// long that takes, since its lines are answered locally or by the configured endpoints.
const (
	StatusValidating = "validating"
	StatusFailed     = "failed"
	StatusInProgress = "in_progress"
	StatusFinalizing = "finalizing"
	StatusCompleted  = "completed"
	StatusExpired    = "expired"
	StatusCancelling = "cancelling"
	StatusCancelled  = "cancelled"
)

var (
	allStatuses        = []string{StatusValidating, StatusFailed, StatusInProgress, StatusFinalizing, StatusCompleted, StatusExpired, StatusCancelling, StatusCancelled}
	unfinishedStatuses = []string{StatusValidating, StatusInProgress, StatusFinalizing, StatusCancelling}
	finishedStatuses   = []string{StatusFailed, StatusCompleted, StatusExpired, StatusCancelled}
)

// endpoints are the routes a batch may run, by the value of its endpoint (and of each line's url): the one
// place to add one.
var endpoints = map[string]pipeline.Kind{
	"/v1/chat/completions": pipeline.KindChat,
	"/v1/completions":      pipeline.KindCompletion,
	"/v1/embeddings":       pipeline.KindEmbedding,
	"/v1/responses":        pipeline.KindResponses,
}

// endpointList names the endpoints in error messages.
const endpointList = "/v1/chat/completions, /v1/completions, /v1/embeddings or /v1/responses"

// Purposes of files: uploaded batch input, and what a batch writes.
const (
	purposeBatch  = "batch"
	purposeOutput = "batch_output"
)

// fileObject is OpenAI's File object.
type fileObject struct {
	ID            string  `json:"id"`
	Object        string  `json:"object"`
	Bytes         int64   `json:"bytes"`
	CreatedAt     int64   `json:"created_at"`
	ExpiresAt     *int64  `json:"expires_at"`
	Filename      string  `json:"filename"`
	Purpose       string  `json:"purpose"`
	Status        string  `json:"status"`
	StatusDetails *string `json:"status_details"`
}

func (m *Manager) fileObject(f *db.FileRecord) fileObject {
	o := fileObject{ID: f.ID, Object: "file", Bytes: f.Bytes, CreatedAt: f.CreatedAt / 1000, Filename: f.Filename, Purpose: f.Purpose,
		Status: "processed"}
	if m.cfg.Retention > 0 && f.Purpose == purposeOutput {
		at := (f.CreatedAt + m.cfg.Retention.Milliseconds()) / 1000
		o.ExpiresAt = &at
	}
	return o
}

// batchObject is OpenAI's Batch object.
type batchObject struct {
	ID               string          `json:"id"`
	Object           string          `json:"object"`
	Endpoint         string          `json:"endpoint"`
	Errors           *batchErrors    `json:"errors"`
	InputFileID      string          `json:"input_file_id"`
	CompletionWindow string          `json:"completion_window"`
	Status           string          `json:"status"`
	OutputFileID     *string         `json:"output_file_id"`
	ErrorFileID      *string         `json:"error_file_id"`
	CreatedAt        int64           `json:"created_at"`
	InProgressAt     *int64          `json:"in_progress_at"`
	ExpiresAt        *int64          `json:"expires_at"`
	FinalizingAt     *int64          `json:"finalizing_at"`
	CompletedAt      *int64          `json:"completed_at"`
	FailedAt         *int64          `json:"failed_at"`
	ExpiredAt        *int64          `json:"expired_at"`
	CancellingAt     *int64          `json:"cancelling_at"`
	CancelledAt      *int64          `json:"cancelled_at"`
	RequestCounts    requestCounts   `json:"request_counts"`
	Metadata         json.RawMessage `json:"metadata"`
}

type requestCounts struct {
	Total     int64 `json:"total"`
	Completed int64 `json:"completed"`
	Failed    int64 `json:"failed"`
}

type batchErrors struct {
	Object string            `json:"object"`
	Data   []json.RawMessage `json:"data"`
}

// lineError is one entry of a batch's errors.data: a line of its input file that did not validate.
type lineError struct {
	Code    string  `json:"code"`
	Message string  `json:"message"`
	Param   *string `json:"param"`
	Line    *int64  `json:"line"`
}

// seconds is a unix ms time as OpenAI's unix seconds, null when not reached.
func seconds(ms int64) *int64 {
	if ms == 0 {
		return nil
	}
	s := ms / 1000
	return &s
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// batchObject is rec as OpenAI shows it; the request counts of a running batch are its live ones.
func (m *Manager) batchObject(rec *db.BatchRecord) batchObject {
	o := batchObject{ID: rec.ID, Object: "batch", Endpoint: rec.Endpoint, InputFileID: rec.InputFileID, CompletionWindow: rec.CompletionWindow,
		Status: rec.Status, OutputFileID: optional(rec.OutputFileID), ErrorFileID: optional(rec.ErrorFileID), CreatedAt: rec.CreatedAt / 1000,
		InProgressAt: seconds(rec.InProgressAt), ExpiresAt: seconds(rec.ExpiresAt), FinalizingAt: seconds(rec.FinalizingAt),
		CompletedAt: seconds(rec.CompletedAt), FailedAt: seconds(rec.FailedAt), ExpiredAt: seconds(rec.ExpiredAt),
		CancellingAt: seconds(rec.CancellingAt), CancelledAt: seconds(rec.CancelledAt),
		RequestCounts: requestCounts{Total: rec.Total, Completed: rec.Completed, Failed: rec.Failed}, Metadata: json.RawMessage("null")}
	if rec.Metadata != nil {
		o.Metadata = rec.Metadata
	}
	if rec.Errors != nil {
		o.Errors = &batchErrors{Object: "list"}
		_ = json.Unmarshal(rec.Errors, &o.Errors.Data)
	}
	if r := m.running(rec.ID); r != nil {
		p := r.progress()
		o.RequestCounts = requestCounts{Total: p.Total, Completed: p.Completed, Failed: p.Failed}
	}
	return o
}

// listObject is OpenAI's list of objects, with its cursor.
type listObject[T any] struct {
	Object  string  `json:"object"`
	Data    []T     `json:"data"`
	FirstID *string `json:"first_id"`
	LastID  *string `json:"last_id"`
	HasMore bool    `json:"has_more"`
}

func list[T any](data []T, id func(*T) string, hasMore bool) listObject[T] {
	l := listObject[T]{Object: "list", Data: data, HasMore: hasMore}
	if l.Data == nil {
		l.Data = []T{}
	}
	if len(data) > 0 {
		first, last := id(&data[0]), id(&data[len(data)-1])
		l.FirstID, l.LastID = &first, &last
	}
	return l
}

func marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("batch: cannot marshal a " + err.Error()) // our own types: cannot fail
	}
	return b
}

// Errors in OpenAI's shape, rendered by the front end.

func invalid(param, msg string) *pipeline.Error {
	return &pipeline.Error{Status: 400, Type: "invalid_request_error", Param: param, Message: msg}
}

func notFound(param, msg string) *pipeline.Error {
	return &pipeline.Error{Status: 404, Type: "invalid_request_error", Param: param, Message: msg}
}

func serverError(msg string, err error) *pipeline.Error {
	return &pipeline.Error{Status: 500, Type: "server_error", Message: msg + ": " + err.Error()}
}
