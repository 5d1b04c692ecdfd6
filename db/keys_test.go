package db

import "testing"

// ScanKeys gives every key on disk once, and stops when told to.
func TestScanKeys(t *testing.T) {
	s := openTest(t)
	b := &Batch{}
	for i := range 500 {
		b.Puts = append(b.Puts, entryOf(i))
	}
	mustWrite(t, s, b)
	if _, err := s.Delete(Filter{Keys: []Key{keyOf(7)}}); err != nil {
		t.Fatal(err)
	}
	seen := map[Key]int{}
	if err := s.ScanKeys(func(k *Key) bool { seen[*k]++; return true }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 499 {
		t.Fatalf("%d keys scanned, want 499", len(seen))
	}
	for i := range 500 {
		if n := seen[keyOf(i)]; (i == 7 && n != 0) || (i != 7 && n != 1) {
			t.Fatalf("key %d scanned %d times", i, n)
		}
	}
	n := 0
	if err := s.ScanKeys(func(*Key) bool { n++; return n < 10 }); err != nil || n != 10 {
		t.Errorf("a scan told to stop after 10 keys read %d (err %v)", n, err)
	}
}

// Only All alone deletes everything: with any other filter or a limit it is that filter.
func TestFilterEverything(t *testing.T) {
	ns := "a"
	for _, c := range []struct {
		f    Filter
		want bool
	}{
		{Filter{All: true}, true},
		{Filter{All: true, Namespace: &ns}, false},
		{Filter{All: true, Model: "m"}, false},
		{Filter{All: true, Keys: []Key{keyOf(1)}}, false},
		{Filter{All: true, OlderThan: 1}, false},
		{Filter{All: true, Limit: 100}, false},
		{Filter{Namespace: &ns}, false},
	} {
		if got := c.f.Everything(); got != c.want {
			t.Errorf("%+v: Everything() = %v, want %v", c.f, got, c.want)
		}
	}
}
