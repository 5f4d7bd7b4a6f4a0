package endpoint_test

import (
	"os"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/herald-dev/herald/controllers/endpoint"
	"github.com/herald-dev/herald/internal/outbound"
	"github.com/herald-dev/herald/internal/testenv"
)

// k is a client straight to the API server.
var k client.Client

// managerCache is the manager's informer cache, so a test can tell when the manager has
// seen a change.
var managerCache cache.Cache

// One API server and one manager for the whole package; every test works in a
// namespace of its own.
func TestMain(m *testing.M) {
	os.Exit(testenv.RunSuite(m, func(s *testenv.Suite) error {
		k, managerCache = s.Client, s.Manager.GetCache()
		// The production default: https only, public addresses only.
		return (&endpoint.Reconciler{
			Client:    s.Manager.GetClient(),
			APIReader: s.Manager.GetAPIReader(),
			Recorder:  s.Manager.GetEventRecorder("herald-manager"),
			Policy:    outbound.Policy{},
		}).SetupWithManager(s.Manager)
	}))
}

func newNamespace(t *testing.T) string { return testenv.NewNamespace(t, k, "ep-") }

func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	testenv.Eventually(t, timeout, f)
}
