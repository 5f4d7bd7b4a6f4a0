package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	rpprof "runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/app"
	"github.com/herald-dev/herald/dispatcher/auth"
	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/resolve"
	"github.com/herald-dev/herald/dispatcher/router"
	"github.com/herald-dev/herald/internal/outbound"
)

// The dispatcher side of the benchmark runs in a child process of the harness, so that
// its memory (VmHWM) and CPU time (utime+stime) are measured alone. It assembles what
// dispatcher/app assembles, minus the Kubernetes parts: no API server, no informers, no
// status writer. Endpoints and subscriptions are given to the engine and router directly
// through a small control API on 127.0.0.1, which stands in for the watch.

const (
	benchNamespace = "bench"
	benchToken     = "hak_benchmark-token"
	benchSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
)

// endpointSpec is one WebhookEndpoint plus a subscription to "*" pointing at it.
type endpointSpec struct {
	Name        string          `json:"name"`
	URL         string          `json:"url"`
	Timeout     time.Duration   `json:"timeout"`
	Schedule    []time.Duration `json:"schedule"`
	MaxInFlight int             `json:"maxInFlight"`
	Hold        string          `json:"hold,omitempty"`
	// Types are the event types its subscription matches; none means every event.
	Types []string `json:"types,omitempty"`
}

type childConfig struct {
	DataDir   string `json:"dataDir"`
	NATSURL   string `json:"natsURL,omitempty"` // external NATS cluster; empty: embedded in DataDir
	Observer  string `json:"observer"`          // "tracker" (production observer) or "none"
	LogFile   string `json:"logFile"`
	Verbosity int    `json:"verbosity"`
}

type dispatcherChild struct {
	// p is the dispatcher's own route, as app.NewPipeline assembles it.
	p   *app.Pipeline
	log logr.Logger

	profMu  sync.Mutex
	cpuFile *os.File
}

// runDispatcher is the child's main. It prints "READY <ingest addr> <control addr>" on
// stdout once both listen, and stops on SIGTERM or when stdin closes (harness died).
func runDispatcher(cfgJSON string) error {
	var cfg childConfig
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		return fmt.Errorf("child config: %w", err)
	}
	logOut := os.Stderr
	if cfg.LogFile != "" {
		f, err := os.Create(cfg.LogFile)
		if err != nil {
			return err
		}
		defer f.Close()
		logOut = f
	}
	log := funcr.New(func(prefix, args string) {
		fmt.Fprintln(logOut, time.Now().Format("15:04:05.000"), prefix, args)
	}, funcr.Options{Verbosity: cfg.Verbosity})

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer cancel()
	go func() { // the harness holds our stdin; EOF means it went away
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		cancel()
	}()

	cat, err := childCatalog()
	if err != nil {
		return err
	}
	// The same assembly as herald dispatcher, with its default configuration, without
	// the Kubernetes side: endpoints are configured over the control API, no Events (no
	// API server), no metrics.
	conf := config.Default()
	conf.Store.DataDir, conf.Store.URL = cfg.DataDir, cfg.NATSURL
	p, err := app.NewPipeline(ctx, app.PipelineOptions{
		Config:  conf,
		Catalog: cat,
		// Stands in for API-key authentication: a constant bearer token.
		Authorizer: auth.AuthorizerFunc(func(_ context.Context, r *http.Request, ns string) (auth.Identity, error) {
			tok, ok := auth.BearerToken(r)
			if !ok {
				return auth.Identity{}, auth.ErrNoCredentials
			}
			if tok != benchToken {
				return auth.Identity{}, auth.ErrUnauthenticated
			}
			return auth.Identity{Name: "apikey:" + ns + "/bench", Method: auth.MethodAPIKey}, nil
		}),
		// "none" measures the route without the production observer (per-endpoint
		// counters and the shared failure state, compare-and-set on failures).
		WithoutOutcome: cfg.Observer == "none",
		Log:            log,
	})
	if err != nil {
		return err
	}
	defer p.Close()
	if p.Tracker != nil {
		go func() { _ = p.Tracker.Watch(ctx) }()
	}
	d := &dispatcherChild{p: p, log: log}
	handler := p.Ingest
	ingestLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ctlLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	// Same server settings as dispatcher/app's ingest listener.
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() { _ = srv.Serve(ingestLn) }()
	ctl := &http.Server{Handler: d.controlMux()}
	go func() { _ = ctl.Serve(ctlLn) }()
	fmt.Printf("READY %s %s\n", ingestLn.Addr(), ctlLn.Addr())

	<-ctx.Done()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	_ = ctl.Shutdown(sctx)
	return nil
}

func (d *dispatcherChild) upsert(spec endpointSpec) error {
	cfg := delivery.EndpointConfig{Settings: resolve.Settings{Generation: 1}}
	if spec.Hold != "" {
		cfg.Hold, cfg.HoldMessage = spec.Hold, "held by the benchmark"
	} else {
		// The endpoint goes through the same resolver as in a cluster, with the CRD
		// defaults (Standard Webhooks, X-Herald, envelope).
		never := int32(0) // the isolation scenario needs the dead endpoint to keep its workers
		inFlight := int32(spec.MaxInFlight)
		schedule := make([]string, len(spec.Schedule))
		for i, s := range spec.Schedule {
			schedule[i] = s.String()
		}
		ep := &heraldv1.WebhookEndpoint{
			ObjectMeta: metav1.ObjectMeta{Namespace: benchNamespace, Name: spec.Name, Generation: 1},
			Spec: heraldv1.WebhookEndpointSpec{
				URL:         spec.URL,
				Timeout:     spec.Timeout.String(),
				Retry:       heraldv1.RetrySpec{Schedule: schedule},
				AutoDisable: heraldv1.AutoDisableSpec{AfterConsecutiveFailures: &never},
				Limits:      heraldv1.DeliveryLimits{MaxInFlight: &inFlight},
			},
		}
		secret := &corev1.Secret{Data: map[string][]byte{heraldv1.DefaultSecretKey: []byte(benchSecret)}}
		res, err := resolve.Endpoint(context.Background(), ep,
			func(context.Context, string, string) (*corev1.Secret, error) { return secret, nil },
			outbound.Policy{AllowPlainHTTP: true, AllowLoopback: true})
		if err != nil {
			return err
		}
		if !res.Ready() {
			return fmt.Errorf("endpoint %s: %s: %s", spec.Name, res.Reason, res.Message)
		}
		cfg = delivery.Resolved(res, 1)
	}
	// Every dispatcher of the bench names the same endpoint with the same UID, as the
	// API server would.
	k := delivery.Key{Namespace: benchNamespace, Name: spec.Name, UID: benchUID(spec.Name)}
	d.p.Engine.Upsert(k, cfg)
	patterns := spec.Types
	if len(patterns) == 0 {
		patterns = []string{"*"}
	}
	d.p.Router.Set(benchNamespace, router.Subscription{Name: "to-" + spec.Name, Endpoint: spec.Name, Patterns: patterns})
	return nil
}

type profileRequest struct {
	CPU   string `json:"cpu,omitempty"`
	Alloc string `json:"alloc,omitempty"`
	Block string `json:"block,omitempty"`
	Mutex string `json:"mutex,omitempty"`
}

func (d *dispatcherChild) controlMux() *http.ServeMux {
	mux := http.NewServeMux()
	fail := func(w http.ResponseWriter, err error) { http.Error(w, err.Error(), http.StatusInternalServerError) }
	mux.HandleFunc("POST /endpoints", func(w http.ResponseWriter, r *http.Request) {
		var specs []endpointSpec
		if err := json.NewDecoder(r.Body).Decode(&specs); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, s := range specs {
			if err := d.upsert(s); err != nil {
				fail(w, err)
				return
			}
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /gc", func(w http.ResponseWriter, r *http.Request) {
		debug.FreeOSMemory()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /memstats", func(w http.ResponseWriter, r *http.Request) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		_ = json.NewEncoder(w).Encode(map[string]uint64{
			"heapAlloc": ms.HeapAlloc, "heapInuse": ms.HeapInuse, "heapSys": ms.HeapSys,
			"sys": ms.Sys, "stackInuse": ms.StackInuse, "numGC": uint64(ms.NumGC),
			"goroutines": uint64(runtime.NumGoroutine()),
		})
	})
	// What the store was written: messages per stream, and the bytes this process wrote
	// to files (wchar: the embedded store's files, and the log's). The history held for
	// its next batch (up to a second's) is written first, so that a run's figures hold
	// all of its own.
	mux.HandleFunc("GET /storewrites", func(w http.ResponseWriter, r *http.Request) {
		if d.p.History != nil {
			d.p.History.Close()
		}
		streams, err := d.p.Store.StreamWrites(r.Context())
		if err != nil {
			fail(w, err)
			return
		}
		_ = json.NewEncoder(w).Encode(storeWrites{Streams: streams, FileBytes: fileBytesWritten()})
	})
	mux.HandleFunc("GET /pending", func(w http.ResponseWriter, r *http.Request) {
		out := map[string]int64{}
		for k := range d.p.Engine.Endpoints() {
			n, err := d.p.Store.PendingDeliveries(r.Context(), k)
			if err != nil {
				fail(w, err)
				return
			}
			out[k.Name] = n
		}
		_ = json.NewEncoder(w).Encode(out)
	})
	// What the server says of each endpoint's consumer: the harness asks when receipts
	// stall while deliveries wait.
	mux.HandleFunc("GET /consumers", func(w http.ResponseWriter, r *http.Request) {
		out := map[string]any{}
		for k := range d.p.Engine.Endpoints() {
			st, ok, err := d.p.Store.ConsumerStateOf(r.Context(), k)
			switch {
			case err != nil:
				out[k.Name] = err.Error()
			case !ok:
				out[k.Name] = "no consumer"
			default:
				out[k.Name] = st
			}
		}
		_ = json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("POST /profile/start", func(w http.ResponseWriter, r *http.Request) {
		var p profileRequest
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		d.profMu.Lock()
		defer d.profMu.Unlock()
		if p.Block != "" {
			runtime.SetBlockProfileRate(10_000) // one sample per 10µs blocked
		}
		if p.Mutex != "" {
			runtime.SetMutexProfileFraction(10)
		}
		if p.CPU != "" {
			f, err := os.Create(p.CPU)
			if err != nil {
				fail(w, err)
				return
			}
			if err := rpprof.StartCPUProfile(f); err != nil {
				f.Close()
				fail(w, err)
				return
			}
			d.cpuFile = f
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /profile/stop", func(w http.ResponseWriter, r *http.Request) {
		var p profileRequest
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		d.profMu.Lock()
		defer d.profMu.Unlock()
		if d.cpuFile != nil {
			rpprof.StopCPUProfile()
			d.cpuFile.Close()
			d.cpuFile = nil
		}
		var errs []error
		write := func(name, path string) {
			if path == "" {
				return
			}
			f, err := os.Create(path)
			if err != nil {
				errs = append(errs, err)
				return
			}
			defer f.Close()
			errs = append(errs, rpprof.Lookup(name).WriteTo(f, 0))
		}
		write("allocs", p.Alloc)
		write("block", p.Block)
		write("mutex", p.Mutex)
		runtime.SetBlockProfileRate(0)
		runtime.SetMutexProfileFraction(0)
		if err := errors.Join(errs...); err != nil {
			fail(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	return mux
}

// benchUID derives an endpoint's UID from its name, the same in every dispatcher.
func benchUID(name string) string {
	h := sha256.Sum256([]byte(name))
	x := hex.EncodeToString(h[:16])
	return x[:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:]
}

// storeWrites is what GET /storewrites answers.
type storeWrites struct {
	Streams   map[string]uint64 `json:"streams"`
	FileBytes int64             `json:"fileBytes"`
}

// fileBytesWritten is the bytes this process has written (wchar of /proc/self/io; 0
// where there is none).
func fileBytesWritten() int64 {
	raw, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(raw)) {
		if v, ok := strings.CutPrefix(line, "wchar:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}
