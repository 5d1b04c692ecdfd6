package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// fillDisk writes zeros into a file in dir until the file system is full.
func fillDisk(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("cannot fill the disk: %v", err)
			}
			break
		}
	}
	// The last partial block: byte by byte.
	for {
		if _, err := f.Write(buf[:1]); err != nil {
			return
		}
	}
}

// TestE2EStorageSIGTERMWithAFullDiskExitsNonZero: answers served while the disk is full cannot be kept; a
// SIGTERM then ends the real binary with a non-zero exit code and a message saying how many were lost
// (issue: it exited 0 after logging the loss). The file left behind opens cleanly.
func TestE2EStorageSIGTERMWithAFullDiskExitsNonZero(t *testing.T) {
	llmcacheBinary(t)
	dir := mountTmpfs(t, "4m")
	fake, _, _ := binFixture(t, "", "")
	dbPath := filepath.Join(dir, "cache.db")
	cfgPath := writeBinConfig(t, t.TempDir(), "config.toml", dbPath, fake.URL(), "", "[cache_maintenance]\nenabled = false\n")
	p := startBin(t, cfgPath)

	r := send(loadClient, p.chatURL(), chatBody("stored before the disk filled"))
	if r.err != nil || r.status != 200 {
		t.Fatalf("first request: %d %v", r.status, r.err)
	}
	fillDisk(t, dir)
	const n = 30
	for i := range n {
		r := send(loadClient, p.chatURL(), chatBody(fmt.Sprintf("full disk %d", i)))
		if r.err != nil || r.status != 200 || r.header.Get("X-Cache") != "MISS" {
			t.Fatalf("request %d on a full disk: status %d, X-Cache %q, err %v: %s", i, r.status, r.header.Get("X-Cache"), r.err, r.body)
		}
	}
	code := p.signalAndWait(syscall.SIGTERM)
	if code == 0 {
		t.Fatalf("exit code 0 after SIGTERM with answers that could not be written\n%s", p.stderr.String())
	}
	if !strings.Contains(p.stderr.String(), "cached answers") || !strings.Contains(p.stderr.String(), "they are lost") {
		t.Fatalf("stderr does not say answers were lost:\n%s", p.stderr.String())
	}
	t.Logf("exit code %d", code)

	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	if got := integrityCheck(t, dbPath); got != "ok" {
		t.Fatalf("integrity_check after the stop = %q", got)
	}
}
