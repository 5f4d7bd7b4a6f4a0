package queue_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/herald-dev/herald/dispatcher/config"

	"github.com/go-logr/logr/funcr"

	"github.com/herald-dev/herald/dispatcher/queue"
	"github.com/herald-dev/herald/internal/testenv"
)

// tallyChildEnv names the NATS URL a child process of TestTally_ExactAcrossKills settles
// deliveries on until it is killed.
const tallyChildEnv = "HERALD_TALLY_CHILD_NATS"

var tallyEndpoint = queue.Endpoint{Namespace: "shop", Name: "billing", UID: "0c0c0c0c-0000-4000-8000-000000000001"}

// settleByScript settles a delivery as the script of TestTally_ExactAcrossKills says:
// event i%10 == 0 is dead-lettered after a failed attempt, i%10 == 1 fails its first
// attempt and is delivered at its second, the others are delivered.
func settleByScript(ctx context.Context, p *queue.Pending) error {
	i, err := strconv.Atoi(strings.TrimPrefix(p.EventID, "evt_"))
	if err != nil {
		return err
	}
	switch {
	case i%10 == 0:
		return p.DeadLetter(ctx, queue.DeadLetter{Reason: "RetriesExhausted", StatusCode: 503, Attempted: true})
	case i%10 == 1 && p.Attempt == 1:
		next := p.Delivery
		next.Attempt++
		return p.Retry(ctx, next)
	}
	return p.Delivered()
}

// settleAll consumes the endpoint's deliveries with 8 workers until ctx ends.
func settleAll(ctx context.Context, st queue.Store, fail func(error)) error {
	cons, err := st.Consume(ctx, tallyEndpoint, queue.ConsumerOptions{AckWait: time.Second, Buffer: 64})
	if err != nil {
		return err
	}
	go func() { <-ctx.Done(); cons.Stop() }()
	work := make(chan *queue.Pending)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for p := range work {
				if err := settleByScript(context.Background(), p); err != nil {
					fail(err)
				}
			}
		})
	}
	defer func() { close(work); wg.Wait() }()
	for {
		p, err := cons.Next()
		if err != nil {
			return nil
		}
		work <- p
	}
}

// TestTally_ExactAcrossKills: the counters of an endpoint's tally equal what was
// delivered, failed and dead-lettered after dispatchers settling at full speed were
// SIGKILLed again and again (issue 27 item 4). Each child process settles deliveries on
// a NATS server outside it until it is killed at a moment when settlements are in
// flight; a last dispatcher settles the rest. Kills go on (up to 40) until at least one
// child has found a delivery counted by a killed one and not acknowledged (the window
// the tally's open sets are for), so the test cannot pass without crossing it.
func TestTally_ExactAcrossKills(t *testing.T) {
	if url := os.Getenv(tallyChildEnv); url != "" {
		tallyChild(t, url)
		return
	}
	ctx := context.Background()
	url := testenv.NATS(t)
	// The children reach NATS with 20ms on every answer, as over a network: a count is
	// on the server 20ms before its answer lets the acknowledgements go out, a window a
	// kill at a moment of chance falls in often.
	slow := latencyProxy(t, url, 20*time.Millisecond)
	st := replica(t, url)
	const n = 3000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("evt_%d", i)
	}
	for i := 0; i < n; i += 100 {
		storeFor(t, st, tallyEndpoint, ids[i:i+100]...)
	}
	settled := func() int64 {
		tl, err := st.TallyOf(ctx, tallyEndpoint)
		if err != nil {
			t.Fatal(err)
		}
		return tl.Delivered + tl.DeadLettered
	}

	var openFound atomic.Int64
	kills := 0
	for ; kills < 40 && (kills < 8 || openFound.Load() == 0); kills++ {
		before := settled()
		if before >= n-200 {
			break
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestTally_ExactAcrossKills$")
		cmd.Env = append(os.Environ(), tallyChildEnv+"="+slow)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		read := make(chan struct{})
		go func() {
			defer close(read)
			for sc := bufio.NewScanner(out); sc.Scan(); {
				if strings.HasPrefix(sc.Text(), "open ") {
					openFound.Add(1)
				}
			}
		}()
		// Killed once it has settled some (settlements in flight), at a moment of chance.
		waitFor(t, 30*time.Second, "the child settling deliveries", func() bool { return settled() >= before+20 })
		time.Sleep(time.Duration(rand.IntN(40)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-read
		_ = cmd.Wait()
	}
	t.Logf("%d kills; deliveries found counted by a killed dispatcher and not acknowledged: %d", kills, openFound.Load())
	if openFound.Load() == 0 {
		t.Errorf("no kill of %d fell between a count and its acknowledgement: the window was not crossed", kills)
	}

	// The last dispatcher settles the rest.
	last := replica(t, url)
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- settleAll(cctx, last, func(err error) { t.Error(err) }) }()
	// Every delivery acknowledged: each was counted before (the last dispatcher's
	// counts are written by its Close, below).
	waitFor(t, 60*time.Second, "every delivery settled", func() bool {
		left, err := st.PendingDeliveries(ctx, tallyEndpoint)
		return err == nil && left == 0
	})
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	last.Close()

	tl, err := st.TallyOf(ctx, tallyEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	want := queue.Counts{Delivered: n - n/10, DeadLettered: n / 10, FailedAttempts: 2 * n / 10}
	if tl.Counts != want {
		t.Errorf("tally after %d kills = %+v, want %+v", kills, tl.Counts, want)
	}
	dead := 0
	if err := st.DeadLetters(ctx, tallyEndpoint, func(*queue.DeadLetter) bool { dead++; return true }); err != nil {
		t.Fatal(err)
	}
	if dead != n/10 {
		t.Errorf("%d dead letters stored, want %d", dead, n/10)
	}
}

// tallyChild settles deliveries until it is killed, printing "open <delivery id>" for
// each delivery handed out again that a killed dispatcher had counted.
func tallyChild(t *testing.T, url string) {
	var mu sync.Mutex
	log := funcr.New(func(prefix, args string) {
		if strings.Contains(args, "handed out again was settled already") {
			mu.Lock()
			fmt.Fprintln(os.Stdout, "open", args)
			mu.Unlock()
		}
	}, funcr.Options{Verbosity: 1})
	st, err := queue.Open(context.Background(), queue.Options{Store: config.Store{URL: url}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	_ = settleAll(context.Background(), st, func(err error) { fmt.Fprintln(os.Stderr, "child:", err) })
}

// latencyProxy forwards TCP connections to the NATS at url, holding back what the
// server sends by delay; it returns the URL to connect to.
func latencyProxy(t *testing.T, url string, delay time.Duration) string {
	t.Helper()
	target := strings.TrimPrefix(url, "nats://")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			go func() { _, _ = io.Copy(s, c); _ = s.Close() }()
			go func() {
				type chunk struct {
					at time.Time
					b  []byte
				}
				q := make(chan chunk, 1024)
				go func() {
					defer func() { _ = c.Close() }()
					for ch := range q {
						time.Sleep(time.Until(ch.at.Add(delay)))
						if _, err := c.Write(ch.b); err != nil {
							return
						}
					}
				}()
				defer close(q)
				for {
					buf := make([]byte, 32<<10)
					k, err := s.Read(buf)
					if k > 0 {
						q <- chunk{time.Now(), buf[:k]}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return "nats://" + ln.Addr().String()
}
