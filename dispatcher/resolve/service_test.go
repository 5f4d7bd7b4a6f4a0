package resolve_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/resolve"
	"github.com/herald-dev/herald/dispatcher/sender"
	"github.com/herald-dev/herald/internal/outbound"
)

// services serves Services from a list, as the API server or the informer cache would.
func services(objs ...*corev1.Service) resolve.ServiceGetter {
	return func(_ context.Context, namespace, name string) (*corev1.Service, error) {
		for _, s := range objs {
			if s.Namespace == namespace && s.Name == name {
				return s, nil
			}
		}
		return nil, nil
	}
}

func service(name, clusterIP string, ports ...int32) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: clusterIP}}
	for _, p := range ports {
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Port: p, Protocol: corev1.ProtocolTCP})
	}
	return s
}

func toService(ref heraldv1.ServiceReference) func(*heraldv1.WebhookEndpoint) {
	return func(e *heraldv1.WebhookEndpoint) { e.Spec.URL, e.Spec.Service = "", &ref }
}

// TestEndpoint_ServiceReference: a Service named by spec.service is read from the API
// and sent to at its cluster IP, which (private as it is) the endpoint's policy then
// allows, at that port and for that name only; what cannot be sent to is named on
// Ready, a missing Service as ServiceNotFound (the deliveries wait).
func TestEndpoint_ServiceReference(t *testing.T) {
	signing := secret("billing-signing", "secret", goodSecret)
	receiver := service("receiver", "10.96.0.10", 8443)
	cases := []struct {
		why     string
		ref     heraldv1.ServiceReference
		svcs    []*corev1.Service
		policy  outbound.Policy
		reason  string
		message string
	}{
		{"a missing Service holds the deliveries", heraldv1.ServiceReference{Name: "receiver"}, nil, outbound.Policy{},
			heraldv1.ReasonServiceNotFound, "Service receiver does not exist in namespace shop; deliveries wait for it"},
		{"a Service of another namespace is not seen", heraldv1.ServiceReference{Name: "receiver"},
			[]*corev1.Service{func() *corev1.Service { s := service("receiver", "10.96.0.10", 8443); s.Namespace = "other"; return s }()},
			outbound.Policy{}, heraldv1.ReasonServiceNotFound, "does not exist in namespace shop"},
		{"an ExternalName Service would alias any host", heraldv1.ServiceReference{Name: "alias"},
			[]*corev1.Service{{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "alias"},
				Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "metadata.google.internal"}}},
			outbound.Policy{}, heraldv1.ReasonInvalidService, "is of type ExternalName"},
		{"a headless Service has no cluster IP", heraldv1.ServiceReference{Name: "headless"},
			[]*corev1.Service{service("headless", corev1.ClusterIPNone, 8443)}, outbound.Policy{},
			heraldv1.ReasonInvalidService, "has no cluster IP"},
		{"several ports and none named", heraldv1.ServiceReference{Name: "two"},
			[]*corev1.Service{service("two", "10.96.0.11", 80, 8443)}, outbound.Policy{},
			heraldv1.ReasonInvalidService, "has 2 ports (80, 8443); set spec.service.port"},
		{"a port the Service does not have", heraldv1.ServiceReference{Name: "receiver", Port: 9000},
			[]*corev1.Service{receiver}, outbound.Policy{}, heraldv1.ReasonInvalidService, "has no port 9000 (its ports: 8443)"},
		{"plain http is held to the policy as a URL is", heraldv1.ServiceReference{Name: "receiver", Scheme: "http"},
			[]*corev1.Service{receiver}, outbound.Policy{}, heraldv1.ReasonInvalidURL, "plain http is not allowed"},
		{"a cluster IP that is a metadata address stays refused", heraldv1.ServiceReference{Name: "odd"},
			[]*corev1.Service{service("odd", "169.254.169.254", 80)}, outbound.Policy{},
			heraldv1.ReasonInvalidService, "metadata"},
		{"a Service resolves", heraldv1.ServiceReference{Name: "receiver", Path: "/hooks"},
			[]*corev1.Service{receiver}, outbound.Policy{}, heraldv1.ReasonReady, ""},
	}
	for _, c := range cases {
		t.Run(c.why, func(t *testing.T) {
			res, err := resolve.Endpoint(context.Background(), endpoint(toService(c.ref)), secrets(signing), c.policy,
				resolve.WithServices(services(c.svcs...)))
			if err != nil {
				t.Fatal(err)
			}
			if res.Reason != c.reason || !strings.Contains(res.Message, c.message) {
				t.Fatalf("Endpoint() = %s %q, want %s containing %q", res.Reason, res.Message, c.reason, c.message)
			}
			if (res.Config != nil) != (c.reason == heraldv1.ReasonReady) {
				t.Fatalf("Config = %v with reason %s", res.Config, res.Reason)
			}
		})
	}

	res, err := resolve.Endpoint(context.Background(), endpoint(toService(heraldv1.ServiceReference{Name: "receiver", Path: "/hooks"})),
		secrets(signing), outbound.Policy{}, resolve.WithServices(services(receiver)))
	if err != nil || res.Config == nil {
		t.Fatalf("Endpoint() = %+v, %v", res, err)
	}
	if got := res.Config.Sender.URL; got != "https://receiver.shop.svc:8443/hooks" {
		t.Errorf("URL = %s, want https://receiver.shop.svc:8443/hooks (the TLS name and Host header of the Service)", got)
	}
	// Exactly that destination past the private-address rule, nothing else.
	p := res.Config.Sender.Policy
	ip := netip.MustParseAddr("10.96.0.10")
	if err := p.CheckAddrPort("receiver.shop.svc", ip, 8443); err != nil {
		t.Errorf("the Service's own address is refused: %v", err)
	}
	for _, other := range []struct {
		host string
		ip   string
		port uint16
	}{
		{"receiver.shop.svc", "10.96.0.10", 22},
		{"receiver.shop.svc", "10.96.0.11", 8443},
		{"other.shop.svc", "10.96.0.10", 8443},
		{"10.96.0.10", "10.96.0.10", 8443},
	} {
		if err := p.CheckAddrPort(other.host, netip.MustParseAddr(other.ip), other.port); err == nil {
			t.Errorf("%s at %s:%d passes the endpoint's policy; only the Service's address and port may", other.host, other.ip, other.port)
		}
	}
}

// TestEndpoint_ServiceReferenceIsReachedAtItsClusterIP sends a real request through the
// resolved configuration to a receiver standing in for the Service (its "cluster IP" is
// the loopback address, which this policy allows): the dial goes to the address read
// from the Service, not to DNS (receiver.shop.svc resolves nowhere here), with the
// Service's name as the Host.
func TestEndpoint_ServiceReferenceIsReachedAtItsClusterIP(t *testing.T) {
	got := make(chan *http.Request, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		got <- r
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	_, portText, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(portText)
	svc := service("receiver", "127.0.0.1", int32(port))
	policy := outbound.Policy{AllowPlainHTTP: true, AllowLoopback: true}
	res, err := resolve.Endpoint(context.Background(),
		endpoint(toService(heraldv1.ServiceReference{Name: "receiver", Scheme: "http", Path: "/hooks"})),
		secrets(secret("billing-signing", "secret", goodSecret)), policy, resolve.WithServices(services(svc)))
	if err != nil || res.Config == nil {
		t.Fatalf("Endpoint() = %s %q, %v", res.Reason, res.Message, err)
	}
	cfg := res.Config.Sender
	cfg.Timeout = 10 * time.Second
	target := sender.New(cfg)
	defer target.Close()
	out := target.Send(context.Background(), &sender.Message{EventID: "evt_svc", EventType: "order.created",
		CreatedAt: time.Now(), Data: []byte(`{}`), DeliveryID: "dlv_svc", Attempt: 1})
	if !out.OK() {
		t.Fatalf("send to the Service: %+v", out)
	}
	r := <-got
	if r.Host != "receiver.shop.svc:"+portText || r.URL.Path != "/hooks" {
		t.Errorf("request Host %s path %s, want receiver.shop.svc:%s /hooks", r.Host, r.URL.Path, portText)
	}
}
