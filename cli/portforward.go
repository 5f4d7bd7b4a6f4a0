package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// portForward reaches a Service's port as `kubectl port-forward svc/NAME PORT` does: it
// picks a running, ready Pod behind the Service, forwards a free port of 127.0.0.1 to
// the Pod's port through the API server (create on pods/portforward, as the
// kubeconfig's user), and returns that local address. setup bounds finding the Pod and
// waiting for the forward; the forward ends with life, and a Pod that goes away ends it
// too (the console then says the dispatcher cannot be reached, and a restart of the
// console forwards to another Pod).
func portForward(setup, life context.Context, cfg *rest.Config, namespace, service string, port int32) (string, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", fmt.Errorf("connecting to the API server at %s: %w", cfg.Host, err)
	}
	svc, err := cs.CoreV1().Services(namespace).Get(setup, service, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("reading Service %s/%s: %w", namespace, service, err)
	}
	pods, err := cs.CoreV1().Pods(namespace).List(setup, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(svc.Spec.Selector).String()})
	if err != nil {
		return "", fmt.Errorf("listing the Pods of Service %s/%s: %w", namespace, service, err)
	}
	pod, target, err := forwardTarget(svc, pods.Items, port)
	if err != nil {
		return "", err
	}
	rt, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return "", fmt.Errorf("forwarding to Pod %s/%s: %w", namespace, pod, err)
	}
	u := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(namespace).Name(pod).SubResource("portforward").URL()
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: rt}, http.MethodPost, u)
	ready := make(chan struct{})
	fw, err := portforward.NewOnAddressesWithContext(life, dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("0:%d", target)}, ready, io.Discard, io.Discard)
	if err != nil {
		return "", fmt.Errorf("forwarding to Pod %s/%s: %w", namespace, pod, err)
	}
	failed := make(chan error, 1)
	go func() { failed <- fw.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-failed:
		return "", fmt.Errorf("forwarding to Pod %s/%s: %w", namespace, pod, err)
	case <-setup.Done():
		fw.Close()
		return "", fmt.Errorf("forwarding to Pod %s/%s: %w", namespace, pod, setup.Err())
	}
	ports, err := fw.GetPorts()
	if err != nil || len(ports) == 0 {
		fw.Close()
		return "", fmt.Errorf("forwarding to Pod %s/%s: no local port: %v", namespace, pod, err)
	}
	return fmt.Sprintf("127.0.0.1:%d", ports[0].Local), nil
}

// forwardTarget picks a running, ready Pod of the Service and the container port its
// port leads to (a number, or a name of the Pod's container ports, as the workload's
// Service names "ingest").
func forwardTarget(svc *corev1.Service, pods []corev1.Pod, port int32) (string, int32, error) {
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if svc.Spec.Ports[i].Port == port {
			sp = &svc.Spec.Ports[i]
		}
	}
	if sp == nil {
		return "", 0, fmt.Errorf("Service %s/%s has no port %d", svc.Namespace, svc.Name, port)
	}
	for i := range pods {
		p := &pods[i]
		if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil || !podReady(p) {
			continue
		}
		switch {
		case sp.TargetPort.IntValue() != 0:
			return p.Name, int32(sp.TargetPort.IntValue()), nil
		case sp.TargetPort.StrVal != "":
			for _, c := range p.Spec.Containers {
				for _, cp := range c.Ports {
					if cp.Name == sp.TargetPort.StrVal {
						return p.Name, cp.ContainerPort, nil
					}
				}
			}
		default:
			return p.Name, sp.Port, nil
		}
	}
	return "", 0, errors.New("no running, ready Pod behind Service " + svc.Namespace + "/" + svc.Name)
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
