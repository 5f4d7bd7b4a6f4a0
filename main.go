// Command herald is the one Herald binary: the operator (`herald manager`), the delivery
// engine (`herald dispatcher`) and the user CLI. Installed as kubectl-herald on PATH it
// is also a kubectl plugin (`kubectl herald ...`).
//
// The user commands are package cli, a client of the dispatcher's HTTP APIs (pkg/client)
// and of the API server; the servers' entry points are cmd/manager and cmd/dispatcher.
package main

import (
	"errors"
	"os"

	"github.com/spf13/cobra"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/herald-dev/herald/cli"
	"github.com/herald-dev/herald/cmd/dispatcher"
	"github.com/herald-dev/herald/cmd/manager"
)

// exitCoder is an error that carries the exit code a command promises (herald verify:
// 1 for an invalid signature, 2 for a usage error); every other error exits 1.
type exitCoder interface{ ExitCode() int }

// newRootCommand is the whole herald command tree, as invoked.
func newRootCommand(invoked string) *cobra.Command {
	root := cli.NewRootCommandAs(invoked)
	root.AddCommand(manager.NewCommand(), dispatcher.NewCommand())
	return root
}

func main() {
	err := newRootCommand(os.Args[0]).ExecuteContext(ctrl.SetupSignalHandler())
	if err == nil {
		return
	}
	var coded exitCoder
	if errors.As(err, &coded) {
		os.Exit(coded.ExitCode())
	}
	os.Exit(1)
}
