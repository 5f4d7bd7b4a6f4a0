// Command herald is the one Herald binary: the operator (`herald manager`), the delivery
// engine (`herald dispatcher`) and the user CLI.
package main

import (
	"os"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/herald-dev/herald/internal/cli"
)

func main() {
	if err := cli.NewRootCommand().ExecuteContext(ctrl.SetupSignalHandler()); err != nil {
		os.Exit(1)
	}
}
