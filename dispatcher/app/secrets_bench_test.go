package app_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/testenv"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/herald-dev/herald/dispatcher/app"
	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/internal/outbound"
)

// The memory benchmark runs each dispatcher in a process of its own (this test binary,
// told so by these variables), so that one's resident memory is not another's.
const (
	envMemoryChild      = "HERALD_MEMORY_CHILD" // "before" or "after"
	envMemoryKubeconfig = "HERALD_MEMORY_KUBECONFIG"
	memoryLinePrefix    = "HERALD-MEMORY "
)

// memoryFigures is what a child reports once its dispatcher serves.
type memoryFigures struct {
	HeapInuse uint64 `json:"heapInuse"`
	RSS       uint64 `json:"rss"`
	PeakRSS   uint64 `json:"peakRSS"`
}

// BenchmarkDispatcher_UnrelatedSecrets measures what Secrets that no endpoint references
// cost the dispatcher: its Go heap in use after GC, its resident memory and its peak
// resident memory, with 20 endpoints (each with its signing Secret) and N unrelated
// Secrets of 2–4 KiB of data each in the cluster, against the same with none. "before"
// is the dispatcher reading Secrets from an informer of their whole content, as it did
// until issue 21; "after" the metadata informer with the referenced Secrets' content
// (watch.ReferencedSecrets). All four are measured in the same run, each a fresh
// dispatcher process on the same real API server. N: 1,000, or HERALD_UNRELATED_SECRETS
// (the README's figures: 10,000).
func BenchmarkDispatcher_UnrelatedSecrets(b *testing.B) {
	n := 1000
	if testenv.Race {
		// make test-race runs every benchmark once to keep it working, and under the race
		// detector its figures mean nothing (shadow memory, 5-10x the CPU): a tenth of
		// the objects exercises the same path in a tenth of the time.
		n = 100
	}
	if v, err := strconv.Atoi(os.Getenv("HERALD_UNRELATED_SECRETS")); err == nil && v > 0 {
		n = v
	}
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		b.Fatal(err)
	}
	kubeconfig := filepath.Join(b.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		b.Fatal(err)
	}
	suffix := time.Now().UnixNano() % 1_000_000
	endpointsNS, unrelatedNS := fmt.Sprintf("secrets-eps-%d", suffix), fmt.Sprintf("secrets-unrelated-%d", suffix)
	mustCreate(b, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: endpointsNS}})
	mustCreate(b, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: unrelatedNS}})
	s := newSink(b)
	createEndpoints(b, c, endpointsNS, s.URL, 20)

	measure := func(mode string) memoryFigures {
		b.Helper()
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), envMemoryChild+"="+mode, envMemoryKubeconfig+"="+kubeconfig)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("dispatcher process (%s): %v\n%s", mode, err, stderr.String())
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), memoryLinePrefix); ok {
				var f memoryFigures
				if err := json.Unmarshal([]byte(line), &f); err != nil {
					b.Fatal(err)
				}
				return f
			}
		}
		b.Fatalf("dispatcher process (%s) reported nothing:\n%s\n%s", mode, out, stderr.String())
		return memoryFigures{}
	}

	before0, after0 := measure("before"), measure("after")
	created := time.Now()
	createUnrelatedSecrets(b, c, unrelatedNS, n)
	b.Logf("%d unrelated Secrets created in %s", n, time.Since(created).Round(time.Millisecond))
	beforeN, afterN := measure("before"), measure("after")
	b.Cleanup(func() {
		_ = c.DeleteAllOf(context.Background(), &corev1.Secret{}, client.InNamespace(unrelatedNS))
	})

	const mib = 1 << 20
	for _, r := range []struct {
		name string
		f    memoryFigures
	}{{"before-0", before0}, {"after-0", after0}, {"before-N", beforeN}, {"after-N", afterN}} {
		b.Logf("%-9s heap in use %6.1f MiB, RSS %6.1f MiB, peak RSS %6.1f MiB", r.name,
			float64(r.f.HeapInuse)/mib, float64(r.f.RSS)/mib, float64(r.f.PeakRSS)/mib)
		b.ReportMetric(float64(r.f.HeapInuse)/mib, "heap-MiB-"+r.name)
		b.ReportMetric(float64(r.f.RSS)/mib, "rss-MiB-"+r.name)
	}
	grow := func(with, without uint64) float64 { return (float64(with) - float64(without)) / float64(n) }
	b.ReportMetric(grow(beforeN.HeapInuse, before0.HeapInuse), "heap-B/secret-before")
	b.ReportMetric(grow(afterN.HeapInuse, after0.HeapInuse), "heap-B/secret-after")
	b.ReportMetric(grow(beforeN.RSS, before0.RSS), "rss-B/secret-before")
	b.ReportMetric(grow(afterN.RSS, after0.RSS), "rss-B/secret-after")
	b.ReportMetric(float64(n), "secrets")
}

// createUnrelatedSecrets creates n Opaque Secrets with 2–4 KiB of random data each (a
// certificate and key, a config file, a few tokens: what clusters hold), 16 at a time.
func createUnrelatedSecrets(b *testing.B, c client.Client, ns string, n int) {
	var wg sync.WaitGroup
	next := make(chan int)
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			for i := range next {
				size := 2048 + (i*131)%2048
				data := make([]byte, size)
				_, _ = rand.Read(data)
				sec := &corev1.Secret{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("unrelated-%d", i), Namespace: ns,
						Labels: map[string]string{"app.kubernetes.io/name": "some-app", "app.kubernetes.io/instance": fmt.Sprintf("app-%d", i%50)}},
					Data: map[string][]byte{"tls.key": data[:size/2], "config.yaml": data[size/2:]},
				}
				if err := c.Create(context.Background(), sec); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}

// memoryChild runs one dispatcher until it serves (every endpoint resolved), lets it
// settle, reports its memory on stdout and stops.
func memoryChild(mode string) int {
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv(envMemoryKubeconfig))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "herald-memory-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ready := make(chan string, 1)
	conf := config.Default()
	conf.Store.DataDir = dir
	conf.Serving = config.Serving{IngestBindAddress: "127.0.0.1:0", HealthProbeBindAddress: "0", MetricsBindAddress: "0"}
	conf.Outbound = outbound.Policy{AllowPlainHTTP: true, AllowLoopback: true}
	opts := app.Options{
		Config:     conf,
		Authorizer: app.ClusterAuthorizer(app.AuthOptions{Auth: config.Auth{APIKeys: true}}),
		Log:        logr.Discard(),
		Ready:      ready,
	}
	if mode == "before" {
		app.CacheAllSecrets(&opts)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, cfg, opts) }()
	select {
	case <-ready:
	case err := <-done:
		fmt.Fprintln(os.Stderr, "dispatcher stopped:", err)
		return 1
	case <-time.After(2 * time.Minute):
		fmt.Fprintln(os.Stderr, "dispatcher did not serve within 2m")
		return 1
	}
	time.Sleep(2 * time.Second)
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss, peak := procStatus("VmRSS"), procStatus("VmHWM")
	line, _ := json.Marshal(memoryFigures{HeapInuse: ms.HeapInuse, RSS: rss, PeakRSS: peak})
	fmt.Println(memoryLinePrefix + string(line))
	cancel()
	<-done
	return 0
}

// procStatus reads a memory figure of this process (in kB there) in bytes.
func procStatus(field string) uint64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
