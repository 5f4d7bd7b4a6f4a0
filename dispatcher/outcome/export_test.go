package outcome

import "time"

// SetClock moves a tracker's clock, for tests of what happens after a while.
func SetClock(t *Tracker, now func() time.Time) { t.now = now }
