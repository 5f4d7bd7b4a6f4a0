package replay_test

import (
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/dispatcher/replay"
)

func TestParseAnnotation(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		why, value, want, err string
	}{
		{"the annotation's first form (any value) replays every dead letter", "2026-11-30T10:00:00Z", "from=dead-letters", ""},
		{"a duration is before the time the annotation is handled", "since=2h", "since=2026-11-30T10:00:00Z from=dead-letters", ""},
		{"a window from both sources", "since=2026-11-30T08:00:00Z until=2026-11-30T10:00:00Z from=all",
			"since=2026-11-30T08:00:00Z until=2026-11-30T10:00:00Z from=dead-letters,delivered", ""},
		{"type and ids select further", "type=invoice.paid ids=evt_1,evt_2 from=delivered", "type=invoice.paid ids=evt_1,evt_2 from=delivered", ""},
		{"an unknown key is refused, naming the known ones", "sinse=2h", "", "unknown key \"sinse\" (since, until, type, ids, from)"},
		{"a time that is neither form says which forms there are", "since=yesterday", "", "neither an RFC 3339 time"},
		{"an empty window is refused", "since=1h until=2h", "", "until (2026-11-30T10:00:00Z) must be after since (2026-11-30T11:00:00Z)"},
		{"an unknown source is refused", "since=1h from=pending", "", "source \"pending\" is not one of dead-letters, delivered, all"},
	} {
		sel, err := replay.ParseAnnotation(c.value, now)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: %q: error %v, want %q", c.why, c.value, err, c.err)
		case c.err == "" && err != nil:
			t.Errorf("%s: %q: %v", c.why, c.value, err)
		case c.err == "" && sel.String() != c.want:
			t.Errorf("%s: %q = %q, want %q", c.why, c.value, sel.String(), c.want)
		}
	}
}
