// Command herald is the one Herald binary: the operator (`herald manager`), the delivery
// engine (`herald dispatcher`) and the user CLI. Installed as kubectl-herald on PATH it
// is also a kubectl plugin (`kubectl herald ...`).
package main

import (
	"errors"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/herald-dev/herald/cli"
)

// exitCoder is an error that carries the exit code a command promises (herald verify:
// 1 for an invalid signature, 2 for a usage error); every other error exits 1.
type exitCoder interface{ ExitCode() int }

func main() {
	err := cli.NewRootCommandAs(os.Args[0]).ExecuteContext(ctrl.SetupSignalHandler())
	if err == nil {
		return
	}
	var coded exitCoder
	if errors.As(err, &coded) {
		os.Exit(coded.ExitCode())
	}
	os.Exit(1)
}
