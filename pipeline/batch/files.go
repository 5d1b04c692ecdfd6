package batch

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"os"
	"strconv"
	"time"

	"llmcache/db"
	"llmcache/pipeline"
)

// multipartSlack is what an upload's body may hold beyond its file: the boundaries, the part headers and
// the small fields (purpose, expires_after).
const multipartSlack = 1 << 20

var errFileTooLarge = errors.New("file too large")

// Upload takes POST /v1/files: a multipart/form-data body (contentType is its Content-Type) with a file
// and purpose=batch. The file is streamed to the batch folder as it arrives, never held whole in memory,
// and counted: more than MaxFileBytes bytes or MaxLines requests is refused. Its lines are checked when a
// batch is created on it, as OpenAI does. It returns the File object.
func (m *Manager) Upload(owner, contentType string, body io.Reader) ([]byte, *pipeline.Error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return nil, invalid("file", "POST /v1/files wants a multipart/form-data body with a file and purpose=batch")
	}
	limit := &limitReader{r: body, left: m.cfg.MaxFileBytes + multipartSlack}
	mr := multipart.NewReader(limit, params["boundary"])
	var purpose string
	var up *upload
	defer func() {
		if up != nil {
			up.discard()
		}
	}()
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if limit.over {
				return nil, m.tooLarge()
			}
			return nil, invalid("file", "cannot read the multipart body: "+err.Error())
		}
		switch part.FormName() {
		case "purpose":
			v, err := io.ReadAll(io.LimitReader(part, 256))
			if err != nil {
				return nil, invalid("purpose", "cannot read purpose: "+err.Error())
			}
			purpose = string(bytes.TrimSpace(v))
		case "file":
			if up != nil {
				return nil, invalid("file", "more than one file in one upload")
			}
			if up, err = m.newUpload(part.FileName()); err != nil {
				return nil, serverError("cannot store the upload", err)
			}
			if e := up.copyFrom(part); e != nil {
				if limit.over {
					return nil, m.tooLarge()
				}
				return nil, e
			}
		default: // other fields (expires_after, ...) are not used here
			if _, err := io.Copy(io.Discard, part); err != nil {
				if limit.over {
					return nil, m.tooLarge()
				}
				return nil, invalid("file", "cannot read the multipart body: "+err.Error())
			}
		}
	}
	switch {
	case up == nil:
		return nil, invalid("file", "missing required parameter: file")
	case purpose == "":
		return nil, invalid("purpose", "missing required parameter: purpose")
	case purpose != purposeBatch:
		return nil, invalid("purpose", "purpose "+strconv.Quote(purpose)+" is not supported here: llmcache keeps files for batches only (purpose=batch)")
	}
	rec, err := up.keep(m, owner)
	if err != nil {
		return nil, serverError("cannot store the upload", err)
	}
	up = nil
	return marshal(m.fileObject(rec)), nil
}

func (m *Manager) tooLarge() *pipeline.Error {
	return &pipeline.Error{Status: 413, Type: "invalid_request_error", Param: "file", Code: "file_too_large",
		Message: "the file is larger than max_batch_file_bytes (" + strconv.FormatInt(m.cfg.MaxFileBytes, 10) + " bytes)"}
}

// limitReader reads at most left bytes of r, then fails, remembering that it did.
type limitReader struct {
	r    io.Reader
	left int64
	over bool
}

func (l *limitReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	// One byte more than allowed tells a body that ends at the limit from one that goes on.
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	if int64(n) > l.left {
		n, l.left, l.over = int(l.left), 0, true
		return n, errFileTooLarge
	}
	l.left -= int64(n)
	return n, err
}

// upload is a file being received: it goes to a temporary file in the batch folder, renamed to its own
// name once it is whole and recorded.
type upload struct {
	f        *os.File
	filename string
	bytes    int64
	lines    int64 // lines with something other than white space
	inLine   bool  // the current line has something other than white space
	max      int64
	maxLines int64
}

func (m *Manager) newUpload(filename string) (*upload, error) {
	f, err := os.CreateTemp(m.cfg.Dir, uploadPrefix+"*")
	if err != nil {
		return nil, err
	}
	if filename == "" {
		filename = "file"
	}
	return &upload{f: f, filename: filename, max: m.cfg.MaxFileBytes, maxLines: int64(m.cfg.MaxLines)}, nil
}

// copyFrom writes the file part to disk, counting its bytes and lines as they pass.
func (u *upload) copyFrom(part io.Reader) *pipeline.Error {
	buf := make([]byte, 64<<10)
	for {
		n, err := part.Read(buf)
		if n > 0 {
			u.count(buf[:n])
			if u.bytes > u.max {
				return &pipeline.Error{Status: 413, Type: "invalid_request_error", Param: "file", Code: "file_too_large",
					Message: "the file is larger than max_batch_file_bytes (" + strconv.FormatInt(u.max, 10) + " bytes)"}
			}
			if u.lines > u.maxLines {
				return &pipeline.Error{Status: 400, Type: "invalid_request_error", Param: "file", Code: "too_many_requests_in_file",
					Message: "the file has more than " + strconv.FormatInt(u.maxLines, 10) + " lines; a batch holds at most that many requests"}
			}
			if _, werr := u.f.Write(buf[:n]); werr != nil {
				return serverError("cannot store the upload", werr)
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return invalid("file", "cannot read the file: "+err.Error())
		}
	}
}

func (u *upload) count(b []byte) {
	u.bytes += int64(len(b))
	for _, c := range b {
		switch c {
		case '\n':
			u.inLine = false
		case ' ', '\t', '\r':
		default:
			if !u.inLine {
				u.inLine = true
				u.lines++
			}
		}
	}
}

// keep makes the upload a file of the Batch API: synced, renamed to its own name, recorded.
func (u *upload) keep(m *Manager, owner string) (*db.FileRecord, error) {
	rec := &db.FileRecord{ID: newID("file-"), Owner: owner, Filename: u.filename, Purpose: purposeBatch, Bytes: u.bytes, Lines: u.lines,
		CreatedAt: time.Now().UnixMilli()}
	rec.Name = rec.ID + ".jsonl"
	if err := u.f.Sync(); err != nil {
		return nil, err
	}
	tmp := u.f.Name()
	if err := u.f.Close(); err != nil {
		return nil, err
	}
	u.f = nil
	if err := os.Rename(tmp, m.path(rec.Name)); err != nil {
		os.Remove(tmp)
		return nil, err
	}
	syncDir(m.cfg.Dir)
	if err := m.store.PutFile(rec); err != nil {
		os.Remove(m.path(rec.Name))
		return nil, err
	}
	return rec, nil
}

// discard removes an upload that is not kept.
func (u *upload) discard() {
	if u.f != nil {
		u.f.Close()
		os.Remove(u.f.Name())
	}
}

// syncDir makes the names created in dir durable (best effort: a file system may not sync directories).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// ownedFile returns owner's file id, or the 404 OpenAI gives for a file that does not exist.
func (m *Manager) ownedFile(owner, id string) (db.FileRecord, *pipeline.Error) {
	f, found, err := m.store.File(id)
	if err != nil {
		return f, serverError("cannot read the file's record", err)
	}
	if !found || f.Owner != owner {
		return f, notFound("id", "No such File object: "+id)
	}
	return f, nil
}

// File is GET /v1/files/{id}.
func (m *Manager) File(owner, id string) ([]byte, *pipeline.Error) {
	f, e := m.ownedFile(owner, id)
	if e != nil {
		return nil, e
	}
	return marshal(m.fileObject(&f)), nil
}

// Files is GET /v1/files: owner's files, newest first (oldest first with order "asc"), from after, at
// most limit (1 to 10,000, default 10,000), of one purpose or all.
func (m *Manager) Files(owner, purpose, after, order string, limit int) ([]byte, *pipeline.Error) {
	if limit == 0 {
		limit = 10000
	}
	if limit < 1 || limit > 10000 {
		return nil, invalid("limit", "limit must be between 1 and 10000")
	}
	if order != "" && order != "asc" && order != "desc" {
		return nil, invalid("order", "order must be asc or desc")
	}
	recs, err := m.store.Files(owner, purpose, after, order == "asc", limit+1)
	if err != nil {
		return nil, serverError("cannot list files", err)
	}
	more := len(recs) > limit
	recs = recs[:min(len(recs), limit)]
	out := make([]fileObject, len(recs))
	for i := range recs {
		out[i] = m.fileObject(&recs[i])
	}
	return marshal(list(out, func(f *fileObject) string { return f.ID }, more)), nil
}

// Content is GET /v1/files/{id}/content: the file, open, and its size. The caller closes it.
func (m *Manager) Content(owner, id string) (*os.File, int64, *pipeline.Error) {
	f, e := m.ownedFile(owner, id)
	if e != nil {
		return nil, 0, e
	}
	fh, err := os.Open(m.path(f.Name))
	if err != nil {
		return nil, 0, serverError("cannot open the file", err)
	}
	fi, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, 0, serverError("cannot open the file", err)
	}
	return fh, fi.Size(), nil
}

// DeleteFile is DELETE /v1/files/{id}. A file an unfinished batch reads is refused (409): that batch
// would have nothing to resume from.
func (m *Manager) DeleteFile(owner, id string) ([]byte, *pipeline.Error) {
	f, e := m.ownedFile(owner, id)
	if e != nil {
		return nil, e
	}
	in, err := m.store.FileInUse(id, unfinishedStatuses...)
	if err != nil {
		return nil, serverError("cannot read the batches", err)
	}
	if in != "" {
		return nil, &pipeline.Error{Status: 409, Type: "invalid_request_error", Param: "id", Code: "file_in_use",
			Message: fmt.Sprintf("file %s is the input of batch %s, which is not finished; cancel it first", id, in)}
	}
	if err := m.deleteFile(&f); err != nil {
		return nil, serverError("cannot delete the file", err)
	}
	return marshal(struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Deleted bool   `json:"deleted"`
	}{id, "file", true}), nil
}

// deleteFile deletes a file's record, then its bytes.
func (m *Manager) deleteFile(f *db.FileRecord) error {
	if _, err := m.store.DeleteFile(f.ID); err != nil {
		return err
	}
	if err := os.Remove(m.path(f.Name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
