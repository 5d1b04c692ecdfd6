package codec

import "testing"

// TestTrainMeasuresAsTheStoresCodecDoes: a dictionary trained twice from the same answers measures the
// same on the held-out ones through Train's own codec as through a store's codec holding the first: Train's
// window reaches the whole dictionary. Sized to the largest sample alone, it left most of the dictionary
// out of reach, every new dictionary measured worse than the current one, and no retraining was kept.
func TestTrainMeasuresAsTheStoresCodecDoes(t *testing.T) {
	samples := answers(5, 1000, 1300)
	first, err := Train(1, samples, 0, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	store := New(Options{})
	if err := store.Add(first.Dict, true); err != nil {
		t.Fatal(err)
	}
	again, err := Train(2, samples, 0, 0, store)
	if err != nil {
		t.Fatal(err)
	}
	if float64(again.DictBytes) > float64(again.CurrentBytes)*1.03 {
		t.Errorf("the same answers' dictionary: %d bytes through Train's codec, %d through the store's (want within 3%%)",
			again.DictBytes, again.CurrentBytes)
	}
}
