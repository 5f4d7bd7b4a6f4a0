// Command producer is the cluster suite's event producer, run as a pod: it publishes a
// numbered stream of events to the dispatcher's Service with the pod's projected
// ServiceAccount token, the way a service in the cluster would, and retries each event
// (same id, so the dispatcher's dedupe makes retrying safe) until it is accepted. It prints
// one line per accepted event, which the suite reads back with `kubectl logs` to count
// what was lost.
//
//	accepted id=<id> matched=<n> duplicate=<bool> tries=<n>
//	given-up id=<id> last=<error>
//	done accepted=<n> given-up=<n>
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
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
	url := strings.TrimSuffix(*server, "/") + "/v1/namespaces/" + *namespace + "/events"
	client := &http.Client{Timeout: 10 * time.Second}
	typeList := strings.Split(*types, ",")
	tick := time.NewTicker(time.Duration(float64(time.Second) / *rate))
	defer tick.Stop()

	accepted, givenUp := 0, 0
	for i := 0; i < *count; i++ {
		<-tick.C
		typ := typeList[i%len(typeList)]
		body := strings.ReplaceAll(*data, "%d", fmt.Sprint(i))
		for attempt := 0; ; attempt++ {
			id := fmt.Sprintf("%s-%05d", *prefix, i)
			if attempt > 0 {
				id = fmt.Sprintf("%s-%05d-r%d", *prefix, i, attempt)
			}
			res, tries, err := publish(client, url, *tokenFile, id, typ, body, *perEvent)
			if err != nil {
				givenUp++
				fmt.Printf("given-up id=%s last=%q\n", id, err.Error())
				break
			}
			accepted++
			fmt.Printf("accepted id=%s type=%s matched=%d duplicate=%t tries=%d\n", id, typ, res.Matched, res.Duplicate, tries)
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

type answer struct {
	ID        string `json:"id"`
	Matched   int    `json:"matched"`
	Duplicate bool   `json:"duplicate"`
}

// publish retries one event until a 202 or the deadline. Connection errors and 5xx are
// expected while the dispatcher pod restarts; 401/403 too, briefly, while a fresh
// dispatcher's caches fill.
func publish(client *http.Client, url, tokenFile, id, typ, data string, deadline time.Duration) (answer, int, error) {
	payload, err := json.Marshal(map[string]any{"id": id, "type": typ, "data": json.RawMessage(data)})
	if err != nil {
		return answer{}, 0, fmt.Errorf("encoding event %s: %w", id, err)
	}
	end := time.Now().Add(deadline)
	var last error
	for tries := 1; ; tries++ {
		res, err := post(client, url, tokenFile, payload)
		if err == nil {
			return res, tries, nil
		}
		last = err
		if time.Now().After(end) {
			return answer{}, tries, fmt.Errorf("after %d tries: %w", tries, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func post(client *http.Client, url, tokenFile string, payload []byte) (answer, error) {
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		return answer{}, fmt.Errorf("reading the token: %w", err)
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusAccepted {
		return answer{}, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(body))
	}
	var a answer
	if err := json.Unmarshal(body, &a); err != nil {
		return answer{}, fmt.Errorf("decoding %q: %w", body, err)
	}
	return a, nil
}
