package queue

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestTransient_RetriesOnlyWhatALaterTryCanFix(t *testing.T) {
	for _, tc := range []struct {
		why  string
		err  error
		want bool
	}{
		{"the JetStream API timed out placing a replicated stream (seen on a fresh 3-node cluster)",
			fmt.Errorf("creating stream %s: %w", DeadLettersStream, context.DeadlineExceeded), true},
		{"the client's own request timeout", fmt.Errorf("creating bucket: %w", nats.ErrTimeout), true},
		{"no JetStream responder yet", fmt.Errorf("creating stream: %w", nats.ErrNoResponders), true},
		{"meta leader being elected",
			fmt.Errorf("creating stream: %w", &jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}), true},
		{"a configuration the server refuses will be refused again",
			fmt.Errorf("creating stream: %w", &jetstream.APIError{Code: 400, ErrorCode: 10052, Description: "replicas > 1 not supported in non-clustered mode"}), false},
		{"an unrelated failure", errors.New("permission denied"), false},
	} {
		if got := transient(tc.err); got != tc.want {
			t.Errorf("%s: transient(%v) = %t, want %t", tc.why, tc.err, got, tc.want)
		}
	}
}
