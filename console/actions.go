package console

import (
	"context"
	"fmt"
	"github.com/herald-dev/herald/pkg/wire"
	"net/http"
	"net/url"
	"strings"
)

// The actions. Each is a link to a confirmation page (GET, which changes nothing) whose
// form posts the action; the console then returns to the page the action started from,
// with what happened on top. Each needs the permission the CLI's command needs, asked
// by the dispatcher: enable for re-enabling, replay for replaying and resending.
type action struct {
	// Title is the confirmation page's question, Button its button.
	Title, Button string
	// Explain says what the action does and what it needs.
	Explain string
	// CLI is the equivalent command.
	CLI string
}

// actionRequest is what a confirmation page carries to the action.
type actionRequest struct {
	ns, name, kind                 string
	event, eventType, since, until string
}

func requestOf(r *http.Request, ns, name string) actionRequest {
	get := func(k string) string { return strings.TrimSpace(r.FormValue(k)) }
	return actionRequest{ns: ns, name: name, kind: r.PathValue("action"), event: get("event"), eventType: get("type"), since: get("since"), until: get("until")}
}

// describe returns the action's words, or an error when it is not one or lacks what it
// needs.
func (a actionRequest) describe(prog string) (action, error) {
	target := fmt.Sprintf("WebhookEndpoint %s/%s", a.ns, a.name)
	flags := fmt.Sprintf("%s -n %s", a.name, a.ns)
	switch a.kind {
	case "enable":
		return action{Title: "Re-enable " + target + "?", Button: "Re-enable " + a.name,
			Explain: "Its held deliveries flow again, oldest first, and its failure count starts from 0. Needs the verb enable on webhookendpoints (ClusterRole herald-operator).",
			CLI:     prog + " endpoint enable " + flags}, nil
	case "replay":
		if a.event == "" {
			return action{}, fmt.Errorf("name the event whose dead letter to replay")
		}
		return action{Title: fmt.Sprintf("Replay the dead letter of event %s to %s?", a.event, target), Button: "Replay the dead letter",
			Explain: "It is delivered again with its original event id, on the endpoint's current configuration. Needs the verb replay on webhookendpoints (ClusterRole herald-operator).",
			CLI:     fmt.Sprintf("%s dlq replay %s --event-id %s", prog, flags, a.event)}, nil
	case "replay-type":
		if a.eventType == "" {
			return action{}, fmt.Errorf("choose the event type whose dead letters to replay")
		}
		return action{Title: fmt.Sprintf("Replay every dead letter of type %s of %s?", a.eventType, target), Button: "Replay dead letters of " + a.eventType,
			Explain: "Each is delivered again with its original event id. Needs the verb replay on webhookendpoints (ClusterRole herald-operator).",
			CLI:     fmt.Sprintf("%s dlq replay %s --event-type %s", prog, flags, a.eventType)}, nil
	case "replay-range":
		if a.since == "" && a.until == "" {
			return action{}, fmt.Errorf("give the start (since) or the end (until) of the time range: RFC 3339 or a duration before now, such as 2h")
		}
		sel, cli := "", ""
		if a.since != "" {
			sel += " since " + a.since
			cli += " --since " + a.since
		}
		if a.until != "" {
			sel += " until " + a.until
			cli += " --until " + a.until
		}
		return action{Title: fmt.Sprintf("Replay the dead letters of the events accepted%s to %s?", sel, target), Button: "Start the replay",
			Explain: "The dispatcher replays them in the background, paced; the endpoint's page shows the progress (status.replay). Needs the verb replay on webhookendpoints (ClusterRole herald-operator).",
			CLI:     fmt.Sprintf("%s dlq replay %s%s", prog, flags, cli)}, nil
	case "resend":
		if a.event == "" {
			return action{}, fmt.Errorf("name the event to resend")
		}
		return action{Title: fmt.Sprintf("Resend event %s to %s?", a.event, target), Button: "Resend the event",
			Explain: "The dispatcher sends it again, with its event id, from the delivered events it retains or its dead letters; receivers deduplicate on the id. Needs the verb replay on webhookendpoints (ClusterRole herald-operator).",
			CLI:     fmt.Sprintf("%s events resend %s --event-id %s", prog, flags, a.event)}, nil
	}
	return action{}, fmt.Errorf("%q is not an action of the console", a.kind)
}

// do performs the action and says what happened.
func (s *Server) do(ctx context.Context, a actionRequest) (string, error) {
	target := fmt.Sprintf("WebhookEndpoint %s/%s", a.ns, a.name)
	switch a.kind {
	case "enable":
		res, err := s.opts.Actions.Enable(ctx, a.ns, a.name)
		if err != nil {
			return "", err
		}
		if res.WasDisabled {
			return "Re-enabled " + target + "; its held deliveries flow again, oldest first.", nil
		}
		return target + " was not disabled; its consecutive failure count is reset.", nil
	case "replay", "replay-type":
		req := wire.ReplayRequest{EventType: a.eventType}
		if a.kind == "replay" {
			req = wire.ReplayRequest{EventIDs: []string{a.event}}
		}
		res, err := s.opts.Actions.ReplayDeadLetters(ctx, a.ns, a.name, req)
		if err != nil {
			return "", err
		}
		if res.Replayed == 0 {
			return "No dead letter of " + target + " matched: it may have been replayed already.", nil
		}
		return fmt.Sprintf("Replayed %d dead letter(s) of %s; they are delivered with their original event ids.", res.Replayed, target), nil
	case "replay-range", "resend":
		req := wire.ReplaySelectionRequest{Since: a.since, Until: a.until, From: []string{"dead-letters"}}
		if a.kind == "resend" {
			req = wire.ReplaySelectionRequest{EventIDs: []string{a.event}, From: []string{"delivered", "dead-letters"}}
		}
		res, err := s.opts.Actions.Replay(ctx, a.ns, a.name, req)
		if err != nil {
			return "", err
		}
		if res.Selected == 0 {
			return fmt.Sprintf("Replay %s of %s selected nothing (%s): nothing retained matches.", res.ID, target, res.Selection), nil
		}
		return fmt.Sprintf("Replay %s of %s started: %d selected (%s); its progress is on the endpoint's page.", res.ID, target, res.Selected, res.Selection), nil
	}
	return "", fmt.Errorf("%q is not an action of the console", a.kind)
}

type confirmPage struct {
	base
	Namespace, Name string
	Action          action
	Problem         *problem
	// Post is where the form goes, Return where the console goes afterwards.
	Post, Return                   string
	Event, EventType, Since, Until string
	Kind                           string
}

func (s *Server) confirm(w http.ResponseWriter, r *http.Request) {
	ns, name, ok := s.validEndpoint(w, r)
	if !ok {
		return
	}
	a := requestOf(r, ns, name)
	epPath := "/ns/" + url.PathEscape(ns) + "/endpoints/" + url.PathEscape(name)
	p := confirmPage{base: s.base(r, "Confirm", nsCrumb(ns), crumb{name, epPath}, crumb{"confirm", ""}), Namespace: ns, Name: name,
		Post: epPath + "/do/" + url.PathEscape(a.kind), Return: returnPath(r.FormValue("return"), epPath),
		Event: a.event, EventType: a.eventType, Since: a.since, Until: a.until, Kind: a.kind}
	act, err := a.describe(s.opts.Prog)
	if err != nil {
		p.Problem = problemOf(err)
		s.render(w, http.StatusBadRequest, "confirm", p)
		return
	}
	p.Action = act
	s.render(w, http.StatusOK, "confirm", p)
}

func (s *Server) act(w http.ResponseWriter, r *http.Request) {
	ns, name, ok := s.validEndpoint(w, r)
	if !ok {
		return
	}
	a := requestOf(r, ns, name)
	back := returnPath(r.FormValue("return"), "/ns/"+url.PathEscape(ns)+"/endpoints/"+url.PathEscape(name))
	if _, err := a.describe(s.opts.Prog); err != nil {
		http.Redirect(w, r, withFlash(back, s.addFlash(flash{Text: err.Error(), Problem: true})), http.StatusSeeOther)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	msg, err := s.do(ctx, a)
	f := flash{Text: msg}
	if err != nil {
		f = flash{Text: err.Error(), Problem: true}
	}
	s.opts.Log.Info("action", "action", a.kind, "endpoint", ns+"/"+name, "event", a.event, "ok", err == nil)
	http.Redirect(w, r, withFlash(back, s.addFlash(f)), http.StatusSeeOther)
}

// returnPath keeps a return address only when it is one of the console's own pages.
func returnPath(p, fallback string) string {
	if strings.HasPrefix(p, "/ns/") && !strings.Contains(p, "//") && !strings.ContainsAny(p, "\\\r\n") {
		return p
	}
	return fallback
}

func withFlash(path, id string) string {
	u, err := url.Parse(path)
	if err != nil {
		return path
	}
	q := u.Query()
	q.Del("flash")
	q.Set("flash", id)
	u.RawQuery = q.Encode()
	return u.String()
}
