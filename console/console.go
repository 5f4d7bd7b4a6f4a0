package console

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/go-logr/logr"
)

// Options configure the console.
type Options struct {
	Cluster    Cluster
	Deliveries Deliveries
	Actions    Actions
	// Prog is how the user runs herald ("herald", or "kubectl herald" as a kubectl
	// plugin), for the commands the pages show.
	Prog string
	// PageSize is how many endpoints a page lists unless the address asks for another
	// size (default 100; at most MaxPageSize).
	PageSize int
	// Now is the clock (default time.Now).
	Now func() time.Time
	Log logr.Logger
}

// MaxPageSize is the most endpoints one page lists.
const MaxPageSize = 1000

// Server serves the console. Every request must come from the browser of the person
// who started it: the address it prints carries a secret that the first request trades
// for a cookie (as Jupyter's does), a request for another host name is refused (a
// DNS rebinding page cannot read through it), and a form is accepted only from the
// console's own pages (a token in the form, and the browser's Sec-Fetch-Site or Origin).
type Server struct {
	opts    Options
	secret  string
	csrf    string
	pages   *pages
	hub     *hub
	handler http.Handler

	mu      sync.Mutex
	host    string // the host:port the console listens on
	flashes map[string]flash
}

// New returns a console server.
func New(o Options) (*Server, error) {
	if o.Cluster == nil || o.Deliveries == nil || o.Actions == nil {
		return nil, errors.New("console: Cluster, Deliveries and Actions are required")
	}
	if o.Prog == "" {
		o.Prog = "herald"
	}
	if o.PageSize <= 0 {
		o.PageSize = 100
	}
	o.PageSize = min(o.PageSize, MaxPageSize)
	if o.Now == nil {
		o.Now = time.Now
	}
	p, err := parsePages(o.Now)
	if err != nil {
		return nil, err
	}
	s := &Server{opts: o, secret: randomToken(), csrf: randomToken(), pages: p, flashes: map[string]flash{}}
	s.hub = newHub(o.Cluster, o.Log.WithName("live"))
	s.handler = s.routes()
	return s, nil
}

func randomToken() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported systems
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// Handler is the console's HTTP handler (for tests that serve it themselves: the host
// they serve on must be given with SetHost).
func (s *Server) Handler() http.Handler { return s.handler }

// SetHost sets the host:port requests must be addressed to.
func (s *Server) SetHost(host string) {
	s.mu.Lock()
	s.host = host
	s.mu.Unlock()
}

// URL is the address to open: the console's with the secret.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return "http://" + s.host + "/?token=" + s.secret
}

// Serve serves on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.SetHost(ln.Addr().String())
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	err := srv.Serve(ln)
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

const cookieName = "herald_console"

// guard admits the requests of the person who started the console.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		host := s.host
		s.mu.Unlock()
		if !sameHost(r.Host, host) {
			http.Error(w, "herald console answers only at the address it printed ("+host+"); this request was for "+r.Host, http.StatusMisdirectedRequest)
			return
		}
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; img-src 'self' data:; script-src 'self'; frame-ancestors 'none'; form-action 'self'")
		if t := r.URL.Query().Get("token"); t != "" && r.Method == http.MethodGet {
			if !equal(t, s.secret) {
				s.deny(w, r)
				return
			}
			http.SetCookie(w, &http.Cookie{Name: cookieName, Value: s.secret, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			q := r.URL.Query()
			q.Del("token")
			u := *r.URL
			u.RawQuery = q.Encode()
			http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
			return
		}
		c, err := r.Cookie(cookieName)
		if err != nil || !equal(c.Value, s.secret) {
			s.deny(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if !sameOrigin(r, host) || !equal(r.PostFormValue("csrf"), s.csrf) {
				http.Error(w, "herald console accepts forms only from its own pages", http.StatusForbidden)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) deny(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	fmt.Fprintf(w, "Open the address herald console printed (it ends in ?token=...): the console acts with its user's credentials, so it answers only the browser that holds that address.\n")
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// sameHost accepts the listening address and its localhost spelling.
func sameHost(got, want string) bool {
	if got == want {
		return true
	}
	_, port, err := net.SplitHostPort(want)
	if err != nil {
		return false
	}
	return got == "localhost:"+port
}

// sameOrigin reports whether a form was sent by one of the console's pages: browsers
// say so in Sec-Fetch-Site, and older ones in Origin.
func sameOrigin(r *http.Request, host string) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin"
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		return err == nil && sameHost(u.Host, host)
	}
	return true // a client that is not a browser, holding the cookie
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets")
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", cacheStatic(http.FileServerFS(static))))
	mux.HandleFunc("GET /{$}", s.index)
	mux.HandleFunc("GET /go", s.goTo)
	mux.HandleFunc("GET /ns/{ns}", s.namespace)
	mux.HandleFunc("GET /ns/{ns}/endpoints/{name}", s.endpoint)
	mux.HandleFunc("GET /ns/{ns}/events/{id}", s.event)
	mux.HandleFunc("GET /ns/{ns}/endpoints/{name}/confirm/{action}", s.confirm)
	mux.HandleFunc("POST /ns/{ns}/endpoints/{name}/do/{action}", s.act)
	mux.HandleFunc("GET /live/ns/{ns}", s.liveNamespace)
	mux.HandleFunc("GET /live/ns/{ns}/endpoints/{name}", s.liveEndpoint)
	mux.HandleFunc("GET /live/ns/{ns}/events/{id}", s.liveEvent)
	return s.guard(mux)
}

func cacheStatic(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		h.ServeHTTP(w, r)
	})
}

// flash is a message shown once on the page an action returns to.
type flash struct {
	Text    string
	Problem bool
	expires time.Time
}

func (s *Server) addFlash(f flash) string {
	id := randomToken()[:12]
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	for k, v := range s.flashes {
		if now.After(v.expires) {
			delete(s.flashes, k)
		}
	}
	f.expires = now.Add(10 * time.Minute)
	s.flashes[id] = f
	return id
}

func (s *Server) takeFlash(r *http.Request) *flash {
	id := r.URL.Query().Get("flash")
	if id == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.flashes[id]
	if !ok {
		return nil
	}
	delete(s.flashes, id)
	return &f
}
