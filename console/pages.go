package console

import (
	"bufio"
	"bytes"
	"context"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/pkg/wire"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed assets
var assets embed.FS

// The pages are rendered on the server (html/template); the only script is
// assets/live.js, which applies the live updates (live.go).
type pages struct {
	byName map[string]*template.Template
}

var pageNames = []string{"index", "namespace", "endpoint", "event", "confirm"}

func parsePages(now func() time.Time) (*pages, error) {
	p := &pages{byName: map[string]*template.Template{}}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs(now)).ParseFS(templateFiles, "templates/layout.html", "templates/parts.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console templates: %w", err)
		}
		p.byName[name] = t
	}
	return p, nil
}

// render writes a whole page.
func (s *Server) render(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := s.pages.byName[name].ExecuteTemplate(&buf, "layout", data); err != nil {
		s.opts.Log.Error(err, "rendering", "page", name)
		http.Error(w, "rendering the page failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// rowsMark is where a streamed page's rows go: the page is rendered around it.
const rowsMark = "<!--herald:rows-->"

// pageStream writes a page whose rows arrive one at a time: the page down to
// rowsMark, each row as it comes, and the rest of the page rendered at the end (with
// what was learnt meanwhile: the next page, the live stream's range).
type pageStream struct {
	s    *Server
	name string
	w    *bufio.Writer
	rows int
	err  error
}

// firstRows are sent on their own, a screenful, and the rest in chunks of
// streamChunk: each chunk the browser gets, it lays the table out again.
const (
	firstRows   = 20
	streamChunk = 256 << 10
)

func (s *Server) startStream(w http.ResponseWriter, name string, data any) (*pageStream, error) {
	var buf bytes.Buffer
	if err := s.pages.byName[name].ExecuteTemplate(&buf, "layout", data); err != nil {
		return nil, fmt.Errorf("rendering the page: %w", err)
	}
	top, _, ok := strings.Cut(buf.String(), rowsMark)
	if !ok {
		return nil, fmt.Errorf("the %s page has no place for its rows", name)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	st := &pageStream{s: s, name: name, w: bufio.NewWriterSize(flushWriter{w}, streamChunk)}
	_, _ = st.w.WriteString(top)
	st.err = st.w.Flush()
	return st, st.err
}

func (st *pageStream) row(v endpointView) error {
	if st.err == nil {
		st.err = st.s.pages.byName[st.name].ExecuteTemplate(st.w, "row", v)
	}
	if st.rows++; st.rows == firstRows && st.err == nil {
		st.err = st.w.Flush()
	}
	return st.err
}

// end writes the rest of the page, rendered from data.
func (st *pageStream) end(data any) {
	if st.err != nil {
		return // the browser went away
	}
	var buf bytes.Buffer
	if err := st.s.pages.byName[st.name].ExecuteTemplate(&buf, "layout", data); err != nil {
		st.s.opts.Log.Error(err, "rendering", "page", st.name)
		fmt.Fprintf(st.w, "</tbody></table><p>Rendering the rest of the page failed: %s</p>", template.HTMLEscapeString(err.Error()))
	} else {
		_, rest, _ := strings.Cut(buf.String(), rowsMark)
		_, _ = st.w.WriteString(rest)
	}
	_ = st.w.Flush()
}

// flushWriter sends each write on to the browser at once.
type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(b []byte) (int, error) {
	n, err := f.w.Write(b)
	if fl, ok := f.w.(http.Flusher); ok && err == nil {
		fl.Flush()
	}
	return n, err
}

// fragment renders one named part (a table row, the chart) for a live update.
func (s *Server) fragment(name string, data any) (string, error) {
	var buf bytes.Buffer
	err := s.pages.byName["namespace"].ExecuteTemplate(&buf, name, data)
	return buf.String(), err
}

// base is what every page has.
type base struct {
	Title  string
	Crumbs []crumb
	// Live is the address of the page's stream of updates; "" for none.
	Live  string
	CSRF  string
	Prog  string
	Flash *flashView
}

type crumb struct{ Text, Href string }

type flashView struct {
	Text    string
	Problem *problem
}

func (s *Server) base(r *http.Request, title string, crumbs ...crumb) base {
	b := base{Title: title, Crumbs: append([]crumb{{"Namespaces", "/"}}, crumbs...), CSRF: s.csrf, Prog: s.opts.Prog}
	if f := s.takeFlash(r); f != nil {
		if f.Problem {
			b.Flash = &flashView{Problem: problemText(f.Text)}
		} else {
			b.Flash = &flashView{Text: f.Text}
		}
	}
	return b
}

func nsCrumb(ns string) crumb { return crumb{ns, "/ns/" + url.PathEscape(ns)} }

// requestTimeout bounds what one page waits for the API server and the dispatcher.
const requestTimeout = 20 * time.Second

type indexPage struct {
	base
	Namespaces []string
	Problem    *problem
}

func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	p := indexPage{base: s.base(r, "Namespaces")}
	p.Crumbs = nil
	var err error
	p.Namespaces, err = s.opts.Cluster.Namespaces(ctx)
	p.Problem = problemOf(err)
	s.render(w, http.StatusOK, "index", p)
}

// goTo answers the forms of the pages' headers: a namespace, an endpoint or an event id
// to open.
func (s *Server) goTo(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ns := strings.TrimSpace(q.Get("ns"))
	if len(validation.IsDNS1123Label(ns)) > 0 {
		s.render(w, http.StatusBadRequest, "index", indexPage{base: s.base(r, "Namespaces"),
			Problem: problemText(fmt.Sprintf("%q is not a namespace name: lower-case letters, digits and '-', at most 63 characters", ns))})
		return
	}
	target := "/ns/" + url.PathEscape(ns)
	if id := strings.TrimSpace(q.Get("event")); id != "" {
		target += "/events/" + url.PathEscape(id)
	} else if name := strings.TrimSpace(q.Get("endpoint")); name != "" {
		target += "/endpoints/" + url.PathEscape(name)
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

type namespacePage struct {
	base
	Namespace string
	Endpoints []endpointView
	Problem   *problem
	// Limit is the page size; Next the address of the next page ("" on the last).
	Limit int64
	Sizes []int64
	Next  string
	Later bool // not the first page
	Chart *chartView
	// ChartProblem says why there is no chart (the dispatcher refused or is not
	// reachable); the rest of the page stands without it.
	ChartProblem *problem
	Subs         []subscriptionView
	SubsProblem  *problem
	SubsMore     bool
	// Streamed: the rows are sent as the list arrives (pageStream), not from Endpoints.
	Streamed bool
	// ListBroke says why a streamed list ended early.
	ListBroke *problem
}

// subscriptionView is a subscription, its problems first.
type subscriptionView struct {
	Name, Endpoint, Filter string
	EventTypes             []string
	Ready                  condition
	ReadyWhy               string
	FilterHealthy          *metav1.Condition
	FilterErrors           int64
	Problem                bool
}

func (s *Server) namespace(w http.ResponseWriter, r *http.Request) {
	ns, ok := s.validNamespace(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	limit := int64(s.opts.PageSize)
	if v := q.Get("limit"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 1 {
			limit = min(n, MaxPageSize)
		}
	}
	cont := q.Get("continue")
	p := namespacePage{base: s.base(r, ns, nsCrumb(ns)), Namespace: ns, Limit: limit, Sizes: []int64{50, 100, 500, 1000}, Later: cont != ""}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	// The subscriptions and the chart are read beside the list.
	var subs *heraldv1.WebhookSubscriptionList
	var sum *wire.AttemptSummary
	var subsErr, sumErr error
	subsRead, sumRead := make(chan struct{}), make(chan struct{})
	go func() { defer close(subsRead); subs, subsErr = s.opts.Cluster.Subscriptions(ctx, ns, Page{Limit: 200}) }()
	go func() { defer close(sumRead); sum, sumErr = s.opts.Deliveries.Summary(ctx, ns, "", chartMinutes) }()
	chart := func() {
		<-sumRead
		if sumErr != nil {
			p.ChartProblem = problemOf(sumErr)
		} else {
			p.Chart = chartOf(sum, "Attempts in "+ns+", last hour", "chart")
		}
	}
	// The rows go to the browser as the list arrives: the page down to the table once
	// the first endpoint is read (nothing of the namespace before that, so that a
	// refusal shows alone), a row per endpoint, and the rest of the page when the list
	// ends.
	var st *pageStream
	var first, last string
	rows := 0
	each := func(ep *heraldv1.WebhookEndpoint) error {
		if st == nil {
			chart()
			p.Streamed, p.Live = true, "pending"
			var err error
			if st, err = s.startStream(w, "namespace", p); err != nil {
				return err
			}
			first = ep.Name
		}
		last = ep.Name
		rows++
		return st.row(viewOf(ep))
	}
	list, listErr := s.opts.Cluster.Endpoints(ctx, ns, Page{Limit: limit, Continue: cont, Each: each})
	if st == nil {
		if listErr != nil {
			// Nothing of the namespace is shown to someone who may not list its endpoints:
			// not the chart, not the subscriptions.
			p.Problem = problemOf(listErr)
			s.render(w, http.StatusOK, "namespace", p)
			return
		}
		// A Cluster that does not hand the items over one at a time (or an empty page).
		for i := range list.Items {
			p.Endpoints = append(p.Endpoints, viewOf(&list.Items[i]))
		}
		if len(p.Endpoints) > 0 {
			first, last = p.Endpoints[0].Name, p.Endpoints[len(p.Endpoints)-1].Name
		}
		chart()
	}
	if listErr != nil {
		p.ListBroke = problemText(fmt.Sprintf("The list of endpoints broke off after %d: %v. Reload the page.", rows, listErr))
		p.Live = ""
	} else {
		if list.Continue != "" {
			p.Next = fmt.Sprintf("/ns/%s?limit=%d&continue=%s", url.PathEscape(ns), limit, url.QueryEscape(list.Continue))
		}
		// The stream sends the rows of this page (the names from its first to its last;
		// all on an empty page) changed since the list was read.
		live := url.Values{"rv": {list.ResourceVersion}}
		if first != "" {
			live.Set("from", first)
			live.Set("to", last)
		}
		p.Live = "/live/ns/" + url.PathEscape(ns) + "?" + live.Encode()
	}
	<-subsRead
	if subsErr != nil {
		p.SubsProblem = problemOf(subsErr)
	} else {
		p.Subs, p.SubsMore = subscriptionsOf(subs), subs.Continue != ""
	}
	if st == nil {
		s.render(w, http.StatusOK, "namespace", p)
		return
	}
	st.end(p)
}

func subscriptionsOf(l *heraldv1.WebhookSubscriptionList) []subscriptionView {
	out := make([]subscriptionView, 0, len(l.Items))
	for i := range l.Items {
		sub := &l.Items[i]
		v := subscriptionView{Name: sub.Name, Endpoint: sub.Spec.EndpointRef.Name, Filter: sub.Spec.Filter, EventTypes: sub.Spec.EventTypes,
			FilterErrors: sub.Status.FilterErrors}
		ready := meta.FindStatusCondition(sub.Status.Conditions, heraldv1.ConditionReady)
		switch {
		case ready == nil:
			v.Ready = condition{heraldv1.ConditionReady, "Unknown"}
		case ready.Status == metav1.ConditionTrue:
			v.Ready = condition{heraldv1.ConditionReady, "True"}
		default:
			v.Ready = condition{heraldv1.ConditionReady, string(ready.Status) + " (" + ready.Reason + ")"}
			v.ReadyWhy, v.Problem = ready.Message, true
		}
		if fh := meta.FindStatusCondition(sub.Status.Conditions, heraldv1.ConditionFilterHealthy); fh != nil && fh.Status != metav1.ConditionTrue {
			v.FilterHealthy, v.Problem = fh, true
		}
		v.Problem = v.Problem || v.FilterErrors > 0
		out = append(out, v)
	}
	// Those with a problem first, each group by name.
	slices.SortStableFunc(out, func(a, b subscriptionView) int {
		switch {
		case a.Problem && !b.Problem:
			return -1
		case b.Problem && !a.Problem:
			return 1
		}
		return 0
	})
	return out
}

func (s *Server) validNamespace(w http.ResponseWriter, r *http.Request) (string, bool) {
	ns := r.PathValue("ns")
	if len(validation.IsDNS1123Label(ns)) > 0 {
		s.render(w, http.StatusBadRequest, "index", indexPage{base: s.base(r, "Namespaces"), Problem: problemText(fmt.Sprintf("%q is not a namespace name", ns))})
		return "", false
	}
	return ns, true
}

func (s *Server) validEndpoint(w http.ResponseWriter, r *http.Request) (ns, name string, ok bool) {
	if ns, ok = s.validNamespace(w, r); !ok {
		return "", "", false
	}
	name = r.PathValue("name")
	if len(validation.IsDNS1123Subdomain(name)) > 0 {
		s.render(w, http.StatusBadRequest, "index", indexPage{base: s.base(r, "Namespaces"), Problem: problemText(fmt.Sprintf("%q is not a WebhookEndpoint name", name))})
		return "", "", false
	}
	return ns, name, true
}

// shownAttempts is how many of an endpoint's latest attempts its page lists.
const shownAttempts = 100

type endpointPage struct {
	base
	Namespace, Name string
	Endpoint        *endpointView
	Problem         *problem
	EndpointParts
}

// EndpointParts are the parts of the endpoint page that come from the dispatcher,
// refreshed live.
type EndpointParts struct {
	Namespace, Name string
	Attempts        []wire.Attempt
	AttemptsMore    bool
	BodiesWithheld  *problem
	AttemptsProblem *problem
	DeadLetters     []wire.DeadLetter
	DeadLettersMore bool
	DeadLetterTypes []string
	DeadProblem     *problem
	Chart           *chartView
	ChartProblem    *problem
	Snippet         snippet
	Now             time.Time
}

func (s *Server) endpoint(w http.ResponseWriter, r *http.Request) {
	ns, name, ok := s.validEndpoint(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	p := endpointPage{base: s.base(r, name+" in "+ns, nsCrumb(ns), crumb{name, ""}), Namespace: ns, Name: name}
	ep, err := s.opts.Cluster.Endpoint(ctx, ns, name)
	if err != nil {
		p.Problem = problemOf(err)
		s.render(w, http.StatusOK, "endpoint", p)
		return
	}
	v := viewOf(ep)
	p.Endpoint = &v
	p.EndpointParts = s.readEndpointParts(ctx, &v)
	p.Live = "/live/ns/" + url.PathEscape(ns) + "/endpoints/" + url.PathEscape(name) + "?" + url.Values{"rv": {ep.ResourceVersion}}.Encode()
	s.render(w, http.StatusOK, "endpoint", p)
}

// readEndpointParts reads what the dispatcher knows of an endpoint: three requests, for
// this one endpoint.
func (s *Server) readEndpointParts(ctx context.Context, v *endpointView) EndpointParts {
	ns, name := v.Namespace, v.Name
	out := EndpointParts{Namespace: ns, Name: name, Snippet: snippetFor(v, s.opts.Prog), Now: s.opts.Now()}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		l, err := s.opts.Deliveries.Attempts(ctx, ns, name, "1h", MaxPageSize)
		if err != nil {
			out.AttemptsProblem = problemOf(err)
			return
		}
		items := l.Items
		if len(items) > shownAttempts {
			items, out.AttemptsMore = items[len(items)-shownAttempts:], true
		}
		out.AttemptsMore = out.AttemptsMore || l.More
		// Newest first: what a person looks at after something happened.
		out.Attempts = make([]wire.Attempt, len(items))
		for i := range items {
			out.Attempts[len(items)-1-i] = items[i]
		}
		if l.BodiesWithheld != "" {
			out.BodiesWithheld = problemText(l.BodiesWithheld)
		}
	}()
	go func() {
		defer wg.Done()
		l, err := s.opts.Deliveries.DeadLetters(ctx, ns, name, MaxPageSize)
		if err != nil {
			out.DeadProblem = problemOf(err)
			return
		}
		out.DeadLetters, out.DeadLettersMore = l.Items, l.More
		seen := map[string]bool{}
		for _, d := range l.Items {
			if !seen[d.EventType] {
				seen[d.EventType] = true
				out.DeadLetterTypes = append(out.DeadLetterTypes, d.EventType)
			}
		}
		slices.Sort(out.DeadLetterTypes)
	}()
	go func() {
		defer wg.Done()
		sum, err := s.opts.Deliveries.Summary(ctx, ns, name, chartMinutes)
		if err != nil {
			out.ChartProblem = problemOf(err)
			return
		}
		out.Chart = chartOf(sum, "Attempts at "+name+", last hour", "ep-chart")
	}()
	wg.Wait()
	return out
}

type eventPage struct {
	base
	Namespace, ID string
	Problem       *problem
	EventParts
}

type EventParts struct {
	Namespace, ID string
	History       *wire.EventHistory
	Withheld      *problem
	Problem       *problem
}

func (s *Server) event(w http.ResponseWriter, r *http.Request) {
	ns, ok := s.validNamespace(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	p := eventPage{base: s.base(r, "Event "+id, nsCrumb(ns), crumb{"event " + id, ""}), Namespace: ns, ID: id}
	p.EventParts = s.readEventParts(ctx, ns, id)
	if p.EventParts.History != nil {
		p.Live = "/live/ns/" + url.PathEscape(ns) + "/events/" + url.PathEscape(id)
	}
	s.render(w, http.StatusOK, "event", p)
}

func (s *Server) readEventParts(ctx context.Context, ns, id string) EventParts {
	out := EventParts{Namespace: ns, ID: id}
	h, err := s.opts.Deliveries.Event(ctx, ns, id)
	if err != nil {
		out.Problem = problemOf(err)
		return out
	}
	out.History = h
	if h.BodiesWithheld != "" {
		out.Withheld = problemText(h.BodiesWithheld)
	}
	return out
}
