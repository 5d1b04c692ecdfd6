package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestE2EDeletedAnswerNeverServed races admin deletes against the answers they delete: each round sends a
// miss and, at a random moment while it is on its way, deletes its key. Whatever the interleaving, once both
// are done a hit for that key may only be an answer stored after the delete, which is then on disk; a hit
// whose row is gone was served although it was deleted. With the memory layer off the scheduler's recent
// answers are what could keep a deleted answer alive; with it on, the memory stage.
func TestE2EDeletedAnswerNeverServed(t *testing.T) {
	for _, memory := range []bool{false, true} {
		t.Run(fmt.Sprintf("memory=%v", memory), func(t *testing.T) {
			p := newTestProxy(t, func(c *fileConfig) { c.Cache.Enabled = memory })
			// Rounds run side by side, so that the stages are busy while deletes land.
			const workers, rounds = 16, 20
			var wg sync.WaitGroup
			for w := range workers {
				d := openCacheDB(t, p.DBPath) // one connection per worker: a connection is not for concurrent use
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range rounds {
						if t.Failed() {
							return
						}
						deleteRace(t, p, d, fmt.Sprintf("deleted while answered %d/%d", w, i))
					}
				}()
			}
			wg.Wait()
		})
	}
}

// deleteRace sends a miss for content and deletes its key at a random moment of the miss's life, then
// checks that a hit for it, if any, is an answer stored after the delete.
func deleteRace(t *testing.T, p *testProxy, d *cacheDB, content string) {
	body := chatBody(content)
	req, _ := http.NewRequest("POST", p.URL+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("X-Cache-Mode", "read_only")
	resp, err := testClient.Do(req)
	if err != nil {
		t.Error(err)
		return
	}
	resp.Body.Close()
	key := resp.Header.Get("X-Cache-Key")
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		req, _ := http.NewRequest("POST", p.URL+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if r, err := testClient.Do(req); err == nil {
			io.Copy(io.Discard, r.Body)
			r.Body.Close()
		}
	}()
	go func() {
		defer wg.Done()
		// Somewhere in the miss's life: before, during or after its answer is stored.
		time.Sleep(time.Duration(rand.N(3000)) * time.Microsecond)
		req, _ := http.NewRequest("POST", p.URL+"/cache/delete", strings.NewReader(`{"keys":["`+key+`"]}`))
		if r, err := testClient.Do(req); err == nil {
			io.Copy(io.Discard, r.Body)
			r.Body.Close()
		}
	}()
	wg.Wait()
	req, _ = http.NewRequest("POST", p.URL+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("X-Cache-Mode", "read_only")
	resp, err = testClient.Do(req)
	if err != nil {
		t.Error(err)
		return
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return // deleted: a miss
	}
	// A hit: it must be an answer stored after the delete, so its row is (or is about to be) on disk.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, ok := d.row(key); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: a deleted answer was served (%s from %s) and its row is gone from disk: %.80s",
				content, resp.Header.Get("X-Cache"), resp.Header.Get("X-Cache-Source"), b)
			return
		}
	}
}
