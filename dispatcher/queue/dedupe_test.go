package queue_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/dispatcher/queue"
)

// The dedupe store is bounded: beyond MaxDedupeRecords the oldest ids are forgotten and
// new ones are still remembered (deduplication keeps working, over a shorter window).
func TestIngestRecords_BoundedOldestForgottenFirst(t *testing.T) {
	ctx := context.Background()
	st, err := queue.Open(ctx, queue.Options{Store: config.Store{DataDir: t.TempDir(), MaxDedupeRecords: 3}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	keys := make([]string, 5)
	vals := make([][]byte, 5)
	for i := range keys {
		keys[i], vals[i] = queue.IngestKey("ns", fmt.Sprint("evt_", i)), []byte(`{"m":1}`)
	}
	if err := st.RecordIngestMany(ctx, keys, vals); err != nil {
		t.Fatal(err)
	}
	_, found, err := st.LookupIngestMany(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	want := []bool{false, false, true, true, true}
	for i := range want {
		if found[i] != want[i] {
			t.Errorf("event %d remembered = %v, want %v", i, found[i], want[i])
		}
	}
}
