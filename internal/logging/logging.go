package cli

import (
	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	"go.uber.org/zap/zapcore"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// logOptions are the logging flags shared by the long-running subcommands.
type logOptions struct {
	dev   bool
	level int
}

func (o *logOptions) bind(fs *pflag.FlagSet) {
	fs.BoolVar(&o.dev, "log-dev", false, "human-readable console logs instead of JSON")
	fs.IntVar(&o.level, "v", 0, "log verbosity (0 info, 1 debug, 2 trace)")
}

func (o *logOptions) logger() logr.Logger {
	return zap.New(zap.UseDevMode(o.dev), zap.Level(zapcore.Level(-o.level)))
}
