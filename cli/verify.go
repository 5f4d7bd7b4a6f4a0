package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/pkg/verify"
)

// Exit codes of herald verify, so scripts can tell a bad signature from a bad command.
const (
	verifyValid   = 0
	verifyInvalid = 1
	verifyUsage   = 2
)

type verifyOptions struct {
	style      string
	secret     string
	secretFile string
	// publicKey and publicKeyFile hold an ed25519 endpoint's whpk_ public key, which
	// verifies instead of a secret.
	publicKey     string
	publicKeyFile string
	prefix        string
	headers       []string
	headersFile   string
	bodyFile      string
	tolerance     time.Duration

	// exit, when set (tests), receives the exit code; otherwise the code reaches
	// herald's main in the returned error (ExitCode), as verify promises 1 and 2 apart.
	exit func(code int)
}

// exitStatus ends herald with a code after the command has said why itself.
type exitStatus int

func (e exitStatus) Error() string { return "exit status " + strconv.Itoa(int(e)) }

// ExitCode is the process exit code herald's main uses.
func (e exitStatus) ExitCode() int { return int(e) }

func (o *verifyOptions) end(code int) error {
	if o.exit != nil {
		o.exit(code)
		return nil
	}
	if code == verifyValid {
		return nil
	}
	return exitStatus(code)
}

// usageError is a problem with how verify was called (exit code 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func newVerifyCommand() *cobra.Command { return newVerifyCommandWithExit(nil) }

func newVerifyCommandWithExit(exit func(int)) *cobra.Command {
	o := &verifyOptions{exit: exit}
	cmd := &cobra.Command{
		Use:   "verify (--secret SECRET | --secret-file FILE | --public-key KEY | --public-key-file FILE) [-H 'Name: value'... | --headers-file FILE] [--body-file FILE]",
		Short: "Check the signature of a webhook Herald delivered",
		Long: `Check the signature of a webhook Herald delivered, as a receiver would with
github.com/herald-dev/herald/pkg/verify.

Give the endpoint's signing secret, the request's headers (repeated -H, or --headers-file
holding an HTTP header block, optionally preceded by the request line and followed by the
body, as a request dump) and its body exactly as received (--body-file, the dump, or
standard input). Without --style the style is read from the headers present; without
--header-prefix the prefix is read from the <prefix>-Signature header.

The signing secret of an endpoint is in its Secret (spec.secretRef, default
<endpoint>-signing, key secret):
  kubectl get secret billing-signing -o jsonpath='{.data.secret}' | base64 -d > secret.txt
An endpoint with style StandardWebhooksEd25519 signs with a private key that stays in
the cluster; verify its deliveries with its public key (whpk_...) instead:
  herald endpoint public-key billing > billing.pub

Exit status: 0 the signature is valid, 1 it is not (the message says why), 2 the command
was used wrongly.`,
		Example: `  herald verify --secret-file secret.txt --headers-file request.txt
  herald verify --style TimestampedHex --header-prefix X-Acme --secret "$SECRET" \
    -H 'X-Acme-Signature: 5c1a...' -H 'X-Acme-Timestamp: 1771083000' --body-file body.json
  herald verify --secret-file secret.txt --tolerance 24h --headers-file old-capture.txt
  herald verify --public-key-file billing.pub --headers-file request.txt`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			msg, err := o.run(cmd, args)
			if err == nil {
				fmt.Fprintln(cmd.OutOrStdout(), msg)
				return nil
			}
			code := verifyInvalid
			if errors.As(err, new(usageError)) {
				code = verifyUsage
				fmt.Fprintf(cmd.ErrOrStderr(), "Error: %v\nSee 'herald verify --help'.\n", err)
			} else {
				fmt.Fprintf(cmd.ErrOrStderr(), "signature invalid: %v\n", err)
			}
			return o.end(code)
		},
		// verify prints its own verdict; the error only carries the exit code.
		SilenceErrors: true,
	}
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		fmt.Fprintf(c.ErrOrStderr(), "Error: %v\nSee 'herald verify --help'.\n", err)
		return o.end(verifyUsage)
	})
	fs := cmd.Flags()
	fs.StringVar(&o.style, "style", "", "signature style: "+joinStyles()+" (default: read from the headers and the key)")
	fs.StringVar(&o.secret, "secret", "", "the endpoint's signing secret (visible in the process list; prefer --secret-file)")
	fs.StringVar(&o.secretFile, "secret-file", "", "file holding the signing secret (one trailing line break is ignored); - reads standard input")
	fs.StringVar(&o.publicKey, "public-key", "", "the public key (whpk_...) of a StandardWebhooksEd25519 endpoint, as herald endpoint public-key prints it")
	fs.StringVar(&o.publicKeyFile, "public-key-file", "", "file holding the public key (one trailing line break is ignored); - reads standard input")
	fs.StringVar(&o.prefix, "header-prefix", "", "header prefix of the hex styles (default: read from the headers, else "+verify.DefaultHeaderPrefix+")")
	fs.StringArrayVarP(&o.headers, "header", "H", nil, "a request header, 'Name: value'; repeat for each")
	fs.StringVar(&o.headersFile, "headers-file", "", "file holding the request's header block (a request dump with request line and body also works)")
	fs.StringVar(&o.bodyFile, "body-file", "", "file holding the request body exactly as received; - reads standard input (the default when it is not a terminal)")
	fs.DurationVar(&o.tolerance, "tolerance", verify.DefaultTolerance, "how far the signed timestamp may be from now; raise it to check an old capture")
	return cmd
}

func (o *verifyOptions) run(cmd *cobra.Command, args []string) (string, error) {
	if len(args) > 0 {
		return "", usagef("unexpected argument %q: give the body with --body-file or on standard input", args[0])
	}
	if o.tolerance <= 0 {
		return "", usagef("--tolerance must be positive, e.g. 5m or 24h")
	}
	stdin := cmd.InOrStdin()
	secret, public, err := o.readKey(stdin)
	if err != nil {
		return "", err
	}
	h, dumpBody, err := o.readHeaders(stdin)
	if err != nil {
		return "", err
	}
	body, err := o.readBody(stdin, dumpBody)
	if err != nil {
		return "", err
	}
	style, detected, err := o.resolveStyle(h, public)
	if err != nil {
		return "", err
	}
	prefix, prefixNote := o.resolvePrefix(style, h)

	check := func(b []byte) error {
		opts := []verify.Option{verify.WithTolerance(o.tolerance)}
		switch style {
		case heraldv1.SignatureStandardWebhooks:
			return verify.StandardWebhooks(secret, h, b, opts...)
		case heraldv1.SignatureStandardWebhooksEd25519:
			return verify.StandardWebhooksEd25519(secret, h, b, opts...)
		case heraldv1.SignatureTimestampedPrefixedHex:
			return verify.TimestampedPrefixedHex(secret, prefix, h, b, opts...)
		case heraldv1.SignatureBodyPrefixedHex:
			return verify.BodyPrefixedHex(secret, prefix, h, b, opts...)
		default:
			return verify.TimestampedHex(secret, prefix, h, b, opts...)
		}
	}
	styleNote := string(style)
	switch {
	case detected && public:
		styleNote += " (read from the key)"
	case detected:
		styleNote += " (read from the headers)"
	}
	if err := check(body); err != nil {
		return "", o.explain(err, styleNote, prefixNote, h, body, check)
	}
	return "signature valid: " + describeValid(style, prefix, h, styleNote, prefixNote), nil
}

// readKey returns the secret or public key to verify with, and whether it is a public
// key. A whpk_ value given as --secret counts as one: it can be nothing else.
func (o *verifyOptions) readKey(stdin io.Reader) (key string, public bool, err error) {
	key, public, err = o.readKeyFlags(stdin)
	if err == nil && strings.HasPrefix(key, "whsk_") {
		return "", false, usagef("that is an ed25519 private key (whsk_), which receivers never need: verify with the endpoint's public key, --public-key-file (herald endpoint public-key <endpoint> prints it)")
	}
	return key, public, err
}

func (o *verifyOptions) readKeyFlags(stdin io.Reader) (key string, public bool, err error) {
	given := 0
	for _, v := range []string{o.secret, o.secretFile, o.publicKey, o.publicKeyFile} {
		if v != "" {
			given++
		}
	}
	switch {
	case given > 1:
		return "", false, usagef("give one of --secret, --secret-file, --public-key and --public-key-file")
	case o.secret != "":
		return o.secret, strings.HasPrefix(o.secret, "whpk_"), nil
	case o.publicKey != "":
		return o.publicKey, true, nil
	case o.secretFile != "":
		key, err = readKeyFile(stdin, "--secret-file", o.secretFile)
		return key, strings.HasPrefix(key, "whpk_"), err
	case o.publicKeyFile != "":
		key, err = readKeyFile(stdin, "--public-key-file", o.publicKeyFile)
		return key, true, err
	default:
		return "", false, usagef("the signing secret is missing: pass --secret-file (or --secret); an endpoint's secret is in its Secret, e.g. kubectl get secret <endpoint>-signing -o jsonpath='{.data.secret}' | base64 -d; " +
			"for a StandardWebhooksEd25519 endpoint pass --public-key-file (or --public-key) with what herald endpoint public-key <endpoint> prints")
	}
}

func readKeyFile(stdin io.Reader, flag, name string) (string, error) {
	var raw []byte
	var err error
	if name == "-" {
		raw, err = io.ReadAll(stdin)
	} else {
		raw, err = os.ReadFile(name)
	}
	if err != nil {
		return "", usagef("reading %s: %v", flag, err)
	}
	// echo and editors add a line break the key never has.
	s := strings.TrimSuffix(strings.TrimSuffix(string(raw), "\n"), "\r")
	if s == "" {
		return "", usagef("%s %s is empty", flag, name)
	}
	return s, nil
}

// readHeaders collects -H flags and --headers-file. A file that is a whole request
// dump also yields the body after its blank line.
func (o *verifyOptions) readHeaders(stdin io.Reader) (http.Header, []byte, error) {
	h := http.Header{}
	var body []byte
	if o.headersFile != "" {
		var raw []byte
		var err error
		if o.headersFile == "-" {
			if o.secretFile == "-" || o.publicKeyFile == "-" {
				return nil, nil, usagef("--secret-file and --headers-file cannot both read standard input")
			}
			raw, err = io.ReadAll(stdin)
		} else {
			raw, err = os.ReadFile(o.headersFile)
		}
		if err != nil {
			return nil, nil, usagef("reading --headers-file: %v", err)
		}
		body, err = parseHeaderBlock(raw, h)
		if err != nil {
			return nil, nil, usagef("--headers-file %s: %v", o.headersFile, err)
		}
	}
	for _, line := range o.headers {
		name, value, ok := strings.Cut(line, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, nil, usagef("-H %q is not a header: write it as 'Name: value'", line)
		}
		h.Add(name, strings.TrimSpace(value))
	}
	if len(h) == 0 {
		return nil, nil, usagef("no request headers given: pass the signature headers with -H 'Name: value' or --headers-file")
	}
	return h, body, nil
}

// parseHeaderBlock adds the header lines of raw to h, skipping a leading request or
// status line, and returns what follows the first blank line, byte for byte.
func parseHeaderBlock(raw []byte, h http.Header) ([]byte, error) {
	rest := raw
	first := true
	for len(rest) > 0 {
		line, after, found := bytes.Cut(rest, []byte("\n"))
		rest = after
		if !found {
			rest = nil
		}
		text := strings.TrimSuffix(string(line), "\r")
		if text == "" {
			if first {
				continue
			}
			if found {
				return rest, nil
			}
			return nil, nil
		}
		if first && isStartLine(text) {
			first = false
			continue
		}
		first = false
		if text[0] == ' ' || text[0] == '\t' {
			return nil, errors.New("folded header lines are not supported; put each header on one line")
		}
		name, value, ok := strings.Cut(text, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, fmt.Errorf("line %q is not a header ('Name: value')", truncateText([]byte(text)))
		}
		h.Add(name, strings.TrimSpace(value))
	}
	return nil, nil
}

// isStartLine recognises "POST /hooks HTTP/1.1" and "HTTP/1.1 200 OK".
func isStartLine(s string) bool {
	if strings.HasPrefix(s, "HTTP/") {
		return true
	}
	f := strings.Fields(s)
	return len(f) == 3 && strings.HasPrefix(f[2], "HTTP/") && !strings.Contains(f[0], ":")
}

func (o *verifyOptions) readBody(stdin io.Reader, fromDump []byte) ([]byte, error) {
	switch {
	case o.bodyFile == "-" || (o.bodyFile == "" && fromDump == nil):
		if o.secretFile == "-" || o.publicKeyFile == "-" || o.headersFile == "-" {
			return nil, usagef("the body is missing: standard input already holds the secret or the headers; pass --body-file")
		}
		if f, ok := stdin.(*os.File); ok && o.bodyFile == "" {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				return nil, usagef("the body is missing: pass --body-file, or pipe the body exactly as received into standard input")
			}
		}
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, usagef("reading the body from standard input: %v", err)
		}
		return b, nil
	case o.bodyFile != "":
		b, err := os.ReadFile(o.bodyFile)
		if err != nil {
			return nil, usagef("reading --body-file: %v", err)
		}
		return b, nil
	default:
		return fromDump, nil
	}
}

var styles = []heraldv1.SignatureStyle{
	heraldv1.SignatureStandardWebhooks,
	heraldv1.SignatureStandardWebhooksEd25519,
	heraldv1.SignatureTimestampedPrefixedHex,
	heraldv1.SignatureBodyPrefixedHex,
	heraldv1.SignatureTimestampedHex,
}

// resolveStyle returns --style, or the style the headers and the key show: a public key
// verifies only StandardWebhooksEd25519; Standard Webhooks has its own header names;
// the hex styles differ in the sha256= prefix and the timestamp.
func (o *verifyOptions) resolveStyle(h http.Header, public bool) (heraldv1.SignatureStyle, bool, error) {
	if o.style != "" {
		for _, s := range styles {
			if strings.EqualFold(o.style, string(s)) {
				switch {
				case s == heraldv1.SignatureStandardWebhooksEd25519 && !public:
					return "", false, usagef("StandardWebhooksEd25519 verifies with the endpoint's public key, not a secret: pass --public-key-file (herald endpoint public-key <endpoint> prints it)")
				case s != heraldv1.SignatureStandardWebhooksEd25519 && public:
					return "", false, usagef("a public key (whpk_) verifies only --style %s; %s needs the endpoint's signing secret", heraldv1.SignatureStandardWebhooksEd25519, s)
				}
				return s, false, nil
			}
		}
		return "", false, usagef("--style %q is not a signature style: use one of %s", o.style, joinStyles())
	}
	if public {
		return heraldv1.SignatureStandardWebhooksEd25519, true, nil
	}
	if h.Get("Webhook-Signature") != "" {
		return heraldv1.SignatureStandardWebhooks, true, nil
	}
	prefix := o.prefix
	if prefix == "" {
		prefix = signaturePrefix(h)
	}
	if prefix == "" {
		return "", false, usagef("cannot tell the signature style: the headers have neither webhook-signature nor a <prefix>-Signature header; pass --style (%s) and the signature headers", joinStyles())
	}
	sig := h.Get(prefix + "-Signature")
	hasTS := h.Get(prefix+"-Timestamp") != ""
	switch {
	case strings.HasPrefix(sig, "sha256=") && hasTS:
		return heraldv1.SignatureTimestampedPrefixedHex, true, nil
	case strings.HasPrefix(sig, "sha256="):
		return heraldv1.SignatureBodyPrefixedHex, true, nil
	default:
		return heraldv1.SignatureTimestampedHex, true, nil
	}
}

// resolvePrefix returns the header prefix and, when it was read from the headers, a
// note saying so.
func (o *verifyOptions) resolvePrefix(style heraldv1.SignatureStyle, h http.Header) (string, string) {
	if style == heraldv1.SignatureStandardWebhooks || style == heraldv1.SignatureStandardWebhooksEd25519 {
		return "", ""
	}
	if o.prefix != "" {
		return o.prefix, ""
	}
	if h.Get(verify.DefaultHeaderPrefix+"-Signature") != "" {
		return verify.DefaultHeaderPrefix, ""
	}
	if p := signaturePrefix(h); p != "" {
		return p, "header prefix " + p + " (read from the headers)"
	}
	return verify.DefaultHeaderPrefix, ""
}

// signaturePrefix returns <prefix> of the one <prefix>-Signature header, or "" when
// there is none or several.
func signaturePrefix(h http.Header) string {
	var found []string
	for name := range h {
		if p, ok := strings.CutSuffix(http.CanonicalHeaderKey(name), "-Signature"); ok && p != "" && !strings.EqualFold(p, "Webhook") {
			found = append(found, p)
		}
	}
	if len(found) != 1 {
		return ""
	}
	return found[0]
}

func joinStyles() string {
	names := make([]string, len(styles))
	for i, s := range styles {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

func describeValid(style heraldv1.SignatureStyle, prefix string, h http.Header, styleNote, prefixNote string) string {
	parts := []string{"style " + styleNote}
	if prefixNote != "" {
		parts = append(parts, prefixNote)
	}
	var id, ts string
	if style == heraldv1.SignatureStandardWebhooks || style == heraldv1.SignatureStandardWebhooksEd25519 {
		id, ts = h.Get("Webhook-Id"), h.Get("Webhook-Timestamp")
	} else {
		id, ts = h.Get(prefix+"-Event-Id"), h.Get(prefix+"-Timestamp")
	}
	if id != "" {
		parts = append(parts, "event "+id)
	}
	if sec, err := strconv.ParseInt(ts, 10, 64); err == nil {
		parts = append(parts, "signed "+time.Since(time.Unix(sec, 0)).Round(time.Second).String()+" ago")
	} else if style == heraldv1.SignatureBodyPrefixedHex {
		parts = append(parts, "no timestamp in this style: deduplicate on the event id to stop replays")
	}
	return strings.Join(parts, ", ")
}

// explain adds to a verification failure what to check next; where it can, it finds
// the likely cause by trying the usual mistakes.
func (o *verifyOptions) explain(err error, styleNote, prefixNote string, h http.Header, body []byte, check func([]byte) error) error {
	ctx := "style " + styleNote
	if prefixNote != "" {
		ctx += ", " + prefixNote
	}
	switch {
	case errors.Is(err, verify.ErrInvalidSecret) && strings.HasPrefix(styleNote, string(heraldv1.SignatureStandardWebhooksEd25519)):
		return usageError{fmt.Sprintf("%v: herald endpoint public-key <endpoint> prints the key to use", err)}
	case errors.Is(err, verify.ErrInvalidSecret):
		return usageError{fmt.Sprintf("%v: Standard Webhooks secrets are whsec_ followed by base64, as Herald stores them in the endpoint's Secret", err)}
	case errors.Is(err, verify.ErrTimestampOutsideTolerance):
		return fmt.Errorf("%w [%s]\n  the request is older (or newer) than --tolerance %s allows; to check an old capture pass e.g. --tolerance 24h", err, ctx, o.tolerance)
	case errors.Is(err, verify.ErrMissingHeader):
		names := make([]string, 0, len(h))
		for n := range h {
			names = append(names, n)
		}
		slices.Sort(names)
		return fmt.Errorf("%w [%s]\n  headers given: %s\n  pass the missing header with -H or --headers-file, or fix --style/--header-prefix to match the endpoint's spec.signature", err, ctx, strings.Join(names, ", "))
	case errors.Is(err, verify.ErrNoMatchingSignature) && strings.HasPrefix(styleNote, string(heraldv1.SignatureStandardWebhooks)+" ") &&
		strings.Contains(h.Get("Webhook-Signature"), "v1a,") && !strings.Contains(" "+h.Get("Webhook-Signature"), " v1,"):
		return fmt.Errorf("%w [%s]\n  the request carries only v1a (ed25519) signatures: its endpoint uses StandardWebhooksEd25519; verify with its public key, --public-key-file (herald endpoint public-key <endpoint> prints it)", err, ctx)
	case errors.Is(err, verify.ErrNoMatchingSignature):
		if trimmed := bytes.TrimRight(body, "\r\n"); len(trimmed) < len(body) && check(trimmed) == nil {
			return fmt.Errorf("%w [%s]\n  the body ends with a line break that was not signed (an editor or echo added it): without it the signature is valid; pass the body exactly as received", err, ctx)
		}
		if strings.HasPrefix(styleNote, string(heraldv1.SignatureStandardWebhooksEd25519)) {
			return fmt.Errorf("%w [%s]\n  check that the public key is the endpoint's current or previous one (herald endpoint public-key <endpoint>), and that the body is byte for byte what was received (not re-encoded JSON)", err, ctx)
		}
		return fmt.Errorf("%w [%s]\n  check that the secret is the endpoint's current or previous signing secret, that --style and --header-prefix match its spec.signature, and that the body is byte for byte what was received (not re-encoded JSON)", err, ctx)
	default:
		return fmt.Errorf("%w [%s]", err, ctx)
	}
}
