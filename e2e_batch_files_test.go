package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
)

// The Batch API's files (/v1/files) through the official Go SDK and plain HTTP: uploads are streamed to the
// batch folder under their own limits, listed, read back byte for byte and deleted; bad uploads get OpenAI's
// error shape and leave nothing behind.

// uploadBatchFile uploads content as a batch input file with the SDK.
func uploadBatchFile(t *testing.T, client openai.Client, name, content string) *openai.FileObject {
	t.Helper()
	f, err := client.Files.New(context.Background(), openai.FileNewParams{
		File: openai.File(strings.NewReader(content), name, "application/jsonl"), Purpose: openai.FilePurposeBatch})
	if err != nil {
		t.Fatalf("Files.New: %v", err)
	}
	return f
}

// sdkStatus is the HTTP status of an SDK call's error, 0 when it is not an API error.
func sdkStatus(err error) int {
	var apiErr *openai.Error
	if errors.As(err, &apiErr) {
		return apiErr.StatusCode
	}
	return 0
}

// multipartUpload is a POST /v1/files body with the given fields and file.
func multipartUpload(t *testing.T, fields map[string]string, filename, content string) (string, *bytes.Buffer) {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for k, v := range fields {
		if err := w.WriteField(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if filename != "" {
		fw, err := w.CreateFormFile("file", filename)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(fw, content)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w.FormDataContentType(), &b
}

// batchFolder lists the names in the proxy's batch folder (beside the database).
func batchFolder(t *testing.T, p *testProxy) []string {
	t.Helper()
	entries, err := os.ReadDir(p.DBPath + ".batches")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestE2EBatchFiles: an upload through the SDK comes back as OpenAI's File object, in the list, by id and as
// its exact bytes; deleting it removes it from all three and from the batch folder. A file larger than
// max_body_bytes is taken (its route has its own limit), and a chunked upload too.
func TestE2EBatchFiles(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) { c.MaxBodyBytes = 64 << 10 })
	client := sdkClient(p)
	ctx := context.Background()
	var lines strings.Builder
	for i := range 2000 { // ~200 KB: over max_body_bytes
		fmt.Fprintf(&lines, `{"custom_id":"r%d","method":"POST","url":"/v1/chat/completions","body":%s}`+"\n", i, chatBody(fmt.Sprint("q", i)))
	}
	content := lines.String()
	f := uploadBatchFile(t, client, "in.jsonl", content)
	if !strings.HasPrefix(f.ID, "file-") || f.Object != "file" || f.Bytes != int64(len(content)) || f.Filename != "in.jsonl" ||
		f.Purpose != "batch" || f.CreatedAt == 0 {
		t.Fatalf("file object: %s", f.RawJSON())
	}
	got, err := client.Files.Get(ctx, f.ID)
	if err != nil || got.ID != f.ID || got.Bytes != f.Bytes {
		t.Fatalf("Files.Get: %v %+v", err, got)
	}
	page, err := client.Files.List(ctx, openai.FileListParams{})
	if err != nil || len(page.Data) != 1 || page.Data[0].ID != f.ID {
		t.Fatalf("Files.List: %v %+v", err, page)
	}
	resp, err := client.Files.Content(ctx, f.ID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != content {
		t.Fatalf("content: %d bytes back, %d sent", len(b), len(content))
	}

	// A chunked upload (no Content-Length), as a client streaming from disk sends it.
	ct, body := multipartUpload(t, map[string]string{"purpose": "batch"}, "chunked.jsonl", content)
	req, _ := http.NewRequest("POST", p.URL+"/v1/files", io.MultiReader(body)) // not a *bytes.Buffer: no length known
	req.Header.Set("Content-Type", ct)
	r, rb := p.do(req)
	if r.StatusCode != 200 || !strings.Contains(string(rb), `"bytes":`+fmt.Sprint(len(content))) {
		t.Fatalf("chunked upload: %d %s", r.StatusCode, rb)
	}

	del, err := client.Files.Delete(ctx, f.ID)
	if err != nil || !del.Deleted || del.ID != f.ID {
		t.Fatalf("Files.Delete: %v %+v", err, del)
	}
	if _, err := client.Files.Get(ctx, f.ID); sdkStatus(err) != 404 {
		t.Fatalf("Files.Get after delete: %v, want a 404", err)
	}
	if _, err := client.Files.Content(ctx, f.ID); sdkStatus(err) != 404 {
		t.Fatalf("Files.Content after delete: %v, want a 404", err)
	}
	for _, name := range batchFolder(t, p) {
		if strings.HasPrefix(name, f.ID) {
			t.Fatalf("%s is still in the batch folder after the delete", name)
		}
	}
}

// TestE2EBatchFileRefusals: uploads that are not what the route takes get OpenAI's error shape, and leave
// nothing in the batch folder: over max_batch_file_bytes (413), over 50,000 lines, another purpose, no
// file, not multipart.
func TestE2EBatchFileRefusals(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) { c.MaxBatchFileBytes = 100_000 })
	post := func(what, ct string, body io.Reader, status int) {
		t.Helper()
		req, _ := http.NewRequest("POST", p.URL+"/v1/files", body)
		req.Header.Set("Content-Type", ct)
		resp, b := p.do(req)
		expectError(t, what, resp, b, status)
	}
	big := strings.Repeat(`{"custom_id":"x"}`+"\n", 100_000/18+1)
	ct, body := multipartUpload(t, map[string]string{"purpose": "batch"}, "big.jsonl", big)
	post("over max_batch_file_bytes", ct, body, 413)

	p2 := newTestProxy(t, nil)
	many := strings.Repeat("{}\n", 50_001)
	ct, body = multipartUpload(t, map[string]string{"purpose": "batch"}, "many.jsonl", many)
	req, _ := http.NewRequest("POST", p2.URL+"/v1/files", body)
	req.Header.Set("Content-Type", ct)
	resp, b := p2.do(req)
	if e := expectError(t, "over 50,000 lines", resp, b, 400); !strings.Contains(e.Error.Message, "50000") {
		t.Errorf("over 50,000 lines: %s", b)
	}
	ct, body = multipartUpload(t, map[string]string{"purpose": "batch"}, "ok.jsonl", strings.Repeat("{}\n", 50_000))
	req, _ = http.NewRequest("POST", p2.URL+"/v1/files", body)
	req.Header.Set("Content-Type", ct)
	if resp, b := p2.do(req); resp.StatusCode != 200 {
		t.Fatalf("50,000 lines: %d %s", resp.StatusCode, b)
	}

	ct, body = multipartUpload(t, map[string]string{"purpose": "fine-tune"}, "x.jsonl", "{}\n")
	post("purpose fine-tune", ct, body, 400)
	ct, body = multipartUpload(t, map[string]string{"purpose": "batch"}, "", "")
	post("no file", ct, body, 400)
	ct, body = multipartUpload(t, nil, "x.jsonl", "{}\n")
	post("no purpose", ct, body, 400)
	post("not multipart", "application/json", strings.NewReader(`{"purpose":"batch"}`), 400)
	if names := batchFolder(t, p); len(names) != 0 {
		t.Fatalf("refused uploads left %v in the batch folder", names)
	}
	if _, err := os.Stat(filepath.Join(p.DBPath + ".batches")); err != nil {
		t.Fatal(err)
	}
}

// TestE2EBatchFileCurl: curl's own upload (-F), which for a body over 1 MB asks "Expect: 100-continue" and
// sends the file only after the proxy's 100 Continue, is taken whole.
func TestE2EBatchFileCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("no curl binary")
	}
	p := newTestProxy(t, nil)
	path := filepath.Join(t.TempDir(), "big.jsonl")
	content := strings.Repeat(jsonlLine("x", "/v1/chat/completions", chatBody(strings.Repeat("y", 1000))), 2000) // ~2 MB
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(curl, "-sS", "-v", "-F", "purpose=batch", "-F", "file=@"+path, p.URL+"/v1/files").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "100 Continue") || !strings.Contains(string(out), fmt.Sprintf(`"bytes":%d`, len(content))) {
		t.Fatalf("curl upload: %v\n%s", err, out)
	}
}

// TestE2EBatchFileListing: Files.List pages newest first (oldest first with order=asc) through limit and
// after, and filters by purpose; a batch's output file is listed with purpose batch_output.
func TestE2EBatchFileListing(t *testing.T) {
	p := newTestProxy(t, nil)
	client := sdkClient(p)
	ctx := context.Background()
	var ids []string
	for i := range 3 {
		ids = append(ids, uploadBatchFile(t, client, fmt.Sprint("f", i, ".jsonl"), jsonlLine("a", "/v1/chat/completions", chatBody(fmt.Sprint("l", i)))).ID)
	}
	page, err := client.Files.List(ctx, openai.FileListParams{Limit: openai.Int(2)})
	if err != nil || len(page.Data) != 2 || page.Data[0].ID != ids[2] || page.Data[1].ID != ids[1] || !page.HasMore {
		t.Fatalf("first page: %v %s", err, page.RawJSON())
	}
	page, err = client.Files.List(ctx, openai.FileListParams{Limit: openai.Int(2), After: openai.String(ids[1])})
	if err != nil || len(page.Data) != 1 || page.Data[0].ID != ids[0] || page.HasMore {
		t.Fatalf("second page: %v %s", err, page.RawJSON())
	}
	page, err = client.Files.List(ctx, openai.FileListParams{Order: openai.FileListParamsOrderAsc})
	if err != nil || len(page.Data) != 3 || page.Data[0].ID != ids[0] {
		t.Fatalf("oldest first: %v %s", err, page.RawJSON())
	}
	b, err := client.Batches.New(ctx, openai.BatchNewParams{InputFileID: ids[0], Endpoint: openai.BatchNewParamsEndpointV1ChatCompletions,
		CompletionWindow: openai.BatchNewParamsCompletionWindow24h})
	if err != nil {
		t.Fatal(err)
	}
	b = waitBatch(t, client, b.ID)
	page, err = client.Files.List(ctx, openai.FileListParams{Purpose: openai.String("batch_output")})
	if err != nil || len(page.Data) != 1 || page.Data[0].ID != b.OutputFileID || page.Data[0].Filename != b.ID+"_output.jsonl" {
		t.Fatalf("output files: %v %s", err, page.RawJSON())
	}
}
