package eventtype_test

import (
	"os"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/herald-dev/herald/controllers/eventtype"
	"github.com/herald-dev/herald/internal/testenv"
)

// k is a client straight to the API server.
var k client.Client

// One API server and one manager for the whole package; every test works in a
// namespace of its own.
func TestMain(m *testing.M) {
	os.Exit(testenv.RunSuite(m, func(s *testenv.Suite) error {
		k = s.Client
		return (&eventtype.Reconciler{
			Client:   s.Manager.GetClient(),
			Recorder: s.Manager.GetEventRecorder("herald-manager"),
		}).SetupWithManager(s.Manager)
	}))
}

func newNamespace(t *testing.T) string { return testenv.NewNamespace(t, k, "et-") }

func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	testenv.Eventually(t, timeout, f)
}
