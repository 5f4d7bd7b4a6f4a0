// Package logging builds the logger of Herald's servers (herald manager, herald
// dispatcher): JSON lines by default, the console form for people, and a verbosity
// (0 info, 1 debug, 2 trace).
package logging

import (
	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	"go.uber.org/zap/zapcore"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// Options are the logging flags of a server.
type Options struct {
	// Development writes human-readable console lines instead of JSON.
	Development bool
	// Verbosity is 0 (info), 1 (debug) or 2 (trace).
	Verbosity int
}

// Bind registers --log-dev and --v.
func (o *Options) Bind(fs *pflag.FlagSet) {
	fs.BoolVar(&o.Development, "log-dev", false, "human-readable console logs instead of JSON")
	fs.IntVar(&o.Verbosity, "v", 0, "log verbosity (0 info, 1 debug, 2 trace)")
}

// Logger returns the logger the options describe.
func (o Options) Logger() logr.Logger { return New(o.Development, o.Verbosity) }

// New returns a zap logger: console lines when development, else JSON; verbosity v.
func New(development bool, v int) logr.Logger {
	return zap.New(zap.UseDevMode(development), zap.Level(zapcore.Level(-v)))
}
