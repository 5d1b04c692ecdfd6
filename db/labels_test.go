package db

import (
	"fmt"
	"testing"
)

// TestLabelAddedByARolledBackBatch: a batch that adds a new set of descriptive columns (here a new
// namespace) and then fails is rolled back with its labels row; a later entry with the same columns gets
// a row that exists, and is read back.
func TestLabelAddedByARolledBackBatch(t *testing.T) {
	s := openTest(t)
	mustWrite(t, s, &Batch{Puts: []*Entry{entryOf(0)}})
	pages := queryInt(t, s, `PRAGMA page_count`)
	if err := s.execWriter(fmt.Sprintf(`PRAGMA max_page_count = %d`, pages)); err != nil {
		t.Fatal(err)
	}
	big := &Batch{}
	for i := range 50 {
		e := entryOf(10 + i)
		e.Namespace = "fresh"
		e.Body = bodyOf(i, 16<<10)
		big.Puts = append(big.Puts, e)
	}
	if err := s.WriteBatch(big); err == nil {
		t.Fatal("WriteBatch succeeded on a full database")
	}
	if err := s.execWriter(`PRAGMA max_page_count = 1073741823`); err != nil {
		t.Fatal(err)
	}
	e := entryOf(1)
	e.Namespace = "fresh"
	mustWrite(t, s, &Batch{Puts: []*Entry{e}})
	got, ok := mustGet(t, mustReader(t, s), e.Key)
	if !ok || got.Namespace != "fresh" {
		t.Fatalf("entry of a namespace first seen in a rolled-back batch: ok=%v namespace %q", ok, got.Namespace)
	}
	if n, err := s.Delete(Filter{Namespace: new("fresh")}); err != nil || n != 1 {
		t.Fatalf("delete by namespace: %d, %v", n, err)
	}
}
