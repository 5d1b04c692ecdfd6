package db

import (
	"bytes"
	"testing"
)

// TestBatchRecords: files and batches round-trip; listings are newest first with an "after" cursor and
// stay within their owner; a conditional update happens only from the statuses named, together with its
// files; ReadBatches sees what a running proxy recorded without opening the database for writing.
func TestBatchRecords(t *testing.T) {
	s := openTest(t)
	b, err := OpenBatches(s.Path(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i, owner := range []string{"", "team-a", ""} {
		f := FileRecord{ID: "file-" + string(rune('a'+i)), Owner: owner, Filename: "in.jsonl", Purpose: "batch", Bytes: 10, Lines: 2, CreatedAt: int64(i), Name: "x"}
		if err := b.PutFile(&f); err != nil {
			t.Fatal(err)
		}
	}
	files, err := b.Files("", "", "", false, 10)
	if err != nil || len(files) != 2 || files[0].ID != "file-c" || files[1].ID != "file-a" {
		t.Fatalf("files of owner \"\": %+v, %v", files, err)
	}
	if files, err = b.Files("", "", "file-c", false, 10); err != nil || len(files) != 1 || files[0].ID != "file-a" {
		t.Fatalf("files after file-c: %+v, %v", files, err)
	}
	if files, err = b.Files("", "batch_output", "", false, 10); err != nil || len(files) != 0 {
		t.Fatalf("output files: %+v, %v", files, err)
	}
	r := BatchRecord{ID: "batch_1", Endpoint: "/v1/chat/completions", InputFileID: "file-a", CompletionWindow: "24h",
		Status: "validating", Metadata: []byte(`{"k":"v"}`), CreatedAt: 5}
	if err := b.PutBatch(&r); err != nil {
		t.Fatal(err)
	}
	got, found, err := b.Batch("batch_1")
	if err != nil || !found || got.Errors != nil || !bytes.Equal(got.Metadata, r.Metadata) || got.CreatedAt != 5 {
		t.Fatalf("batch: %+v, %v, %v", got, found, err)
	}
	r.Status, r.OutputFileID = "completed", "file-out"
	out := []FileRecord{{ID: "file-out", Purpose: "batch_output", Name: "o"}}
	if ok, err := b.UpdateBatch(&r, out, "in_progress"); err != nil || ok {
		t.Fatalf("update from in_progress of a validating batch: %v, %v", ok, err)
	}
	if _, found, _ := b.File("file-out"); found {
		t.Fatal("a refused update put its files")
	}
	if ok, err := b.UpdateBatch(&r, out, "validating", "in_progress"); err != nil || !ok {
		t.Fatalf("update: %v, %v", ok, err)
	}
	if _, found, _ := b.File("file-out"); !found {
		t.Fatal("the update did not put its files")
	}
	if err := b.Progress("batch_1", 3, 1, 300, 100); err != nil {
		t.Fatal(err)
	}
	if in, err := b.FileInUse("file-a", "completed"); err != nil || in != "batch_1" {
		t.Fatalf("FileInUse: %q, %v", in, err)
	}
	var read []BatchRecord
	if err := ReadBatches(s.Path(), func(r *BatchRecord) { read = append(read, *r) }); err != nil {
		t.Fatal(err)
	}
	if len(read) != 1 || read[0].Status != "completed" || read[0].Completed != 3 || read[0].ErrorBytes != 100 {
		t.Fatalf("ReadBatches: %+v", read)
	}
	counts, err := b.StatusCounts()
	if err != nil || counts["completed"] != 1 {
		t.Fatalf("StatusCounts: %v, %v", counts, err)
	}
}
