// Command producer is the cluster suite's event producer, run as a pod: it publishes a
// numbered stream of events to the dispatcher's Service with the pod's projected
// ServiceAccount token, the way a service in the cluster would: with pkg/client, which
// reads the token file for every request and retries each event under its id (the
// dispatcher's dedupe makes that safe) until it is accepted. It prints one line per
// accepted event, which the suite reads back with `kubectl logs` to count what was lost.
//
//	accepted id=<id> matched=<n> duplicate=<bool> tries=<n>
//	given-up id=<id> last=<error>
//	done accepted=<n> given-up=<n>
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/herald-dev/herald/pkg/client"
	"github.com/herald-dev/herald/pkg/wire"
)

func main() {
	server := flag.String("server", "", "dispatcher ingest URL, e.g. http://10.96.12.7:8080")
	namespace := flag.String("namespace", "", "namespace to publish into")
	tokenFile := flag.String("token-file", "/var/run/secrets/herald/token", "bearer token file, a projected ServiceAccount token for audience hooks.herald.dev (re-read for every request: projected tokens rotate)")
	count := flag.Int("count", 1, "events to publish")
	rate := flag.Float64("rate", 20, "events started per second")
	prefix := flag.String("id-prefix", "evt", "event ids are <prefix>-<00000>")
	types := flag.String("types", "test.event", "comma-separated event types, used in turn")
	data := flag.String("data", `{"n":%d}`, "data JSON; %d is replaced by the event number")
	wantMatched := flag.Int("want-matched", 0, "when > 0, republish under a new id until this many endpoints match (the dispatcher learns subscriptions a moment after they are applied)")
	perEvent := flag.Duration("per-event-deadline", 3*time.Minute, "how long to retry one event")
	flag.Parse()
	if *server == "" || *namespace == "" {
		fmt.Fprintln(os.Stderr, "producer: -server and -namespace are required")
		os.Exit(2)
	}
	// Connection errors and 5xx are expected while the dispatcher pod restarts; so are
	// 401/403, briefly, while a fresh dispatcher's caches fill: those are retried here,
	// the client retries the rest until the event's deadline.
	tries := 0
	c, err := client.New(*server, client.Options{
		TokenFile: *tokenFile, Timeout: 10 * time.Second, UserAgent: "herald-cluster-suite-producer",
		Retry: client.Retry{Attempts: -1, Backoff: 200 * time.Millisecond, MaxBackoff: time.Second, OnRetry: func(error) { tries++ }},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "producer:", err)
		os.Exit(2)
	}
	typeList := strings.Split(*types, ",")
	tick := time.NewTicker(time.Duration(float64(time.Second) / *rate))
	defer tick.Stop()

	accepted, givenUp := 0, 0
	for i := 0; i < *count; i++ {
		<-tick.C
		typ := typeList[i%len(typeList)]
		body := json.RawMessage(strings.ReplaceAll(*data, "%d", fmt.Sprint(i)))
		for attempt := 0; ; attempt++ {
			id := fmt.Sprintf("%s-%05d", *prefix, i)
			if attempt > 0 {
				id = fmt.Sprintf("%s-%05d-r%d", *prefix, i, attempt)
			}
			tries = 0
			res, err := publish(c, *namespace, wire.Event{ID: id, Type: typ, Data: body}, *perEvent, &tries)
			if err != nil {
				givenUp++
				fmt.Printf("given-up id=%s last=%q\n", id, err.Error())
				break
			}
			accepted++
			fmt.Printf("accepted id=%s type=%s matched=%d duplicate=%t tries=%d\n", id, typ, res.Matched, res.Duplicate, tries+1)
			if *wantMatched == 0 || res.Matched >= *wantMatched {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	fmt.Printf("done accepted=%d given-up=%d\n", accepted, givenUp)
	if givenUp > 0 {
		os.Exit(1)
	}
}

// publish publishes e until a 202 or the deadline. The client retries what may pass;
// a refusal of the credentials is retried here too, while the dispatcher's caches fill.
func publish(c *client.Client, namespace string, e wire.Event, deadline time.Duration, tries *int) (wire.PublishResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	for {
		res, err := c.Publish(ctx, namespace, e)
		if err == nil {
			return res, nil
		}
		if ctx.Err() != nil {
			return res, fmt.Errorf("after %d tries: %w", *tries+1, err)
		}
		*tries++
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("after %d tries: %w", *tries, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
