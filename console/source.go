package console

import (
	"context"

	"k8s.io/apimachinery/pkg/watch"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/pkg/wire"
)

// The console reaches the API server and the dispatcher only through the three
// interfaces below, each acting as the person who ran `herald console`. An error they
// return is shown as it is, so it should say what to do: herald console wires them to
// the CLI's clients, whose refusals carry the same fixing commands the CLI prints
// (cli/hints.go).

// Cluster is what the console reads from the API server.
type Cluster interface {
	// Namespaces lists the namespaces whose WebhookEndpoints the user may list, as far
	// as the user may know them.
	Namespaces(ctx context.Context) ([]string, error)
	// Endpoints lists one page of a namespace's WebhookEndpoints, by name.
	Endpoints(ctx context.Context, ns string, page Page) (*heraldv1.WebhookEndpointList, error)
	Endpoint(ctx context.Context, ns, name string) (*heraldv1.WebhookEndpoint, error)
	// Subscriptions lists one page of a namespace's WebhookSubscriptions, by name.
	Subscriptions(ctx context.Context, ns string, page Page) (*heraldv1.WebhookSubscriptionList, error)
	// WatchEndpoints watches a namespace's WebhookEndpoints from resourceVersion ("":
	// from now on, without the existing ones).
	WatchEndpoints(ctx context.Context, ns, resourceVersion string) (watch.Interface, error)
}

// Page selects one page of a list: at most Limit items after Continue.
type Page struct {
	Limit    int64
	Continue string
	// Each, when set, is handed the page's items one at a time as they are read,
	// instead of the list's Items (which a Cluster may fill instead): the namespace
	// page sends each row while the rest of the list is still arriving. An error of
	// Each ends the list with that error.
	Each func(*heraldv1.WebhookEndpoint) error
}

// Deliveries reads the dispatcher's endpoint API (dispatcher/admin). A BodiesWithheld
// of its answers is shown as an error is: it should say who may grant what.
type Deliveries interface {
	DeadLetters(ctx context.Context, ns, endpoint string, limit int) (*wire.DeadLetterList, error)
	// Attempts lists an endpoint's attempts since a time ("1h"), oldest first.
	Attempts(ctx context.Context, ns, endpoint, since string, limit int) (*wire.AttemptList, error)
	Event(ctx context.Context, ns, id string) (*wire.EventHistory, error)
	// Summary counts the attempts of the last minutes per minute, of one endpoint or,
	// with endpoint "", of the whole namespace.
	Summary(ctx context.Context, ns, endpoint string, minutes int) (*wire.AttemptSummary, error)
}

// Actions act through the dispatcher's endpoint API; each needs the verb the CLI's
// command needs (enable, replay).
type Actions interface {
	Enable(ctx context.Context, ns, endpoint string) (*wire.EnableResponse, error)
	// ReplayDeadLetters replays dead letters and waits for the answer.
	ReplayDeadLetters(ctx context.Context, ns, endpoint string, req wire.ReplayRequest) (*wire.ReplayResponse, error)
	// Replay starts a replay by selection in the background (status.replay).
	Replay(ctx context.Context, ns, endpoint string, req wire.ReplaySelectionRequest) (*wire.ReplayStarted, error)
}
